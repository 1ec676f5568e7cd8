"""Broadcast groups of plain ASGI apps in the Python worker (asgi_bridge.groups, app
apps/ws_groups.py: chat rooms at /chat/ROOM), on the wire of the C++ SDK's groups():

- two Python workers behind one gateway share a room; a leaver gets no more;
- on Redis a worker unsubscribes from a room when its last member leaves;
- a Python and a C++ worker (asgi-bridge-example-chat) on one bus share a room.

Which worker serves a client is forced: a worker with --websocket-capacity 1 takes the
first client alone, the next goes to the other worker.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets

from .harness import wait_for_log, wait_until
from .test_cpp_workers import is_redis, redis, run, start_cpp_worker

pytestmark = pytest.mark.every_bus

APP = "ws_groups:app"


def on_bus(bridge, worker) -> None:
    """Until `worker` serves: the gateway heard it (ZeroMQ), or it reached Redis."""
    if is_redis(bridge.bus_url):
        wait_for_log(worker, ": connected")
    else:
        wait_for_log(bridge.gateway, "joined", more_than=len(bridge.workers) - 1)


def subscribed(bus_url: str, group: str, workers: int) -> None:
    """Redis: until `workers` workers subscribe to the group (a message published
    before a worker subscribes is not for it). ZeroMQ: no subscriptions, at once."""
    if not is_redis(bus_url):
        return
    db = bus_url.rsplit("/", 1)[1]
    r = redis.Redis.from_url(bus_url)
    channel = f"asgi:group:{db}:{{{group}}}"  # PREFIX:group:DB:{NAME}
    wait_until(lambda: dict(r.pubsub_numsub(channel))[channel.encode()] == workers, 10,
               f"{workers} worker(s) to subscribe to {channel}")


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), 10)


def first_worker_takes(bridge_factory, app: str, websockets: int,
                       ready_path: str = "/__ready"):
    """A bridge whose only worker, `one`, takes `websockets` WebSockets: the next go to
    the next worker. Returns (bridge, one)."""
    b = bridge_factory(app, workers=0)
    one = b.start_worker(args=["--websocket-capacity", str(websockets)])
    on_bus(b, one)
    b.wait_ready(ready_path)
    return b, one


def test_room_spans_two_python_workers(bridge_factory):
    b, _ = first_worker_takes(bridge_factory, APP, 1)
    url = f"ws://127.0.0.1:{b.port}/chat/"

    async def body():
        async with websockets.connect(url + "r") as c1:
            two = b.start_worker()
            await asyncio.to_thread(on_bus, b, two)
            async with websockets.connect(url + "r") as c2, \
                    websockets.connect(url + "elsewhere") as c3:
                await asyncio.to_thread(subscribed, b.bus_url, "r", 2)
                await c1.send("from one")
                assert await recv(c1) == "from one"
                assert await recv(c2) == "from one"
                for n in range(20):
                    await c2.send(b"\x00%d" % n)
                for ws in (c1, c2):
                    assert [await recv(ws) for _ in range(20)] == [b"\x00%d" % n
                                                                   for n in range(20)]
                # Large enough for the shared-memory rings on ZeroMQ: the gateway
                # relays a group message it read from a worker's ring.
                big = bytes(range(256)) * 160
                await c2.send(big)
                for ws in (c1, c2):
                    assert await recv(ws) == big
                await c2.send("leave")
                assert await recv(c2) == "left"
                await c1.send("after")
                assert await recv(c1) == "after"
                await c3.send("only here")  # nothing of room r reached c3, nor c2
                assert await recv(c3) == "only here"
                await c2.send("leave")
                assert await recv(c2) == "left"
    run(body())


def test_redis_worker_unsubscribes_when_its_last_member_leaves(bridge_factory, bus_url):
    if not bus_url.startswith("redis://"):
        pytest.skip("pub/sub of a plain Redis bus")
    b = bridge_factory(APP, workers=1)

    async def body():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/chat/r") as c1:
            await c1.send("hi")
            assert await recv(c1) == "hi"
            await asyncio.to_thread(subscribed, bus_url, "r", 1)
        await asyncio.to_thread(subscribed, bus_url, "r", 0)  # its member left
    run(body())


def test_python_and_cpp_workers_share_a_room(bridge_factory):
    b, _ = first_worker_takes(bridge_factory, APP, 1)
    url = f"ws://127.0.0.1:{b.port}/chat/"

    async def body():
        async with websockets.connect(url + "lobby") as from_py:  # the only worker
            cpp = start_cpp_worker(b, "chat")
            if is_redis(b.bus_url):
                await asyncio.to_thread(wait_for_log, cpp, "redis shared queue: connected")
            else:
                await asyncio.to_thread(wait_for_log, b.gateway, "joined", more_than=1)
            async with websockets.connect(url + "lobby") as from_cpp:
                assert ": new websocket connection" in cpp.log()
                await asyncio.to_thread(subscribed, b.bus_url, "lobby", 2)
                await from_py.send("py says")
                assert await recv(from_py) == "py says"
                assert await recv(from_cpp) == "py says"
                await from_cpp.send(b"cpp says")
                assert await recv(from_cpp) == b"cpp says"
                assert await recv(from_py) == b"cpp says"
    run(body())
