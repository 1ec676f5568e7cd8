"""--proxy-headers and --trusted-proxies: behind a reverse proxy the app sees
the client and scheme the proxy reports in X-Forwarded-For/-Proto/-Port, but
only when the TCP peer (here 127.0.0.1) is a trusted proxy."""

from __future__ import annotations

import json
import subprocess

from .harness import gateway_binary, raw_request
from .test_http_basic import unjson
from .wsraw import RawWebSocket

FORWARDED = (b"X-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n"
             b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 51000\r\n")


def http_scope(port: int, extra_headers: bytes = FORWARDED) -> dict:
    r = raw_request(port, b"GET /scope HTTP/1.1\r\nHost: x\r\n" + extra_headers + b"\r\n")
    assert r.status == 200, r
    return unjson(json.loads(r.body))


def test_trusted_proxy_sets_client_and_scheme(bridge_factory):
    b = bridge_factory(gateway_args=["--proxy-headers"])  # trusts 127.0.0.1 by default
    scope = http_scope(b.port)
    assert scope["client"] == ["203.0.113.7", 51000]
    assert scope["scheme"] == "https"
    # Headers reach the app untouched, proxy headers included.
    assert [b"x-forwarded-proto", b"https"] in scope["headers"]


def test_off_by_default(bridge_factory):
    b = bridge_factory()
    scope = http_scope(b.port)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


def test_untrusted_peer_is_ignored(bridge_factory):
    b = bridge_factory(gateway_args=["--proxy-headers", "--trusted-proxies", "10.0.0.0/8"])
    scope = http_scope(b.port)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


def test_forged_hops_left_of_a_trusted_proxy_are_not_believed(bridge_factory):
    # The client wrote "1.1.1.1"; the trusted proxy 10.0.0.5 appended the real
    # client 192.0.2.44; our peer (127.0.0.1) appended 10.0.0.5.
    b = bridge_factory(gateway_args=["--proxy-headers", "--trusted-proxies", "127.0.0.1,10.0.0.0/8"])
    scope = http_scope(b.port, b"X-Forwarded-For: 1.1.1.1, 192.0.2.44\r\nX-Forwarded-For: 10.0.0.5\r\n")
    assert scope["client"] == ["192.0.2.44", 0]


def test_garbage_forwarded_for_keeps_the_peer(bridge_factory):
    b = bridge_factory(gateway_args=["--proxy-headers"])
    scope = http_scope(b.port, b"X-Forwarded-For: unknown\r\nX-Forwarded-Proto: gopher\r\n")
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"


def test_websocket_scope_gets_wss(bridge_factory):
    b = bridge_factory("ws_routes:app", gateway_args=["--proxy-headers"])
    c = RawWebSocket(b.port, "/scope?id=proxied",
                     headers=[("X-Forwarded-For", "203.0.113.8"), ("X-Forwarded-Proto", "https")])
    try:
        assert c.read_handshake().status == 101
        scope = json.loads(b.state.wait_for("scope-proxied"))
    finally:
        c.close()
    assert scope["client"] == ["203.0.113.8", 0]
    assert scope["scheme"] == "wss"


def test_bad_trusted_proxies_value_stops_the_gateway_with_a_message():
    out = subprocess.run([str(gateway_binary()), "--proxy-headers", "--trusted-proxies", "10.0.0.0/40"],
                         capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "--trusted-proxies" in out.stderr + out.stdout
    assert "10.0.0.0/40" in out.stderr + out.stdout
