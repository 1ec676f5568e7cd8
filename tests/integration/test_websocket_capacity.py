"""Capacity per kind (issue 12, item 5; docs/protocol.md §2.3): a worker counts its open
WebSockets apart from its HTTP requests, so idle WebSockets never starve HTTP, and the
WebSocket limit (--websocket-capacity) answers the next WebSocket 503 when it is full.
Over both buses: ZeroMQ (the gateway routes by the two announced capacities) and Redis
(workers pull each kind from its own queue while they have room for it).
"""

from __future__ import annotations

import contextlib
import time

import pytest

from .harness import Background, request, wait_until
from .wsraw import CLOSE, RawWebSocket, close_payload

pytestmark = pytest.mark.every_bus

APP = "ws_routes:app"


def open_websockets(stack: contextlib.ExitStack, port: int, count: int, name: str) -> list:
    sockets = []
    for i in range(count):
        c = stack.enter_context(RawWebSocket(port, f"/echo?id={name}{i}"))
        r = c.read_handshake()
        assert r.status == 101, (i, r)
        sockets.append(c)
    return sockets


def test_idle_websockets_leave_http_served(bridge_factory):
    """120 idle WebSockets on a default worker (--concurrency 100, where they used to
    take every slot: then each HTTP request got 503), and HTTP still gets 200."""
    b = bridge_factory(APP)
    with contextlib.ExitStack() as stack:
        open_websockets(stack, b.port, 120, "idle")
        for _ in range(5):
            r = request(b.port, "GET", "/")
            assert (r.status, r.body) == (200, b"hello")


def handshake_status(port: int, path: str) -> int:
    with RawWebSocket(port, path, timeout=30) as c:
        return c.read_handshake().status


def test_websocket_capacity_full_answers_503_and_http_goes_on(bridge_factory):
    """A WebSocket waiting for WebSocket room (503 at --dispatch-timeout) does not hold up
    the HTTP requests that come after it (ZeroMQ: the gateway's queue of first events)."""
    b = bridge_factory(APP, gateway_args=["--dispatch-timeout", "3"],
                       worker_args=["--concurrency", "2", "--websocket-capacity", "3"])
    with contextlib.ExitStack() as stack:
        first, *_ = open_websockets(stack, b.port, 3, "full")
        over = Background(handshake_status, b.port, "/echo?id=over")
        time.sleep(0.3)  # its handshake reaches the gateway and waits for a worker
        for _ in range(3):  # more than --concurrency: each request ends before the next
            assert request(b.port, "GET", "/").status == 200
        assert over.finished_at is None, "the HTTP requests waited behind the WebSocket"
        assert over.result() == 503
        # One WebSocket leaves: its place is free again.
        first.send_frame(CLOSE, close_payload(1000))
        assert first.read_close()[0] == 1000
        b.state.wait_for("ws-full0", contains="disconnect 1000")

        def accepted():
            with RawWebSocket(b.port, "/echo?id=again") as c:
                return c.read_handshake().status == 101
        wait_until(accepted, 10, "a WebSocket accepted once one left")
