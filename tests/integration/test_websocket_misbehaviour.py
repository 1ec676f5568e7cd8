"""design.md section 5, WebSocket rows for a worker that misbehaves, driven by a scripted
worker (fakeworker.py) talking the wire protocol directly; and what the gateway itself
acknowledges: credits for bytes written to the client, never for bytes merely queued.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from .harness import wait_until
from .wsraw import BINARY, RawWebSocket

MiB = 1024 * 1024


def accept(fake, conn):
    fake.reply(conn, {"type": "websocket.accept", "subprotocol": None, "headers": []})


def ws_send(data: bytes) -> dict:
    return {"type": "websocket.send", "bytes": data}


def opened(fake_bridge, fake, path="/ws"):
    """A raw client accepted by the fake worker: (client, connection id)."""
    c = RawWebSocket(fake_bridge.port, path, timeout=20)
    conn = fake.next_event(type_="websocket.connect")["c"]
    accept(fake, conn)
    assert c.read_handshake().status == 101
    return c, conn


def close_code_after(c) -> int:
    code, _ = c.read_close()
    return code


# -- before accept ------------------------------------------------------------------------------


def test_error_before_accept_is_500(fake_bridge):
    fake = fake_bridge.add_fake()
    with RawWebSocket(fake_bridge.port, "/ws", timeout=20) as c:
        fake.error(fake.next_event(type_="websocket.connect")["c"], "the app raised")
        assert c.read_handshake().status == 500


def test_invalid_event_before_accept_is_502(fake_bridge):
    fake = fake_bridge.add_fake()
    with RawWebSocket(fake_bridge.port, "/ws", timeout=20) as c:
        conn = fake.next_event(type_="websocket.connect")["c"]
        fake.reply(conn, ws_send(b"before accept"))
        assert c.read_handshake().status == 502


def test_bye_before_accept_is_502_once_acknowledged(fake_bridge):
    fake = fake_bridge.add_fake()
    with RawWebSocket(fake_bridge.port, "/ws", timeout=20) as c:
        conn = fake.next_event(type_="websocket.connect")["c"]
        # Any message about the connection acknowledges it: no re-dispatch.
        fake.send({"v": 1, "k": "credit", "g": fake.gateway_id, "w": fake.id, "c": conn,
                   "events": 0})
        time.sleep(0.2)  # the credit reaches the gateway before the bye (same socket anyway)
        fake.bye()
        assert c.read_handshake().status == 502


# -- after accept -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["wrong event type", "sequence gap", "repeated sequence",
                                 "malformed", "error"])
def test_misbehaviour_after_accept_closes_1011(fake_bridge, how):
    fake = fake_bridge.add_fake()
    c, conn = opened(fake_bridge, fake)
    with c:
        fake.reply(conn, ws_send(b"fine"))
        assert c.read_message() == (BINARY, b"fine")
        if how == "wrong event type":
            fake.reply(conn, {"type": "http.response.start", "status": 200, "headers": [],
                              "trailers": False})
        elif how == "sequence gap":
            fake.reply(conn, ws_send(b"skipped one"), seq=5)
        elif how == "repeated sequence":
            fake.reply(conn, ws_send(b"again"), seq=1)
        elif how == "malformed":
            fake.reply(conn, {"type": "websocket.send", "text": b"bin where str belongs"})
        else:
            fake.error(conn, "the app raised after accept")
        assert close_code_after(c) == 1011


def test_worker_bye_after_accept_closes_1011(fake_bridge):
    fake = fake_bridge.add_fake()
    c, conn = opened(fake_bridge, fake)
    with c:
        fake.bye()
        assert close_code_after(c) == 1011


def test_silent_worker_after_accept_closes_1011(fake_bridge):
    fake = fake_bridge.add_fake()
    c, conn = opened(fake_bridge, fake)
    with c:
        fake.heartbeats = False
        assert close_code_after(c) == 1011


# -- credits from the gateway ---------------------------------------------------------------------


def test_gateway_credits_bytes_once_written_to_the_client(fake_bridge):
    """The worker sends 32 MiB as fast as its window allows (test_worker_attacks.py: one
    that sends more is cut off); the gateway credits only what it wrote to the client's
    socket, so a client that reads nothing stops the worker once the kernel buffers are
    full, and reading releases the rest."""
    fake = fake_bridge.add_fake()
    total, size = 32 * MiB, 64 * 1024
    c, conn = opened(fake_bridge, fake)
    sent, credits = 0, 0

    def pump() -> int:
        """Takes the credits that arrived and sends what the window allows."""
        nonlocal sent, credits
        credits += fake.credited()
        while sent < total and sent - credits <= MiB:
            fake.reply(conn, ws_send(b"w" * size))
            sent += size
        return credits

    with c:
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() - since < 2:  # until the credits stop growing
            assert time.monotonic() < deadline, "credits never settled"
            now = pump()
            if now != last:
                last, since = now, time.monotonic()
            time.sleep(0.1)
        assert last < 16 * MiB, f"{last} bytes credited to a client that read nothing"
        assert sent < total, "the worker was never held back"

        received = 0
        while received < total:
            wait_until(lambda: pump() is not None and sent > received, 30, "the window to open")
            opcode, payload = c.read_message()
            assert opcode == BINARY and len(payload) == size
            received += size
        # Credits come in quarter windows: all but the last quarter is acknowledged.
        wait_until(lambda: pump() >= total - MiB // 4, 30, "credits for what was written")
        assert credits <= total


# -- gateway shutdown ------------------------------------------------------------------------------


def test_gateway_sigterm_closes_1001_after_the_drain_period(bridge_factory):
    b = bridge_factory("ws_routes:app", gateway_args=["--drain-timeout", "1"])

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/echo?id=term") as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            b.gateway.signal(15)
            await ws.send("during the drain")  # still served until the drain period ends
            assert await ws.recv() == "during the drain"
            await asyncio.wait_for(ws.wait_closed(), 15)
            return ws.close_code

    assert asyncio.run(asyncio.wait_for(client(), 30)) == 1001
    assert b.state.wait_for("ws-term").startswith("disconnect 1001")
    assert b.gateway.wait(15) == 0
