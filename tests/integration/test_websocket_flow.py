"""WebSocket flow control and scale (design.md section 4): a client that stops reading
stalls the app's sends instead of growing the gateway's memory; an app that stops
receiving stalls the client; 1,000 connections echo at once.

Memory is the gateway's resident set (VmRSS in /proc/PID/status) before and after; the
bounds are generous (tens of MiB against hundreds sent), never timings.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time

import pytest
import websockets

from .harness import wait_until
from .wsraw import BINARY, CLOSE, RawWebSocket, close_payload, frame

pytestmark = pytest.mark.every_bus  # credits and windows are the same on every bus

APP = "ws_routes:app"
MiB = 1024 * 1024
TOTAL = 200 * MiB        # what the producer would send if nothing stopped it
MESSAGE = 64 * 1024
RSS_GROWTH_BOUND = 64 * MiB
STALLED_BOUND = 64 * MiB  # kernel socket buffers + one byte window + 16 events, with room


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def wait_stalled(read, what: str, quiet: float = 2.0, timeout: float = 60.0) -> int:
    """Until read() (a growing count) has not changed for `quiet` seconds; its value."""
    last, since = read(), time.monotonic()

    def still():
        nonlocal last, since
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= quiet

    wait_until(still, timeout, f"{what} to stop growing", interval=0.1)
    return last


def progress(b, ident: str) -> int:
    return int(b.state.read(f"progress-{ident}") or 0)


def test_client_that_stops_reading_stalls_the_app_not_the_gateway_memory(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--ping-interval", "0"])
    before = rss(b.gateway.pid)
    c = RawWebSocket(b.port, f"/flood?id=f&total={TOTAL}&size={MESSAGE}", timeout=30)
    try:
        assert c.read_handshake().status == 101
        # The client reads nothing more; the app floods until its sends block.
        stalled_at = wait_stalled(lambda: progress(b, "f"), "the app's sends")
        after = rss(b.gateway.pid)
        assert b.state.read("flood-done-f") is None, "the app sent everything: nothing pushed back"
        assert 0 < stalled_at < STALLED_BOUND, f"the app got {stalled_at} bytes out"
        assert after - before < RSS_GROWTH_BOUND, (
            f"gateway RSS grew {(after - before) / MiB:.1f} MiB while the app sent "
            f"{stalled_at / MiB:.1f} MiB to a client that reads nothing")

        # Reading again lets the app go on: credits flow once the frames are written.
        received = 0
        while received < stalled_at + 8 * MiB:
            opcode, payload = c.read_message()
            assert opcode == BINARY and payload == b"f" * MESSAGE
            received += len(payload)
        wait_until(lambda: progress(b, "f") > stalled_at, 30, "the app to send again")
    finally:
        c.close()


def test_app_that_stops_receiving_stalls_the_client_not_the_gateway_memory(bridge_factory):
    b = bridge_factory(APP)
    before = rss(b.gateway.pid)
    c = RawWebSocket(b.port, "/stall?id=s", timeout=120)
    assert c.read_handshake().status == 101
    b.state.wait_for("started-s")
    message = frame(BINARY, b"c" * MESSAGE)
    sent = [0]

    def produce():
        for _ in range(TOTAL // MESSAGE):
            c.send(message)
            sent[0] += MESSAGE

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        stalled_at = wait_stalled(lambda: sent[0], "the client's sends")
        after = rss(b.gateway.pid)
        assert 0 < stalled_at < STALLED_BOUND, f"the client got {stalled_at} bytes out"
        assert after - before < RSS_GROWTH_BOUND, (
            f"gateway RSS grew {(after - before) / MiB:.1f} MiB while the client sent "
            f"{stalled_at / MiB:.1f} MiB to an app that receives nothing")

        # The app receives again: everything arrives, and the client can finish.
        b.state.touch("go-s")
        producer.join(120)
        assert not producer.is_alive(), "the client's sends never finished"
        c.send(frame(CLOSE, close_payload(1000)))
        assert c.read_close()[0] == 1000
        assert int(b.state.wait_for("received-s", timeout=60)) == TOTAL
    finally:
        c.close()


def test_a_thousand_concurrent_connections_echo(bridge_factory):
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * n:  # our 1,000 sockets; the gateway and worker inherit the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * n), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2 * n + 100, "raise the fd limit"
    b = bridge_factory(APP, worker_args=["--concurrency", "2000"],
                       gateway_args=["--dispatch-timeout", "30",
                                     "--websocket-connect-timeout", "30"])

    async def one(i: int, all_open: asyncio.Event, opened: list):
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/echo?id=n{i}",
                                      open_timeout=60, ping_interval=None) as ws:
            opened.append(i)
            if len(opened) == n:
                all_open.set()
            await all_open.wait()  # every connection is open at the same time
            for k in range(3):
                await ws.send(f"{i}:{k}")
                assert await ws.recv() == f"{i}:{k}"
            await ws.send(bytes([i % 256]) * 100)
            assert await ws.recv() == bytes([i % 256]) * 100
        return i

    async def clients():
        all_open, opened = asyncio.Event(), []
        return await asyncio.gather(*(one(i, all_open, opened) for i in range(n)))

    done = asyncio.run(asyncio.wait_for(clients(), 180))
    assert sorted(done) == list(range(n))
    # Every app instance saw its client's normal close.
    wait_until(lambda: sum(1 for i in range(n)
                           if (b.state.read(f"ws-n{i}") or "").startswith("disconnect 1000"))
               == n, 60, "every app to see its disconnect")


@pytest.mark.parametrize("size", [1, 64 * 1024, 3 * MiB])
def test_large_messages_cross_many_windows(bridge_factory, size):
    """Messages bigger than a credit batch and the 1 MiB byte window still flow."""
    b = bridge_factory(APP)

    async def client():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/echo?id=w",
                                      max_size=None) as ws:
            payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            for _ in range(8):
                await ws.send(payload)
            for _ in range(8):
                assert await ws.recv() == payload

    asyncio.run(asyncio.wait_for(client(), 120))


def test_a_paused_reader_does_not_time_the_client_out(bridge_factory):
    """While an app is slow to receive, the gateway stops reading the client's socket, so
    the client's pongs sit unread too: that must not count as a dead client."""
    b = bridge_factory(APP, gateway_args=["--ping-interval", "0.3"])
    with RawWebSocket(b.port, "/stall?id=p", timeout=20) as c:
        assert c.read_handshake().status == 101
        b.state.wait_for("started-p")
        for _ in range(40):  # more than the 16 events in flight: the reader pauses
            c.send(frame(BINARY, b"p" * 1000))
        deadline = time.monotonic() + 3  # ten ping intervals, every ping answered
        c.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                fin, opcode, payload = c.read_frame()
            except TimeoutError:
                continue
            assert opcode == 0x9, f"frame {opcode} while the app is paused"
            c.send(frame(0xA, payload))
        c.sock.settimeout(20)
        b.state.touch("go-p")
        c.send(frame(CLOSE, close_payload(1000)))
        assert c.read_close()[0] == 1000
    assert int(b.state.wait_for("received-p")) == 40 * 1000
