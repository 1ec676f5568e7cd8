"""WebSocket after accept (design.md section 5, WebSocket column): messages both ways and
in order, fragmented frames, the message size limit (1009), invalid UTF-8 (1007),
keep-alive pings, close codes and reasons both ways, --websocket-timeout, a worker dying
(1011), and what the client sees when the app breaks the ASGI state machine.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from .harness import wait_for_log, wait_until
from .wsraw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawWebSocket, close_payload

pytestmark = pytest.mark.every_bus

APP = "ws_routes:app"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_url(port: int, path: str) -> str:
    return f"ws://127.0.0.1:{port}{path}"


def opened(port: int, path: str, **kwargs) -> RawWebSocket:
    c = RawWebSocket(port, path, **kwargs)
    r = c.read_handshake()
    assert r.status == 101, r
    return c


# -- messages ----------------------------------------------------------------------------------


def test_text_and_bytes_both_ways(bridge_factory):
    b = bridge_factory(APP)

    async def client():
        async with websockets.connect(ws_url(b.port, "/echo?id=tb"), max_size=None) as ws:
            for message in ["hello", "", "ünïcödé ✓", b"\x00\x01\xff", b"",
                            "t" * 70000, b"b" * (2 * 1024 * 1024 + 3)]:
                await ws.send(message)
                echoed = await ws.recv()
                assert type(echoed) is type(message) and echoed == message

    run(client())


def test_order_kept_under_load_both_directions(bridge_factory):
    """10,000 messages each way at once: the app sees the client's in order, the client
    sees the app's in order (credits and windows open and close many times)."""
    n = 10_000
    b = bridge_factory(APP)

    async def client():
        async with websockets.connect(ws_url(b.port, f"/order?id=o&n={n}")) as ws:
            async def produce():
                for i in range(n):
                    await ws.send(f"c{i}")

            producer = asyncio.ensure_future(produce())
            received = [await ws.recv() for _ in range(n + 1)]
            await producer
            return received

    received = run(client(), timeout=120)
    assert received[:n] == [f"s{i}" for i in range(n)]
    assert received[n] == f"in-order {n}"


def test_order_kept_when_the_socket_fills(bridge_factory):
    """Small and 256 KiB messages alternating, to a client that starts reading only once
    they have filled its socket: frames the socket took in part are finished before the
    next one, whichever way each was written (at once from its delivery, or queued)."""
    n, pad = 200, 256 * 1024
    b = bridge_factory(APP)
    with RawWebSocket(b.port, f"/order?id=p&n={n}&pad={pad}", timeout=60, rcvbuf=64 * 1024) as c:
        assert c.read_handshake().status == 101
        for i in range(n):
            c.send_frame(TEXT, f"c{i}".encode())
        time.sleep(1)  # the app's sends meet a full socket
        for i in range(n):
            opcode, payload = c.read_message()
            assert opcode == TEXT and payload == (f"s{i}" + "." * (pad if i % 2 else 0)).encode(), i
        assert c.read_message() == (TEXT, f"in-order {n}".encode())


def test_fragmented_frames_are_reassembled(bridge_factory):
    b = bridge_factory(APP)
    with opened(b.port, "/echo?id=frag") as c:
        text = "Hello wörld".encode()
        split = text.index("ö".encode()) + 1  # inside the two bytes of "ö"
        c.send_frame(TEXT, text[:3], fin=False)
        c.send_frame(PING, b"between fragments")  # control frames may interleave
        c.send_frame(CONTINUATION, text[3:split], fin=False)
        c.send_frame(CONTINUATION, text[split:], fin=True)
        fin, opcode, payload = c.read_frame()
        assert (fin, opcode, payload) == (True, PONG, b"between fragments")
        assert c.read_message() == (TEXT, text)

        big = b"\x00" * 70_000  # a 64-bit length, then a 7-bit one
        c.send_frame(BINARY, big, fin=False)
        c.send_frame(CONTINUATION, b"", fin=False)
        c.send_frame(CONTINUATION, b"\x01" * 10, fin=True)
        assert c.read_message() == (BINARY, big + b"\x01" * 10)

        c.send_frame(CLOSE, close_payload(1000))
        assert c.read_close() == (1000, "")


def test_messages_longer_than_the_first_read_arrive_whole(bridge_factory):
    """The gateway reads a message's first 128 bytes, then the rest: multi-byte
    characters cut at that boundary, a message just over it, and a large one that
    grows the buffer (freed afterwards) all echo unchanged, and the connection goes
    on with small messages."""
    b = bridge_factory(APP)
    messages = ["ö" * 300, "€" * 43, "x" * 129, b"\x07" * 200_000, "small", "✓" * 1000, b"b"]

    async def client():
        async with websockets.connect(ws_url(b.port, "/echo?id=long"), max_size=None) as ws:
            echoed = []
            for message in messages:
                await ws.send(message)
                echoed.append(await ws.recv())
            return echoed

    assert run(client()) == messages


# -- limits ------------------------------------------------------------------------------------


def test_message_over_max_size_closes_1009(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--max-message-size", "1000"])

    async def client():
        async with websockets.connect(ws_url(b.port, "/echo?id=big")) as ws:
            await ws.send("x" * 1000)  # at the limit: fine
            assert await ws.recv() == "x" * 1000
            await ws.send(b"y" * 1001)
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code

    assert run(client()) == 1009
    assert b.state.wait_for("ws-big").startswith("disconnect 1009")

    # A message that grows over the limit one fragment at a time.
    with opened(b.port, "/echo?id=bigfrag") as c:
        for _ in range(3):
            c.send_frame(BINARY if _ == 0 else CONTINUATION, b"z" * 400, fin=False)
        code, _ = c.read_close()
        assert code == 1009
    assert b.state.wait_for("ws-bigfrag").startswith("disconnect 1009")


def test_invalid_utf8_in_text_frame_closes_1007(bridge_factory):
    b = bridge_factory(APP)
    with opened(b.port, "/echo?id=utf") as c:
        c.send_frame(TEXT, "fine ✓".encode())
        assert c.read_message() == (TEXT, "fine ✓".encode())
        c.send_frame(TEXT, b"bad \xff\xfe")
        code, _ = c.read_close()
        assert code == 1007
    assert b.state.wait_for("ws-utf").startswith("disconnect 1007")

    # Invalid only once the message is complete: a truncated sequence at the end.
    with opened(b.port, "/echo?id=utf2") as c:
        c.send_frame(TEXT, b"ok \xe2\x9c", fin=False)
        c.send_frame(CONTINUATION, b"", fin=True)
        code, _ = c.read_close()
        assert code == 1007
    assert b.state.wait_for("ws-utf2").startswith("disconnect 1007")


# -- keep-alive --------------------------------------------------------------------------------


def test_pings_keep_an_answering_client_open(bridge_factory):
    # Each pong meets its --ping-timeout deadline.
    b = bridge_factory(APP, gateway_args=["--ping-interval", "0.5", "--ping-timeout", "0.5"])
    with opened(b.port, "/echo?id=ping") as c:
        pings = 0
        deadline = time.monotonic() + 3  # six ping intervals, all answered
        while time.monotonic() < deadline:
            fin, opcode, payload = c.read_frame()
            assert opcode == PING, (opcode, payload)
            pings += 1
            c.send_frame(PONG, payload)
        assert pings >= 2
        c.send_frame(TEXT, b"still here")
        assert c.read_message() == (TEXT, b"still here")
        # Still connected: the app has seen no disconnect (checked before our
        # own abrupt close below, which the app does record as 1006).
        assert b.state.read("ws-ping") is None


def test_a_client_that_never_answers_pings_is_closed_1011(bridge_factory):
    """--ping-timeout is its own deadline: no pong within it after a ping, and the
    gateway closes with 1011 (a close frame, not a dropped socket) and says why."""
    b = bridge_factory(APP, gateway_args=["--ping-interval", "0.5", "--ping-timeout", "0.5"])
    with opened(b.port, "/echo?id=deaf", timeout=15) as c:
        pings = 0
        while True:
            fin, opcode, payload = c.read_frame()
            if opcode == CLOSE:
                break
            assert opcode == PING, opcode
            pings += 1
        assert pings == 1, "one ping, then the close at its deadline"
        assert int.from_bytes(payload[:2], "big") == 1011
        c.send_frame(CLOSE, close_payload(1011))
    assert b.state.wait_for("ws-deaf").startswith("disconnect 1011")
    wait_for_log(b.gateway, "no pong within --ping-timeout (0.5 s): closing 1011")


def test_pings_off_with_interval_zero(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--ping-interval", "0"])
    with opened(b.port, "/echo?id=quiet", timeout=1.5) as c:
        with pytest.raises(TimeoutError):
            c.read_frame()  # no ping, and no close either
        c.sock.settimeout(10)
        c.send_frame(TEXT, b"hi")
        assert c.read_message() == (TEXT, b"hi")


# -- closing -----------------------------------------------------------------------------------


def test_app_close_code_and_reason_reach_the_client(bridge_factory):
    b = bridge_factory(APP)

    async def client(command):
        async with websockets.connect(ws_url(b.port, "/echo?id=ac")) as ws:
            await ws.send(command)
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code, ws.close_reason

    assert run(client("close:4321:done here, ✓")) == (4321, "done here, ✓")
    assert run(client("close:1000:")) == (1000, "")
    assert run(client("close:1001:going")) == (1001, "going")


def test_client_close_code_and_reason_reach_the_app(bridge_factory):
    b = bridge_factory(APP)

    async def client(ident, code, reason):
        async with websockets.connect(ws_url(b.port, f"/echo?id={ident}")) as ws:
            await ws.close(code=code, reason=reason)
            return ws.close_code

    assert run(client("c1", 4002, "bye now")) == 4002
    assert b.state.wait_for("ws-c1").strip() == "disconnect 4002 bye now"
    run(client("c2", 1000, ""))
    assert b.state.wait_for("ws-c2").strip() == "disconnect 1000"

    with opened(b.port, "/echo?id=c3") as c:  # a close frame without a code
        c.send_frame(CLOSE)
        assert c.read_close() in ((None, ""), (1000, ""))
    assert b.state.wait_for("ws-c3").strip() == "disconnect 1005"

    c = opened(b.port, "/echo?id=c4")  # no close frame at all
    c.close()
    assert b.state.wait_for("ws-c4").strip() == "disconnect 1006"


def test_invalid_client_close_codes_fail_with_1002(bridge_factory):
    """RFC 6455 §7.4 (Autobahn 7.9 and 7.13): a close code outside 1000-4999, reserved
    (1005) or unassigned (1016-2999) fails the WebSocket with 1002, and the app hears
    1002 too; a private-use code (4000) still reaches the app as sent."""
    b = bridge_factory(APP)
    for code in (5000, 65535, 1005, 999, 1016):
        with opened(b.port, f"/echo?id=bad{code}") as c:
            c.send_frame(CLOSE, close_payload(code, "why"))
            assert c.read_close()[0] == 1002, code
        assert b.state.wait_for(f"ws-bad{code}").strip() == "disconnect 1002", code
    wait_for_log(b.gateway, "client sent close code 65535, outside 1000-4999: closing 1002")
    with opened(b.port, "/echo?id=ok4000") as c:
        c.send_frame(CLOSE, close_payload(4000, "fine"))
        assert c.read_close()[0] == 4000
    assert b.state.wait_for("ws-ok4000").strip() == "disconnect 4000 fine"


def test_client_close_reaches_the_app_before_the_tcp_close(bridge_factory):
    """The app hears the client's close frame at once, not when the TCP connection ends;
    a client that never closes its TCP side is cut after the closing handshake's limit."""
    b = bridge_factory(APP, gateway_args=["--ping-interval", "0"])
    with opened(b.port, "/echo?id=half", timeout=30) as c:
        c.send_frame(CLOSE, close_payload(4100, "leaving"))
        assert c.read_close()[0] == 4100  # Beast echoes the code
        # The client keeps its TCP side open; the app already knows.
        assert b.state.wait_for("ws-half").strip() == "disconnect 4100 leaving"
        assert c.at_eof()  # the gateway's FIN; it then waits for ours, but not forever
        client_port = c.sock.getsockname()[1]
        wait_until(lambda: not gateway_holds_socket(b.port, client_port), 20,
                   "the gateway to close its socket")


def gateway_holds_socket(server_port: int, client_port: int) -> bool:
    """True while a process holds the server side of that TCP connection (in
    /proc/net/tcp a socket no process holds any more shows inode 0)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (int(local.split(":")[1], 16) == server_port
                    and int(remote.split(":")[1], 16) == client_port):
                return inode != 0
    return False


def test_websocket_timeout_closes(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--websocket-timeout", "1"])

    async def client():
        started = time.monotonic()
        async with websockets.connect(ws_url(b.port, "/hang?id=life")) as ws:
            await asyncio.wait_for(ws.wait_closed(), 15)
            return ws.close_code, time.monotonic() - started

    code, elapsed = run(client())
    assert code == 1000
    assert elapsed >= 0.9
    assert b.state.wait_for("ws-life").startswith("disconnect")


def test_worker_killed_after_accept_closes_1011(bridge_factory):
    heartbeat = 0.5
    b = bridge_factory(APP, gateway_args=["--heartbeat-interval", str(heartbeat)],
                       worker_args=["--heartbeat-interval", str(heartbeat)])

    async def client():
        async with websockets.connect(ws_url(b.port, "/hang?id=k")) as ws:
            await asyncio.get_running_loop().run_in_executor(
                None, b.state.wait_for, "started-k")
            b.workers[0].kill()
            killed = time.monotonic()
            await asyncio.wait_for(ws.wait_closed(), 15)
            return ws.close_code, time.monotonic() - killed

    code, elapsed = run(client())
    assert code == 1011
    # 3 silent intervals make a worker dead; the gateway looks once per interval.
    assert elapsed < 4 * heartbeat + 2.0, f"1011 only after {elapsed:.1f} s"


# -- the ASGI state machine, as the client sees it ---------------------------------------------


def test_send_before_accept_is_500_and_raises_in_app(bridge_factory):
    b = bridge_factory(APP)
    with RawWebSocket(b.port, "/violate?id=sba&case=send-before-accept") as c:
        assert c.read_handshake().status == 500
    assert b.state.wait_for("violation-sba").startswith("UnexpectedMessage")


def test_accept_twice_raises_in_app_and_closes_1011(bridge_factory):
    b = bridge_factory(APP)

    async def client():
        async with websockets.connect(ws_url(b.port, "/violate?id=at&case=accept-twice")) as ws:
            await asyncio.wait_for(ws.wait_closed(), 10)
            return ws.close_code

    assert run(client()) == 1011
    assert b.state.wait_for("violation-at").startswith("UnexpectedMessage")


def test_send_after_close_raises_in_app_client_sees_the_close(bridge_factory):
    b = bridge_factory(APP)

    async def client():
        async with websockets.connect(ws_url(b.port, "/violate?id=sac&case=send-after-close")) as ws:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await ws.recv()  # the refused send never arrives
            return ws.close_code, ws.close_reason

    assert run(client()) == (4000, "closed first")
    assert b.state.wait_for("violation-sac").startswith("ClientDisconnected")
