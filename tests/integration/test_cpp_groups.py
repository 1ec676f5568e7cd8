"""Broadcast groups of the C++ SDK across worker processes
(docs/workers-cpp.md, "Chat rooms"), with asgi-bridge-example-chat: every
message sent on a socket of /chat/ROOM reaches every socket of ROOM, whichever
worker serves it.

- ZeroMQ, one gateway: the gateway relays a worker's group message to the
  other workers;
- ZeroMQ, two gateways, both workers on both: each message arrives once,
  though it is relayed through both gateways;
- Redis: pub/sub, a worker subscribed while it has members, unsubscribed
  when its last member leaves;
- a Python worker on the same gateway with no member drops the relayed messages and keeps
  serving.

Which worker serves a client is forced, never guessed: a worker starts alone
and takes the first client; the next client goes to the worker that has
capacity (or is least loaded). Each test checks that from the workers' logs.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets

from .harness import Gateway, request, wait_for_log, wait_until
from .test_cpp_workers import (redis, redis_bus, run, second_gateway_bus,  # noqa: F401
                               start_cpp_worker)

pytestmark = pytest.mark.every_bus

ZMQ_ONLY = pytest.mark.zmq_only("the gateways relay group messages on ZeroMQ only")


async def receive_until(ws, last: str | bytes, limit: int = 100) -> list:
    """Every message up to and including `last` (bounded)."""
    got = []
    while not got or got[-1] != last:
        assert len(got) < limit, got
        got.append(await asyncio.wait_for(ws.recv(), 10))
    return got


async def send_all(ws, messages) -> None:
    for message in messages:
        await ws.send(message)


async def exchange_in_room(c1, c2, elsewhere) -> None:
    """c1 and c2 share a room (on different workers), `elsewhere` is in another."""
    await c1.send("from one")
    assert await c1.recv() == "from one"  # the sender too
    assert await c2.recv() == "from one"
    await c2.send(b"\x00from two")
    assert await c2.recv() == b"\x00from two"
    assert await c1.recv() == b"\x00from two"
    # Nothing of that room reached `elsewhere`: its next message is its own.
    await elsewhere.send("only here")
    assert await elsewhere.recv() == "only here"


def served_by_each(*workers, counts) -> None:
    """How many WebSockets each worker took (its debug log says)."""
    got = [w.log().count(": new websocket connection") for w in workers]
    assert got == list(counts), [w.name for w in workers]


@ZMQ_ONLY
def test_zmq_room_spans_two_workers_of_one_gateway(bridge_factory):
    b = bridge_factory(None, workers=0)
    one = start_cpp_worker(b, "chat", "--websocket-capacity", "2")
    b.wait_ready()
    url = f"ws://127.0.0.1:{b.port}/chat/"

    async def body():
        async with websockets.connect(url + "r") as c1:  # the only worker: one
            two = start_cpp_worker(b, "chat", "--websocket-capacity", "2")
            await asyncio.to_thread(wait_for_log, b.gateway, "joined", more_than=1)
            async with websockets.connect(url + "r") as c2:
                served_by_each(one, two, counts=(1, 1))  # c2 to the idle worker
                c3 = await websockets.connect(url + "elsewhere")
                await exchange_in_room(c1, c2, c3)
                await c3.close()
    run(body())


@ZMQ_ONLY
def test_zmq_two_gateways_deliver_each_message_once(bridge_factory):
    b = bridge_factory(None, workers=0)
    gw2 = Gateway(second_gateway_bus(b), b.log_dir, name="gateway2")
    b.procs.insert(0, gw2)  # closed after the workers
    gw2.wait_listening()
    buses = (b.bus_url, gw2.bus_url)
    one = start_cpp_worker(b, "chat", bus_urls=buses)
    wait_for_log(b.gateway, "joined")
    wait_for_log(gw2, "joined")

    async def body():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/chat/r") as c1, \
                websockets.connect(f"ws://127.0.0.1:{gw2.port}/chat/r") as filler:
            two = start_cpp_worker(b, "chat", bus_urls=buses)
            await asyncio.to_thread(wait_for_log, b.gateway, "joined", more_than=1)
            await asyncio.to_thread(wait_for_log, gw2, "joined", more_than=1)
            # gateway2 has a connection on worker one, none on two: c2 goes to two.
            async with websockets.connect(f"ws://127.0.0.1:{gw2.port}/chat/r") as c2:
                served_by_each(one, two, counts=(2, 1))
                from_one = [f"m{i}" for i in range(5)] + ["end1"]
                await send_all(c1, from_one)
                assert await receive_until(c1, "end1") == from_one
                assert await receive_until(filler, "end1") == from_one
                assert await receive_until(c2, "end1") == from_one  # once each, in order
                from_two = [f"n{i}" for i in range(5)] + ["end2"]
                await send_all(c2, from_two)
                assert await receive_until(c2, "end2") == from_two
                assert await receive_until(c1, "end2") == from_two
                assert await receive_until(filler, "end2") == from_two
                # A late copy of any of them would come before this one.
                await filler.send("last")
                assert await c2.recv() == "last"
                assert await c1.recv() == "last"
    run(body())


def test_redis_room_spans_two_workers_and_a_leaver_unsubscribes(redis_bus, bridge_factory):
    b = bridge_factory(None, workers=0)
    one = start_cpp_worker(b, "chat", "--websocket-capacity", "1")
    wait_for_log(one, "redis shared queue: connected")
    db = redis_bus.rsplit("/", 1)[1]
    r = redis.Redis.from_url(redis_bus)

    def subscribers(room: str) -> int:
        channel = f"asgi:group:{db}:{{{room}}}"  # PREFIX:group:DB:{NAME}
        return dict(r.pubsub_numsub(channel))[channel.encode()]

    url = f"ws://127.0.0.1:{b.port}/chat/"

    async def body():
        async with websockets.connect(url + "r") as c1:  # the only worker: one
            two = start_cpp_worker(b, "chat", "--websocket-capacity", "2")
            await asyncio.to_thread(wait_for_log, two, "redis shared queue: connected")
            async with websockets.connect(url + "r") as c2, \
                    websockets.connect(url + "elsewhere") as c3:
                served_by_each(one, two, counts=(1, 2))  # one is full: both to two
                # Subscribed: both workers to r, only two to elsewhere.
                await asyncio.to_thread(wait_until, lambda: subscribers("r") == 2, 10,
                                        "both workers to subscribe to room r")
                assert subscribers("elsewhere") == 1
                await exchange_in_room(c1, c2, c3)
            # c2 and c3 gone: worker two has no member of r left and leaves it.
            await asyncio.to_thread(wait_until, lambda: subscribers("r") == 1, 10,
                                    "worker two to unsubscribe from room r")
            assert subscribers("elsewhere") == 0
            await c1.send("still here")
            assert await c1.recv() == "still here"
    run(body())


@ZMQ_ONLY
def test_python_worker_without_members_drops_relayed_group_messages_and_keeps_serving(
        bridge_factory):
    b = bridge_factory(None, workers=0)
    # The chat worker answers HTTP with 404, the Python worker with 200: both
    # take requests (WebSockets hold no HTTP slot), and the Python worker must
    # serve its share after the group messages it dropped (no member of r there).
    chat = start_cpp_worker(b, "chat", "--concurrency", "1")
    b.wait_ready()

    async def body():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/chat/r") as c1:
            python = b.start_worker("basic_app:app")
            await asyncio.to_thread(wait_for_log, b.gateway, "joined", more_than=1)
            for i in range(3):
                await c1.send(f"hello {i}")
                assert await c1.recv() == f"hello {i}"
            await asyncio.to_thread(wait_for_log, python, "group r: message from", 10, 2)
            # Least-loaded dispatch alternates between two idle workers and picks
            # the Python worker while the chat worker's one HTTP slot is held.
            served = []
            for _ in range(6):
                response = await asyncio.to_thread(request, b.port, "GET", "/")
                assert response.status in (200, 404), response
                served.append(response.body == b"hello")
            assert served.count(True) >= 3, served
            log = python.log()
            assert "WARNING" not in log and "ERROR" not in log, log
            assert python.alive() and chat.alive()
    run(body())
