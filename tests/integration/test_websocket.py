"""WebSocket, the held handshake (design.md section 5, WebSocket column, before accept):
the scope the app gets, accept with a subprotocol and headers, 403 for a close before
accept, the denial response extension, 500/504/502, and a client leaving while it waits.

The handshake is held open until the worker answers: no 101 goes out before
``websocket.accept``. Raw sockets show what the client sees when it is refused; the
python3-websockets client shows that an accepted handshake is a real one.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from .harness import Background, raw_request
from .wsraw import RawWebSocket, frame

pytestmark = pytest.mark.every_bus

APP = "ws_routes:app"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_url(port: int, path: str) -> str:
    return f"ws://127.0.0.1:{port}{path}"


def refused(port: int, path: str, timeout: float = 15.0):
    """The HTTP response to a handshake that was not accepted, read raw."""
    with RawWebSocket(port, path, timeout=timeout) as c:
        r = c.read_handshake()
        assert c.at_eof(), "a refused handshake ends the connection"
    return r


def unbytes(value):
    """Undo basic_app.jsonable for bytes."""
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return value["$bytes"].encode("latin-1")
    if isinstance(value, list):
        return [unbytes(v) for v in value]
    if isinstance(value, dict):
        return {k: unbytes(v) for k, v in value.items()}
    return value


# -- accept ------------------------------------------------------------------------------------


def test_connect_carries_the_full_scope(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--root-path", "/mount"])

    async def client():
        async with websockets.connect(
                ws_url(b.port, "/scope?id=s&sub=chat.v2&x=caf%C3%A9"),
                subprotocols=["chat.v1", "chat.v2"],
                extra_headers=[("X-Custom", "One"), ("X-Custom", "Two")]) as ws:
            assert ws.subprotocol == "chat.v2"
            local = ws.local_address
            await ws.send("ping")
            assert await ws.recv() == "ping"
            return local

    local = run(client())
    scope = unbytes(json.loads(b.state.wait_for("scope-s")))
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert "method" not in scope
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == b"/scope"
    assert scope["query_string"] == b"id=s&sub=chat.v2&x=caf%C3%A9"
    assert scope["root_path"] == "/mount"
    assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
    headers = scope["headers"]
    assert all(name == name.lower() for name, _ in headers)
    assert [v for n, v in headers if n == b"x-custom"] == [b"One", b"Two"]
    assert [v for n, v in headers if n == b"host"] == [f"127.0.0.1:{b.port}".encode()]
    assert [v for n, v in headers if n == b"upgrade"] == [b"websocket"]
    assert [v for n, v in headers if n == b"sec-websocket-version"] == [b"13"]
    assert [v for n, v in headers if n == b"sec-websocket-protocol"] == [b"chat.v1, chat.v2"]
    assert len([v for n, v in headers if n == b"sec-websocket-key"]) == 1
    assert scope["client"] == [local[0], local[1]]
    assert scope["server"] == ["127.0.0.1", b.port]
    assert "websocket.http.response" in scope["extensions"]


def test_path_is_percent_decoded_and_raw_path_kept(bridge_factory):
    b = bridge_factory(APP)
    with RawWebSocket(b.port, "/scope%2Fnot?id=p") as c:
        # Unknown route: the app closes before accepting.
        assert c.read_handshake().status == 403
    scope = unbytes(json.loads(b.state.read("scope-p") or "null"))
    assert scope is None  # /scope%2Fnot is not /scope: no route recorded it
    with RawWebSocket(b.port, "/sc%6Fpe?id=q") as c:
        assert c.read_handshake().status == 101
    scope = unbytes(json.loads(b.state.wait_for("scope-q")))
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == b"/sc%6Fpe"


def test_accept_sends_subprotocol_and_app_headers(bridge_factory):
    b = bridge_factory(APP)
    with RawWebSocket(b.port, "/scope?id=h&sub=b",
                      headers=[("Sec-WebSocket-Protocol", "a, b")]) as c:
        r = c.read_handshake()
        assert r.status == 101
        assert r.header("sec-websocket-protocol") == "b"
        assert r.header("x-app") == "accepted"
        assert [v for k, v in r.headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]
        assert r.header("upgrade").lower() == "websocket"
        assert r.header("sec-websocket-accept")


def test_accept_without_subprotocol_sends_none(bridge_factory):
    b = bridge_factory(APP)
    with RawWebSocket(b.port, "/scope?id=n&sub=zzz",
                      headers=[("Sec-WebSocket-Protocol", "a")]) as c:
        r = c.read_handshake()
        assert r.status == 101
        assert r.header("sec-websocket-protocol") is None


def test_no_101_before_the_app_accepts(bridge_factory):
    b = bridge_factory(APP)
    with RawWebSocket(b.port, "/hold?id=w", timeout=1.0) as c:
        b.state.wait_for("started-w")
        with pytest.raises(TimeoutError):
            c.read_head()  # nothing at all while the app holds the handshake
        assert c.buf == b""


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code,reason", [(1000, ""), (4403, "go away"), (1008, "policy")])
def test_close_before_accept_is_403(bridge_factory, code, reason):
    b = bridge_factory(APP)
    r = refused(b.port, f"/refuse?code={code}&reason={reason.replace(' ', '+')}")
    assert r.status == 403
    assert r.header("upgrade") is None and r.header("sec-websocket-accept") is None


def test_close_before_accept_with_websockets_client(bridge_factory):
    b = bridge_factory(APP)

    async def client():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(ws_url(b.port, "/refuse?code=4000")):
                pass
        return info.value.status_code

    assert run(client()) == 403


def test_denial_response_is_exactly_the_apps(bridge_factory):
    b = bridge_factory(APP)
    r = refused(b.port, "/deny")
    assert r.status == 418
    assert r.header("content-type") == "text/plain"
    assert [v for k, v in r.headers if k.lower() == "x-denied"] == ["teapot", "twice"]
    assert r.header("upgrade") is None and r.header("sec-websocket-accept") is None
    assert r.body == b"short and stout"


def test_app_exception_before_accept_is_500(bridge_factory):
    b = bridge_factory(APP)
    assert refused(b.port, "/raise-before-accept").status == 500
    assert refused(b.port, "/return-before-accept").status == 500
    # The worker is still serving.
    with RawWebSocket(b.port, "/echo") as c:
        assert c.read_handshake().status == 101


def test_no_answer_within_connect_timeout_is_504_and_app_gets_disconnect(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--websocket-connect-timeout", "1"])
    started = time.monotonic()
    r = refused(b.port, "/hold?id=t")
    assert r.status == 504
    assert time.monotonic() - started < 10, "no hang"
    assert b.state.wait_for("ws-t").strip() == "websocket.disconnect 1006"


def test_client_leaving_during_held_handshake_reaches_app(bridge_factory):
    b = bridge_factory(APP)
    c = RawWebSocket(b.port, "/hold?id=gone")
    b.state.wait_for("started-gone")
    c.close()
    assert b.state.wait_for("ws-gone").startswith("websocket.disconnect")


def test_worker_killed_before_accept_is_502(bridge_factory, bus_url):
    """ZeroMQ: a connect its worker never acknowledged is dispatched once more (design.md
    section 5); when that second worker dies too, the client gets 502. Redis: the worker
    claimed it at once (docs/redis.md), so the first death is already a 502 — once the
    claim has left the worker: killed before that, nobody took the connection (503)."""
    redis = bus_url.startswith(("redis:", "rediss:"))
    b = bridge_factory(APP, workers=2, gateway_args=["--websocket-connect-timeout", "30"])
    pids = {w.pid: w for w in b.workers}
    c = RawWebSocket(b.port, f"/hold?id=k&settle={1 if redis else 0}", timeout=20)
    try:
        first = int(b.state.wait_for("started-k"))
        if not redis:
            b.state.file("started-k").unlink()
            pids[first].kill()
            first = int(b.state.wait_for("started-k"))
            assert first in pids and pids[first].alive(), "re-dispatched to the other worker"
        pids[first].kill()
        started = time.monotonic()
        r = c.read_handshake()
        assert r.status == 502
        assert time.monotonic() - started < 10, "no hang"
    finally:
        c.close()


def test_handshake_waits_for_a_worker(bridge_factory):
    """A connect that arrives before any worker is served once one comes."""
    b = bridge_factory(APP, workers=0, gateway_args=["--dispatch-timeout", "20"])

    async def client():
        async with websockets.connect(ws_url(b.port, "/echo?id=late")) as ws:
            await ws.send("late")
            return await ws.recv()

    waiting = Background(run, client())
    time.sleep(0.5)  # the handshake is at the gateway, no worker yet
    b.start_worker()
    assert waiting.result(30) == "late"


def test_no_worker_is_503(bridge_factory):
    b = bridge_factory(APP, workers=0, gateway_args=["--dispatch-timeout", "1"])
    r = refused(b.port, "/echo")
    assert r.status == 503


def test_a_connection_list_split_over_field_lines_still_upgrades(bridge_factory):
    """RFC 9110 §5.3: "Connection: keep-alive" and "Connection: Upgrade" on two field
    lines mean "keep-alive, Upgrade" (Beast alone reads only the first line)."""
    b = bridge_factory(APP)
    with RawWebSocket(b.port, "/echo", connection=("keep-alive", "Upgrade")) as c:
        assert c.read_handshake().status == 101
        c.send_frame(0x1, b"split")
        assert c.read_frame() == (True, 0x1, b"split")


def test_frames_sent_behind_the_handshake_are_not_lost(bridge_factory):
    """RFC 6455 has a client wait for the 101 before it sends a frame; one that does
    not (its frames in the same write as its upgrade request) loses none of them."""
    b = bridge_factory(APP)
    early = frame(0x1, b"early") + frame(0x2, b"\x00\x01")
    with RawWebSocket(b.port, "/echo", early=early) as c:
        assert c.read_handshake().status == 101
        assert c.read_frame() == (True, 0x1, b"early")
        assert c.read_frame() == (True, 0x2, b"\x00\x01")
        c.send_frame(0x1, b"late")
        assert c.read_frame() == (True, 0x1, b"late")


def test_bad_handshakes_never_reach_the_app(bridge_factory):
    b = bridge_factory(APP)
    base = (f"GET /hold?id=bad HTTP/1.1\r\nHost: 127.0.0.1:{b.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n")
    r = raw_request(b.port, (base + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 8\r\n\r\n").encode())
    assert r.status == 426
    assert r.header("sec-websocket-version") == "13"
    # RFC 6455 §4.2.1: a key is 16 bytes in base64, given once.
    for key in ("short", "!" * 24, "A" * 24, "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="):
        r = raw_request(b.port, (base + f"Sec-WebSocket-Key: {key}\r\n"
                                 "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        assert r.status == 400, key
    huge = "X-Big: " + "b" * (20 * 1024) + "\r\n"  # over the default 16 KiB head limit
    r = raw_request(b.port, (base + huge + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert r.status == 431
    time.sleep(0.3)
    assert b.state.read("started-bad") is None
