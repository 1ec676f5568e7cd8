"""BusChannelLayer over in-process "worker processes": one GroupHub each, joined by a bus
that hands every group message to the other hubs, as the gateways do on ZeroMQ. The
cross-process paths run for real in tests/integration/test_channels_layer.py."""

import asyncio

import pytest
from channels.exceptions import ChannelFull

from asgi_bridge import codec
from asgi_bridge.channels_layer import BusChannelLayer, MessageTooLarge
from asgi_bridge.groups import GroupHub
from bridge_helpers import run


class Bus:
    """Every group message of one hub goes to every other hub (a later loop turn)."""

    def __init__(self):
        self.hubs = []
        self.published = 0

    def process(self, name, **config):
        bus = self

        class Transport:
            def publish_group(self, group, data):
                bus.published += 1
                for hub in bus.hubs:
                    asyncio.get_running_loop().call_soon(hub.on_message, codec.decode(data))

            def subscribe_group(self, group):
                pass

            unsubscribe_group = subscribe_group

            async def group_subscribed(self, group, timeout):
                pass

        hub = GroupHub(Transport(), f"wk-{name}")
        self.hubs.append(hub)
        layer = BusChannelLayer(**config)
        layer._hub = hub
        hub.add("channels!worker:" + hub.worker_id, layer)
        return layer


def test_send_to_a_specific_channel_of_another_process():
    async def body():
        bus = Bus()
        one, two = bus.process("one"), bus.process("two")
        name = await two.new_channel()
        assert "wk-two!" in name
        await one.send(name, {"type": "hello", "n": 1, "b": b"\x00"})
        assert await asyncio.wait_for(two.receive(name), 1) == {"type": "hello", "n": 1,
                                                                "b": b"\x00"}
        with pytest.raises(ValueError):
            await one.receive(name)  # not one's
    run(body())


def test_group_send_reaches_members_of_every_process_in_order():
    async def body():
        bus = Bus()
        layers = [bus.process(str(i)) for i in range(3)]
        channels = [await layer.new_channel() for layer in layers]
        for layer, channel in zip(layers, channels):
            await layer.group_add("room", channel)
        for n in range(5):
            await layers[0].group_send("room", {"type": "chat", "n": n})
        for layer, channel in zip(layers, channels):
            got = [(await asyncio.wait_for(layer.receive(channel), 1))["n"] for _ in range(5)]
            assert got == list(range(5))
        # group_discard: layer 1's member no longer gets them; group_add from another
        # process goes to the channel's own.
        await layers[2].group_discard("room", channels[1])
        await asyncio.sleep(0.01)
        await layers[2].group_add("other", channels[0])
        await asyncio.sleep(0.01)
        await layers[0].group_send("room", {"type": "chat", "n": 9})
        await layers[2].group_send("other", {"type": "chat", "n": 10})
        assert (await asyncio.wait_for(layers[0].receive(channels[0]), 1))["n"] == 9
        assert (await asyncio.wait_for(layers[0].receive(channels[0]), 1))["n"] == 10
        await asyncio.sleep(0.01)
        assert not layers[1]._buffers
    run(body())


def test_capacity_expiry_and_flush():
    async def body():
        bus = Bus()
        layer = bus.process("one", capacity=2, expiry=0.05,
                            channel_capacity={"big*": 3})
        await layer.send("jobs", {"type": "a"})
        await layer.send("jobs", {"type": "b"})
        with pytest.raises(ChannelFull):
            await layer.send("jobs", {"type": "c"})
        for _ in range(3):
            await layer.send("big.jobs", {"type": "x"})
        with pytest.raises(ChannelFull):
            await layer.send("big.jobs", {"type": "x"})
        assert (await layer.receive("jobs"))["type"] == "a"
        # Expiry: what was kept is gone, and a member that let one expire left its group.
        mine = await layer.new_channel()
        await layer.group_add("g", mine)
        await layer.send(mine, {"type": "old"})
        await asyncio.sleep(0.1)
        await layer.send("jobs", {"type": "new"})
        assert (await layer.receive("jobs"))["type"] == "new"
        await layer.group_send("g", {"type": "then"})  # finds "old" expired: mine leaves g
        assert "g" not in layer._groups
        assert (await layer.receive(mine))["type"] == "then"
        await layer.send("jobs", {"type": "kept"})
        await layer.group_add("g", mine)
        await layer.flush()
        assert not layer._buffers and not layer._groups
        await layer.group_send("g", {"type": "after flush"})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(mine), 0.1)
    run(body())


def test_group_expiry():
    async def body():
        layer = Bus().process("one", group_expiry=0.05)
        mine = await layer.new_channel()
        await layer.group_add("g", mine)
        await asyncio.sleep(0.1)
        await layer.group_send("g", {"type": "late"})
        assert "g" not in layer._groups and not layer._buffers
    run(body())


def test_named_channel_reaches_its_receivers_in_other_processes():
    async def body():
        bus = Bus()
        one, two = bus.process("one"), bus.process("two")
        waiting = asyncio.ensure_future(two.receive("jobs"))
        await asyncio.sleep(0)
        await one.send("jobs", {"type": "job", "id": 7})
        assert (await asyncio.wait_for(waiting, 1))["id"] == 7
    run(body())


def test_message_rules():
    async def body():
        layer = Bus().process("one", max_message_size=100)
        for bad in ({"no": "type"}, ["type"], {"type": "x", "obj": object()},
                    {"type": 3}):
            with pytest.raises(TypeError):
                await layer.send("c", bad)
        with pytest.raises(MessageTooLarge):
            await layer.group_send("g", {"type": "x", "blob": b"x" * 200})
        with pytest.raises(TypeError):
            await layer.send("bad name!", {"type": "x"})
        with pytest.raises(TypeError):
            await layer.group_add("bad group!", "c")
        assert layer.extensions == ["groups", "flush"]
    run(body())


def test_another_event_loop_is_refused():
    async def body():
        layer = Bus().process("one")
        await layer.new_channel()
        return layer
    layer = run(body())
    with pytest.raises(RuntimeError, match="event loop other than the worker's"):
        run(layer.group_send("g", {"type": "x"}))


def test_channels_redis_options_are_ignored_others_refused(caplog):
    layer = BusChannelLayer(hosts=[("redis", 6379)], prefix="asgi", capacity=5)
    assert layer.capacity == 5 and "hosts, prefix ignored" in caplog.text
    with pytest.raises(TypeError):
        BusChannelLayer(capcity=5)


def test_unreadable_messages_are_dropped():
    async def body():
        bus = Bus()
        layer = bus.process("one")
        hub = bus.hubs[0]
        for event in ({"type": "websocket.send", "text": "hi"},
                      {"type": "websocket.send", "bytes": b"\xc1"},
                      {"type": "websocket.send", "bytes": codec.msgpack.packb({"op": 1})},
                      {"type": "websocket.send", "bytes": codec.msgpack.packb(
                          {"op": "group_add", "target": ["g", "bad name!"], "message": None})},
                      {"type": "websocket.send", "bytes": codec.msgpack.packb(
                          {"op": "send", "target": 7, "message": b"\x80"})}):
            hub.on_message({"w": "wk-x", "s": hub._seq, "group": "channels!worker:wk-one",
                            "event": event})
            hub._seq += 1
        assert not layer._buffers
    run(body())

