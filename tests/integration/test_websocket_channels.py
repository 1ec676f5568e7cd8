"""Django Channels (4.0, on Django 3.2) served unmodified: sync and async consumers behind
a ProtocolTypeRouter and URLRouter accept, reject with close (403), echo, close with a
code, and hear the client's close; HTTP still reaches Django.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from .harness import request
from .wsraw import RawWebSocket

APP = "ws_channels:application"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def channels_bridge(bridge_factory):
    return bridge_factory(APP, ready_path="/")


def url(b, path: str) -> str:
    return f"ws://127.0.0.1:{b.port}{path}"


def test_http_still_reaches_django(channels_bridge):
    r = request(channels_bridge.port, "GET", "/")
    assert (r.status, r.body) == (200, b"hello from django")


def test_sync_consumer_echoes_and_closes(channels_bridge):
    b = channels_bridge

    async def client():
        async with websockets.connect(url(b, "/ws/echo/?id=sync")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00bytes\xff")
            assert await ws.recv() == b"\x00bytes\xff"
            await ws.send("close")
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code

    assert run(client()) == 4001


def test_sync_consumer_hears_the_client_close(channels_bridge):
    b = channels_bridge

    async def client():
        async with websockets.connect(url(b, "/ws/echo/?id=bye")) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            await ws.close(code=4321, reason="done")

    run(client())
    assert b.state.wait_for("channels-bye").strip() == "disconnect 4321"


@pytest.mark.parametrize("path", ["/ws/reject/", "/ws/deny/"])
def test_consumer_rejecting_in_connect_is_403(channels_bridge, path):
    with RawWebSocket(channels_bridge.port, path) as c:
        r = c.read_handshake()
        assert r.status == 403
        assert c.at_eof()

    async def client():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(url(channels_bridge, path)):
                pass
        return info.value.status_code

    assert run(client()) == 403


def test_unrouted_path_is_refused(channels_bridge):
    with RawWebSocket(channels_bridge.port, "/ws/nowhere/") as c:
        # URLRouter raises ValueError for an unknown path: an app error before accept.
        assert c.read_handshake().status == 500


def test_async_consumer_subprotocol_route_kwargs_echo_close(channels_bridge):
    b = channels_bridge

    async def client():
        async with websockets.connect(url(b, "/ws/async/lobby/?id=async"),
                                      subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            assert await ws.recv() == "hello lobby"
            await ws.send("hi")
            assert await ws.recv() == "async:hi"
            await ws.send(b"abc")
            assert await ws.recv() == b"cba"
            await ws.send("close")
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code

    assert run(client()) == 4002


def test_json_consumer(channels_bridge):
    b = channels_bridge

    async def client():
        async with websockets.connect(url(b, "/ws/json/?id=json")) as ws:
            await ws.send(json.dumps({"n": 1, "s": "ü"}))
            return json.loads(await ws.recv())

    assert run(client()) == {"echo": {"n": 1, "s": "ü"}}
    assert b.state.wait_for("channels-json").startswith("disconnect")


def test_many_consumers_at_once(channels_bridge):
    """Sync consumers run in asgiref's thread-sensitive executor; a new connection must
    not inherit another consumer's context (its "executor in use" guard then refused it:
    "would deadlock", a 500)."""
    b = channels_bridge

    async def one(i):
        async with websockets.connect(url(b, f"/ws/echo/?id=m{i}")) as ws:
            for k in range(5):
                await ws.send(f"{i}-{k}")
                assert await ws.recv() == f"{i}-{k}"
        return i

    async def clients():
        return await asyncio.gather(*(one(i) for i in range(200)))

    assert sorted(run(clients(), timeout=120)) == list(range(200))
