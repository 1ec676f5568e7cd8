"""Django Channels on asgi_bridge.channels_layer.BusChannelLayer (apps/channels_chat.py),
real gateways, real Python workers, Redis where the bus is Redis:

- a chat room with members over 2 worker processes x 2 gateways: every member gets every
  message, in order per sender (async and sync consumers);
- send to a consumer's channel_name in the other process; receive on a named channel
  in the other process; ChannelFull at a channel's capacity;
- a member that leaves (group_discard) or disconnects gets nothing more, and on Redis its
  worker unsubscribes;
- a worker killed with members in the room: the others keep receiving.

- expiry (a message nobody received for 3 s is gone) and flush, in one worker.

Group expiry and the message rules are unit-tested in
workers/python/tests/test_channels_layer.py.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets

from .harness import Gateway, wait_for_log
from .test_cpp_workers import is_redis, run, second_gateway_bus
from .test_python_groups import first_worker_takes, on_bus, recv, subscribed

pytestmark = pytest.mark.every_bus

APP = "channels_chat:application"
ROOM = "channels!group:room"  # the bus group of Channels group "room"


def worker_of(me_line: str) -> str:
    """`me specific.wk-ID!xyz` -> wk-ID: the process that serves the consumer."""
    return me_line.split(" ", 1)[1].split("!")[0].rsplit(".", 1)[1]


async def join(url: str):
    ws = await websockets.connect(url)
    me = await recv(ws)
    assert me.startswith("me "), me
    return ws, me.split(" ", 1)[1]


def two_by_two(bridge_factory):
    """Two gateways, two workers on both: worker one (--websocket-capacity 2) serves
    the first member of each gateway, worker two the second ones."""
    b = bridge_factory(APP, workers=0)
    gw2 = Gateway(second_gateway_bus(b), b.log_dir, name="gateway2")
    b.procs.insert(0, gw2)  # closed after the workers
    gw2.wait_listening()
    both = [] if is_redis(b.bus_url) else ["--bus", gw2.bus_url]
    one = b.start_worker(args=["--websocket-capacity", "2", *both])
    on_bus(b, one)
    if not is_redis(b.bus_url):
        wait_for_log(gw2, "joined")
    b.wait_ready("/")
    return b, gw2, both


def test_room_over_two_workers_and_two_gateways(bridge_factory):
    b, gw2, both = two_by_two(bridge_factory)
    urls = [f"ws://127.0.0.1:{gw.port}/ws/chat/room/" for gw in (b, gw2)]

    async def body():
        first = [await join(url) for url in urls]  # worker one, full now
        await asyncio.to_thread(on_bus, b, b.start_worker(args=both))
        if both:
            await asyncio.to_thread(wait_for_log, gw2, "joined", more_than=1)
        second = [await join(url) for url in urls]
        members = first + second
        workers = [worker_of("me " + name) for _, name in members]
        assert workers[0] == workers[1] != workers[2] == workers[3], workers
        await asyncio.to_thread(subscribed, b.bus_url, ROOM, 2)
        sockets = [ws for ws, _ in members]
        # Every member sends 10, all at once: each gets all 40, in order per sender.
        await asyncio.gather(*(ws.send(f"{i}:{n}") for i, ws in enumerate(sockets)
                               for n in range(10)))
        for ws in sockets:
            got = [await recv(ws) for _ in range(40)]
            for i in range(4):
                assert [m for m in got if m.startswith(f"{i}:")] == [f"{i}:{n}"
                                                                      for n in range(10)]
        for ws in sockets:
            await ws.close()
    run(body(), timeout=60)


def test_direct_send_named_channel_and_channel_full(bridge_factory):
    b, one = first_worker_takes(bridge_factory, APP, 2, "/")
    url = f"ws://127.0.0.1:{b.port}/ws/"

    async def body():
        a, a_name = await join(url + "chat/a/")
        listener = await websockets.connect(url + "named/jobs/")  # one is full now
        assert await recv(listener) == "listening"
        two = b.start_worker()
        await asyncio.to_thread(on_bus, b, two)
        c, c_name = await join(url + "chat/c/")
        assert worker_of("me " + a_name) != worker_of("me " + c_name)
        # A consumer's channel_name, in the other process.
        await a.send(f"to {c_name} hello c")
        assert await recv(c) == "hello c"
        await c.send(f"to {a_name} hello a")
        assert await recv(a) == "hello a"
        # A named channel received on in the other process (the listener is on one).
        await asyncio.to_thread(subscribed, b.bus_url, "channels!channel:jobs", 1)
        await c.send("to jobs job 1")
        assert await recv(listener) == "job 1"
        # ChannelFull: full.* holds 3 messages (channel_capacity), nobody receives.
        await c.send("fill full.x 5")
        assert await recv(c) == "full at 3"
        for ws in (a, c, listener):
            await ws.close()
    run(body())


def test_leavers_get_nothing_more(bridge_factory):
    b, one = first_worker_takes(bridge_factory, APP, 1, "/")
    url = f"ws://127.0.0.1:{b.port}/ws/chat/room/"

    async def body():
        stays, _ = await join(url)  # worker one
        two = b.start_worker()
        await asyncio.to_thread(on_bus, b, two)
        leaves, _ = await join(url)
        goes, _ = await join(url)  # both on worker two
        await asyncio.to_thread(subscribed, b.bus_url, ROOM, 2)
        await stays.send("all three")
        for ws in (stays, leaves, goes):
            assert await recv(ws) == "all three"
        await leaves.send("leave")  # group_discard
        assert await recv(leaves) == "left"
        await goes.close()          # disconnect: the consumer discards itself
        await asyncio.to_thread(subscribed, b.bus_url, ROOM, 1)  # two has no member left
        await stays.send("only me")
        assert await recv(stays) == "only me"
        await leaves.send("leave")  # its next message is its own answer, not "only me"
        assert await recv(leaves) == "left"
        await stays.close()
        await leaves.close()
    run(body())


def test_sync_consumers_and_a_killed_worker(bridge_factory):
    b, one = first_worker_takes(bridge_factory, APP, 2, "/")
    url = f"ws://127.0.0.1:{b.port}/ws/sync/room/"

    async def body():
        doomed = [(await join(url))[0] for _ in range(2)]  # worker one, full now
        two = b.start_worker()
        await asyncio.to_thread(on_bus, b, two)
        survivors = [(await join(url))[0] for _ in range(2)]  # worker two
        await asyncio.to_thread(subscribed, b.bus_url, ROOM, 2)
        await doomed[0].send("before")
        for ws in doomed + survivors:
            assert await recv(ws) == "before"
        one.kill()
        for ws in doomed:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await recv(ws)
        for n in range(5):
            await survivors[0].send(f"after {n}")
        for ws in survivors:
            assert [await recv(ws) for _ in range(5)] == [f"after {n}" for n in range(5)]
        for ws in survivors:
            await ws.close()
    run(body(), timeout=60)


def test_expiry_and_flush(bridge_factory):
    b = bridge_factory(APP, ready_path="/")
    url = f"ws://127.0.0.1:{b.port}/ws/"

    async def body():
        a, a_name = await join(url + "chat/room/")
        c, _ = await join(url + "chat/room/")
        # Expiry: "0" waits in named channel late.x for 3 s (expiry), nobody receives it.
        await c.send("fill late.x 1")
        assert await recv(c) == "sent 1"
        await asyncio.sleep(3.5)
        await c.send("to late.x fresh")
        async with websockets.connect(url + "named/late.x/") as listener:
            assert await recv(listener) == "listening"
            assert await recv(listener) == "fresh"  # not the expired "0"
        # Flush: the process forgets its groups, so the room has no member left.
        await c.send("flush")
        assert await recv(c) == "flushed"
        await c.send("hello room")
        await c.send(f"to {a_name} direct")
        assert await recv(a) == "direct"  # not "hello room"
        await a.close()
        await c.close()
    run(body())
