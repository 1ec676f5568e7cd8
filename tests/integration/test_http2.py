"""HTTP/2 (docs/http2.md): h2c with prior knowledge on a plain listener, h2 by
ALPN over TLS, each stream an ASGI http connection with http_version "2";
bodies both ways under flow control; many streams on one connection; a dead
worker failing only its stream; the limits; and the known attacks (rapid
reset, CONTINUATION flood, HPACK bomb, zero-window stall, PING and SETTINGS
floods) refused without harm to other streams and connections. Clients:
curl, python3-h2 over raw sockets (h2client.py) and h2load."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import h2.errors
import h2.settings
import pytest

from .h2client import PREFACE, H2Client
from .harness import request, wait_for_log
from .test_client_attacks import gateway_rss_kib
from .test_http_basic import unjson
from .test_tls import client_context, make_certificate

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed")


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "15", *args], capture_output=True, timeout=timeout)


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def served(port: int) -> bool:
    """A fresh h2 connection and an HTTP/1.1 one both get answers."""
    with H2Client(port) as c:
        r = c.get("/")
    return r.status == 200 and bytes(r.body) == b"hello" and request(port, "GET", "/").status == 200


# -- negotiation ----------------------------------------------------------------


def test_curl_prior_knowledge_and_http11_on_the_same_port(bridge):
    out = curl("--http2-prior-knowledge", "-w", " %{http_version}", f"http://127.0.0.1:{bridge.port}/")
    assert out.stdout == b"hello 2", out
    # Everything else stays HTTP/1.1, pipelining included.
    out = curl("-w", " %{http_version}", f"http://127.0.0.1:{bridge.port}/")
    assert out.stdout == b"hello 1.1"
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            chunk = s.recv(65536)
            assert chunk
            data += chunk


def test_h2_by_alpn_over_tls(bridge_factory, tmp_path):
    cert, key = make_certificate(tmp_path)
    b = bridge_factory(gateway_args=["--tls-cert", str(cert), "--tls-key", str(key)], ready=False)
    deadline = time.monotonic() + 15
    while True:
        out = curl("--http2", "--cacert", str(cert), "-w", " %{http_version}", f"https://localhost:{b.port}/")
        if out.stdout == b"hello 2" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out.stdout == b"hello 2", out
    # A client offering only http/1.1 still gets it.
    out = curl("--http1.1", "--cacert", str(cert), "-w", " %{http_version}", f"https://localhost:{b.port}/")
    assert out.stdout == b"hello 1.1"
    context = client_context(cert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with H2Client(b.port, tls=context) as c:
        r = c.get("/scope")
    scope = unjson(json.loads(bytes(r.body)))
    assert (scope["http_version"], scope["scheme"]) == ("2", "https")


def test_no_http2_option(bridge_factory):
    b = bridge_factory(gateway_args=["--no-http2"])
    out = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{b.port}/")
    assert out.stdout != b"200"
    out = curl("--http2", "-w", " %{http_version}", f"http://127.0.0.1:{b.port}/")
    assert out.stdout == b"hello 1.1"


def test_connections_that_end_before_telling_are_let_go(bridge_factory):
    """A plain connection's first bytes decide h2c or HTTP/1.1: one that ends
    first (nothing, part of the preface, part of a head) is closed and no
    longer counted, as HTTP/1.1 alone closes it (once, such sessions stayed
    open and counted against --limit-connections)."""
    from .harness import free_port, wait_until
    admin = free_port()
    b = bridge_factory(gateway_args=["--admin", f"127.0.0.1:{admin}", "--keepalive-timeout", "60"])

    def open_connections() -> int:
        text = request(admin, "GET", "/metrics").body.decode()
        return int(re.search(r"^asgi_bridge_open_connections (\d+)$", text, re.M).group(1))
    wait_until(lambda: open_connections() == 0, 10, "the readiness probes' connections to close")
    for first in (b"", b"P", b"PRI * HTTP/2.0\r\n", PREFACE[:-1], b"GET / HTTP/1.1\r\n"):
        with socket.create_connection(("127.0.0.1", b.port), timeout=10) as s:
            s.sendall(first)
        wait_until(lambda: open_connections() == 0, 10, f"the gateway to let go of a connection that sent {first!r}")
    assert served(b.port)


# -- the scope and bodies ---------------------------------------------------------


def test_scope_over_h2(bridge):
    with H2Client(bridge.port) as c:
        r = c.get("/scope/x%20y?a=1&b=two", authority=f"example.com:{bridge.port}",
                  headers=[("x-custom", "one"), ("cookie", "a=1"), ("x-custom", "two"), ("cookie", "b=2")])
    assert r.status == 200
    scope = unjson(json.loads(bytes(r.body)))
    assert scope["type"] == "http"
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/x y"
    assert scope["raw_path"] == b"/scope/x%20y"
    assert scope["query_string"] == b"a=1&b=two"
    headers = [(bytes(n), bytes(v)) for n, v in scope["headers"]]
    assert headers[0] == (b"host", f"example.com:{bridge.port}".encode())
    assert (b"x-custom", b"one") in headers and (b"x-custom", b"two") in headers
    assert [v for n, v in headers if n == b"cookie"] == [b"a=1; b=2"]
    assert not any(n.startswith(b":") for n, _ in headers)
    assert r.header(b"server") == b"asgi-bridge" and r.header(b"date")


def test_bodies_stream_both_ways(bridge):
    body = os.urandom(1024 * 1024 + 17)
    with H2Client(bridge.port, timeout=20) as c:
        stream = c.request("/echo", method="POST", body=body, headers=[("content-type", "application/x-test")])
        r = c.wait([stream], timeout=30)[0]
        assert r.status == 200 and bytes(r.body) == body
        assert r.header(b"content-type") == b"application/x-test"
        assert len(json.loads(r.header(b"x-chunks"))) > 1  # streamed to the app in pieces
        big = c.get("/big?size=3000000&length=0")
        assert big.status == 200 and len(big.body) == 3000000
        assert bytes(big.body[:256]) == bytes(range(256))
        streamed = c.get("/stream")
        assert bytes(streamed.body) == b"one,two,three"


def test_many_concurrent_streams_on_one_connection(bridge):
    with H2Client(bridge.port) as c:
        ids = [c.request(f"/echo?n={i}", method="POST", body=f"body {i}".encode()) for i in range(60)]
        results = c.wait(ids, timeout=30)
    assert [(r.status, bytes(r.body)) for r in results] == [(200, f"body {i}".encode()) for i in range(60)]


def test_head_and_status_without_body(bridge):
    with H2Client(bridge.port) as c:
        head = c.get("/", method="HEAD")
        no_content = c.get("/status?code=204")
    assert (head.status, bytes(head.body)) == (200, b"")
    assert (no_content.status, bytes(no_content.body)) == (204, b"")


def test_request_trailers_end_the_body(bridge):
    """100-continue: test_http2_contract.py."""
    with H2Client(bridge.port) as c:
        stream = c.request("/echo", method="POST", end=False)
        c.send_body(stream, b"before trailers", end=False)
        # Request trailers: ASGI has none; they end the body and are dropped.
        c.conn.send_headers(stream, [("x-checksum", "abc")], end_stream=True)
        c.flush()
        r = c.wait([stream])[0]
    assert (r.status, bytes(r.body)) == (200, b"before trailers")


def test_worker_killed_mid_stream_fails_only_its_stream(bridge_factory):
    b = bridge_factory(workers=2, worker_args=["--concurrency", "1"])
    with H2Client(b.port, timeout=30) as c:
        victim = c.request("/hang?id=h2victim", method="POST", body=b"x")
        victim_pid = int(b.state.wait_for("started-h2victim"))
        other = c.request("/slow?id=h2other&t=3", method="POST", body=b"y")
        assert int(b.state.wait_for("started-h2other")) != victim_pid
        os.kill(victim_pid, signal.SIGKILL)
        dead, alive = c.wait([victim, other], timeout=30)
        assert dead.status == 502
        assert (alive.status, bytes(alive.body)) == (200, b"slow done")
        assert c.get("/").status == 200  # the connection goes on
        assert c.goaway is None


def test_failure_contract_per_stream(bridge_factory):
    """design.md §5's HTTP rows over h2: each failure ends its own stream only."""
    b = bridge_factory(gateway_args=["--http-timeout", "1.5"])
    with H2Client(b.port, timeout=20) as c:
        ids = [c.request(p) for p in ("/raise", "/noreply", "/wait-disconnect?id=h2slow", "/half-reply", "/")]
        raised, noreply, slow, half, fine = c.wait(ids, timeout=20)
        assert raised.status == 500 and noreply.status == 500
        assert slow.status == 504
        # Cut short: the head and the body so far, then RST_STREAM (test_http2_contract.py).
        assert (half.status, bytes(half.body)) == (200, b"partial")
        assert half.reset == h2.errors.ErrorCodes.INTERNAL_ERROR and not half.ended
        assert (fine.status, bytes(fine.body)) == (200, b"hello")
        assert c.get("/").status == 200 and c.goaway is None
    assert b.state.wait_for("disconnect-h2slow", timeout=10) == "http.disconnect"


def test_no_worker_gives_503(bridge_factory):
    b = bridge_factory(workers=0, gateway_args=["--dispatch-timeout", "1"])
    with H2Client(b.port, timeout=15) as c:
        r = c.get("/")
    assert r.status == 503 and r.header(b"retry-after") == b"1"


def test_access_log_says_http2(bridge_factory):
    b = bridge_factory(gateway_args=["--access-log"])
    with H2Client(b.port) as c:
        assert c.get("/status?code=201").status == 201
    wait_for_log(b.gateway, '"GET /status?code=201 HTTP/2.0" 201')


# -- limits -------------------------------------------------------------------------


def test_limits_header_size_count_and_body(bridge_factory):
    b = bridge_factory(gateway_args=["--max-header-size", "4096", "--max-header-count", "20",
                                     "--max-body-size", "100000", "--http2-max-concurrent-streams", "7"])
    with H2Client(b.port) as c:
        c.pump(0.5)
        assert c.conn.remote_settings.max_concurrent_streams == 7
        assert c.conn.remote_settings.max_header_list_size == 4096
        assert c.get("/", headers=[("x-big", "v" * 5000)]).status == 431
        assert c.get("/", headers=[(f"x-{i}", "v") for i in range(30)]).status == 431
        assert c.get("/echo", method="POST", end=False, headers=[("content-length", "100001")]).status == 413
        # No content-length: counted as it comes.
        stream = c.request("/echo", method="POST", end=False)
        c.send_body(stream, b"z" * 150000)
        r = c.wait([stream])[0]
        assert r.status == 413 or r.reset is not None
        assert c.get("/").status == 200  # the same connection still serves
    wait_for_log(b.gateway, "431")


# -- attacks ------------------------------------------------------------------------


def test_rapid_reset_gets_goaway_enhance_your_calm(bridge):
    with H2Client(bridge.port) as c:
        try:
            for _ in range(1000):
                stream = c.request("/echo?id=rr", method="POST", end=False)
                c.conn.reset_stream(stream)
                c.flush()
        except OSError:
            pass  # the gateway closed the connection
        c.wait_closed(timeout=15)
    assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    wait_for_log(bridge.gateway, "rapid reset")
    assert served(bridge.port)


def test_continuation_flood_ends_only_that_connection(bridge):
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as s:
        s.sendall(PREFACE + frame(0x4, 0, 0))
        # HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
        s.sendall(frame(0x1, 0x1, 1, b"\x82\x84\x86"))
        try:
            for _ in range(2000):
                s.sendall(frame(0x9, 0, 1, b"\x40\x01a\x01b"))
        except OSError:
            pass  # closed by the gateway
        data = b""
        s.settimeout(10)
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError, socket.timeout):
            pass
    assert b"\x07" in data  # a GOAWAY frame was sent before the close
    wait_for_log(bridge.gateway, "Too many CONTINUATION frames")
    assert served(bridge.port)


def test_hpack_bomb_is_431_without_memory(bridge):
    before = gateway_rss_kib(bridge)
    with H2Client(bridge.port) as c:
        # One 4 KiB header indexed once, then referenced over and over: 16 KiB of
        # frames that decode to hundreds of KiB per request.
        results = []
        for _ in range(20):
            results.append(c.get("/", headers=[("x-bomb", "b" * 4000)] * 200))
        assert {r.status for r in results} == {431}
        assert c.get("/").status == 200
    assert gateway_rss_kib(bridge) - before < 20 * 1024
    assert served(bridge.port)


def test_zero_window_stall_stops_the_worker_not_memory(bridge_factory):
    b = bridge_factory(gateway_args=["--request-timeout", "2"])
    before = gateway_rss_kib(b)
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with H2Client(b.port, settings=settings, read_body=False) as stalled:
        ids = [stalled.request("/big?size=50000000") for _ in range(3)]
        deadline = time.monotonic() + 20
        while not all(stalled.streams[i].reset is not None for i in ids):
            assert time.monotonic() < deadline, "stalled streams not reset"
            assert served(b.port)  # others are served meanwhile
            stalled.pump(0.5)
        assert {stalled.streams[i].reset for i in ids} == {h2.errors.ErrorCodes.CANCEL}
    # 3 × 50 MB would have been buffered without the credits: far less is.
    assert gateway_rss_kib(b) - before < 30 * 1024
    wait_for_log(b.gateway, "took no response bytes")


@pytest.mark.parametrize("flood", ["ping", "settings"])
def test_ping_and_settings_floods_end_only_that_connection(bridge_factory, flood):
    b = bridge_factory(gateway_args=["--request-timeout", "3"])
    payload = frame(0x6, 0, 0, b"12345678") if flood == "ping" else frame(0x4, 0, 0)
    with socket.create_connection(("127.0.0.1", b.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(PREFACE + frame(0x4, 0, 0))
        batch = payload * 2000
        sent = 0
        deadline = time.monotonic() + 20
        s.settimeout(2)
        try:
            # Never reading: the ACKs pile up at the gateway until it gives up.
            while time.monotonic() < deadline and sent < 400:
                s.sendall(batch)
                sent += 1
        except (OSError, TimeoutError, socket.timeout):
            pass
        assert served(b.port)
    wait_for_log(b.gateway, "Flooding was detected", timeout=15)
    assert served(b.port)


# -- drain and load ------------------------------------------------------------------


def test_sigterm_sends_goaway_and_finishes_streams(bridge_factory):
    b = bridge_factory(gateway_args=["--drain-timeout", "10"])
    with H2Client(b.port, timeout=20) as c:
        stream = c.request("/slow?id=drain&t=2", method="POST", body=b"x")
        b.state.wait_for("started-drain")
        b.gateway.signal(signal.SIGTERM)
        r = c.wait([stream], timeout=20)[0]
        assert (r.status, bytes(r.body)) == (200, b"slow done")
        c.wait_closed(timeout=15)
    assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) is needed")
def test_h2load_all_requests_succeed(bridge):
    out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "16", f"http://127.0.0.1:{bridge.port}/"],
                         capture_output=True, text=True, timeout=120)
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 2000 2xx" in out.stdout, out.stdout
