"""Hostile clients against the request head (issue 12, items 1-3): heads over
the byte or field limit however they are sent, request smuggling through
Transfer-Encoding and Content-Length, forbidden bytes in the request-target.
Each gets its 4xx/501 on that connection alone, which then closes; nothing
reaches the app; other connections keep working; memory stays bounded.

ZeroMQ only: all of this happens in the gateway before any bus message."""

import socket

import pytest

from .harness import RawConnection, request, wait_until

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def requests_logged(bridge):
    return (bridge.state.read("requests.log") or "").splitlines()


def send_all_until_closed(conn: RawConnection, data: bytes, piece: int = 0) -> None:
    """Sends data (in pieces of `piece` bytes if given); the gateway may answer
    and close before the end, which is what the tests expect."""
    step = piece or len(data)
    try:
        for i in range(0, len(data), step):
            conn.send(data[i:i + step])
    except (BrokenPipeError, ConnectionResetError):
        pass


def only_response(port: int, data: bytes, piece: int = 0):
    """The one response to data; asserts the connection then closes with
    nothing more on it (no second response for a smuggled request)."""
    with RawConnection(port) as c:
        if piece:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_all_until_closed(c, data, piece)
        r = c.read_response()
        rest = c.read_to_eof()
    assert rest == b"", f"more after the error response: {rest[:300]!r}"
    return r


def head_with_fields(n: int, target: bytes = b"/") -> bytes:
    """A GET with n fields in all (Host included)."""
    return (b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"x-f%d: v\r\n" % i for i in range(n - 1)) + b"\r\n")


def head_of_size(size: int) -> bytes:
    """A GET head of exactly `size` bytes, in a few large fields."""
    start = b"GET / HTTP/1.1\r\nHost: x\r\n"
    fields = b""
    room = size - len(start) - 2  # the final CRLF
    while room > 0:
        value_len = min(1000, room - len(b"x-pad: \r\n"))
        assert value_len >= 1, "size not reachable with these pieces"
        line = b"x-pad: " + b"p" * value_len + b"\r\n"
        fields += line
        room -= len(line)
    head = start + fields + b"\r\n"
    assert len(head) == size
    return head


def gateway_rss_kib(bridge) -> int:
    with open(f"/proc/{bridge.gateway.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/PID/status")


# -- item 1: the head's size and field count, counted by the gateway -----------


def test_head_of_40000_tiny_fields_gets_431(bridge):
    # ~200 KB that Boost 1.74's own limit let through (answered 200).
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a:b\r\n" * 40000 + b"\r\n"
    r = only_response(bridge.port, head)
    assert r.status == 431, r
    assert requests_logged(bridge) == []
    wait_until(lambda: "bad request (431)" in bridge.gateway.log(), 5, "the 431 log line")


def test_field_count_limit(bridge_factory):
    b = bridge_factory()  # --max-header-count defaults to 100
    with RawConnection(b.port) as c:
        c.send(head_with_fields(100))
        assert c.read_response().status == 200
    assert only_response(b.port, head_with_fields(101)).status == 431
    assert requests_logged(b) == ["GET /"]


def test_field_count_option(bridge_factory):
    b = bridge_factory(gateway_args=["--max-header-count", "10"])
    assert request(b.port, "GET", "/", headers={f"x-{i}": "v" for i in range(8)}).status == 200
    assert only_response(b.port, head_with_fields(11)).status == 431


def test_head_just_over_the_byte_limit_in_small_writes_gets_431(bridge_factory):
    b = bridge_factory(gateway_args=["--max-header-size", "4096"])
    # At the limit (CRLFs included) it passes, in small writes as at once.
    with RawConnection(b.port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_all_until_closed(c, head_of_size(4096), piece=50)
        assert c.read_response().status == 200
    r = only_response(b.port, head_of_size(4097), piece=50)
    assert r.status == 431, r
    # Far over, in pieces each well under the limit: counted as a whole.
    r = only_response(b.port, head_of_size(20000), piece=300)
    assert r.status == 431, r
    assert requests_logged(b) == ["GET /"]


def test_websocket_upgrade_over_the_limits_gets_431(bridge):
    upgrade = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    many = upgrade + b"".join(b"x-f%d: v\r\n" % i for i in range(100)) + b"\r\n"
    assert only_response(bridge.port, many).status == 431
    big = upgrade + b"x-big: " + b"b" * 20000 + b"\r\n\r\n"
    assert only_response(bridge.port, big).status == 431
    assert requests_logged(bridge) == []


def test_oversize_heads_do_not_grow_gateway_memory(bridge):
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a:b\r\n" * 40000 + b"\r\n"
    only_response(bridge.port, head)  # warm up buffers and allocator arenas
    before = gateway_rss_kib(bridge)
    for _ in range(50):
        assert only_response(bridge.port, head).status == 431
    grown = gateway_rss_kib(bridge) - before
    # Before the fix: ~5.5 MiB per such head (28x its size).
    assert grown < 30 * 1024, f"gateway RSS grew by {grown} KiB over 50 oversize heads"
    assert request(bridge.port, "GET", "/").status == 200


# -- item 2: request smuggling --------------------------------------------------


def post(fields: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    return b"POST /echo HTTP/" + version + b"\r\nHost: x\r\n" + fields + b"\r\n" + body


CHUNKED_THEN_GET = b"0\r\n\r\n" + SMUGGLED

# name -> (request, status): what a smuggling scanner tries. Each carries a
# GET that a parser with the wrong idea of the body's end would serve.
SMUGGLING = {
    "te xchunked": (post(b"Transfer-Encoding: xchunked\r\n", CHUNKED_THEN_GET), 400),
    "te chunked, identity": (post(b"Transfer-Encoding: chunked, identity\r\n", CHUNKED_THEN_GET), 400),
    "te gzip alone": (post(b"Transfer-Encoding: gzip\r\n", CHUNKED_THEN_GET), 400),
    "te gzip, chunked": (post(b"Transfer-Encoding: gzip, chunked\r\n", CHUNKED_THEN_GET), 501),
    "te gzip with content-length":
        (post(b"Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", b"0\r\n\r\n" + SMUGGLED), 400),
    "te chunked with content-length":
        (post(b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n", CHUNKED_THEN_GET), 400),
    "content-length then te":
        (post(b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n", CHUNKED_THEN_GET), 400),
    "te twice": (post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", CHUNKED_THEN_GET), 400),
    "te chunked then identity line":
        (post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", CHUNKED_THEN_GET), 400),
    "te empty": (post(b"Transfer-Encoding:\r\n", CHUNKED_THEN_GET), 400),
    "te with vertical tab": (post(b"Transfer-Encoding:\x0bchunked\r\n", CHUNKED_THEN_GET), 400),
    "te in http/1.0": (post(b"Transfer-Encoding: chunked\r\n", CHUNKED_THEN_GET, b"1.0"), 400),
    "te obs-fold": (post(b"X-A: b\r\n Transfer-Encoding: chunked\r\n", CHUNKED_THEN_GET), 400),
    "te value obs-fold": (post(b"Transfer-Encoding:\r\n chunked\r\n", CHUNKED_THEN_GET), 400),
    "te space before colon": (post(b"Transfer-Encoding : chunked\r\n", CHUNKED_THEN_GET), 400),
    "te tab before colon": (post(b"Transfer-Encoding\t: chunked\r\n", CHUNKED_THEN_GET), 400),
    "te after bare cr": (post(b"X-A: b\rTransfer-Encoding: chunked\r\n", CHUNKED_THEN_GET), 400),
    "te with bare lf": (post(b"Transfer-Encoding: chunked\n", CHUNKED_THEN_GET), 400),
    "content-length +5": (post(b"Content-Length: +5\r\n", b"hello" + SMUGGLED), 400),
    "content-length 0x5": (post(b"Content-Length: 0x5\r\n", b"hello" + SMUGGLED), 400),
    "content-length -1": (post(b"Content-Length: -1\r\n", b"hello" + SMUGGLED), 400),
    "content-length 5, 6": (post(b"Content-Length: 5, 6\r\n", b"hello" + SMUGGLED), 400),
    "content-length 5 and 6": (post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello" + SMUGGLED), 400),
    # RFC 9110 allows merging identical repeats; we refuse them, as nginx does.
    "content-length 5 twice": (post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED), 400),
    "content-length space before colon": (post(b"Content-Length : 5\r\n", b"hello" + SMUGGLED), 400),
    "nul in field name": (post(b"X-\x00A: b\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED), 400),
    "nul in field value": (post(b"X-A: \x00\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED), 400),
    "ctl in field value": (post(b"X-A: \x01\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED), 400),
    "bare cr ends a line": (post(b"X-A: b\r\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED), 400),
    # Found in the body, not the head: Beast's chunk parser rejects them.
    "chunk-size overflow":
        (post(b"Transfer-Encoding: chunked\r\n", b"1" + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED), 400),
    "te in a trailer":
        (post(b"Transfer-Encoding: chunked\r\n", b"0\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED), 400),
    "content-length in a trailer":
        (post(b"Transfer-Encoding: chunked\r\n", b"0\r\nContent-Length: 5\r\n\r\n" + SMUGGLED), 400),
}


@pytest.mark.parametrize("data,status", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggling_is_refused_and_the_connection_closes(bridge, data, status):
    r = only_response(bridge.port, data)
    assert r.status == status, r
    assert r.header("connection") == "close"
    # Nothing reached the app: neither this POST (refused before dispatch,
    # its bytes arriving with its head) nor the GET hidden in its body.
    assert requests_logged(bridge) == []
    assert request(bridge.port, "GET", "/").status == 200
    assert requests_logged(bridge) == ["GET /"]


ENDLESS_BODY_LINES = {
    "trailer": b"0\r\n" + b"a:b\r\n" * 200000,
    "chunk extension": b"5;" + b"e" * 1000000,
}


@pytest.mark.parametrize("body", ENDLESS_BODY_LINES.values(), ids=ENDLESS_BODY_LINES.keys())
def test_endless_chunked_framing_gets_400_with_bounded_memory(bridge, body):
    before = gateway_rss_kib(bridge)
    for _ in range(5):
        r = only_response(bridge.port, post(b"Transfer-Encoding: chunked\r\n", body))
        assert r.status == 400, r
    grown = gateway_rss_kib(bridge) - before
    assert grown < 30 * 1024, f"gateway RSS grew by {grown} KiB over 5 MB of framing"
    assert requests_logged(bridge) == []


def test_valid_chunked_request_still_works(bridge):
    with RawConnection(bridge.port) as c:
        c.send(post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello")
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive goes on
        assert c.read_response().status == 200


# -- item 3: the request-target -------------------------------------------------

BAD_TARGETS = {
    "utf-8": b"/caf\xc3\xa9",
    "latin-1": b"/caf\xe9",
    "byte 0xff in the query": b"/?q=\xff",
    "control byte": b"/a\x01b",
    "tab": b"/a\tb",
    "DEL": b"/a\x7f",
}


@pytest.mark.parametrize("target", BAD_TARGETS.values(), ids=BAD_TARGETS.keys())
def test_forbidden_bytes_in_the_target_get_400(bridge, target):
    r = only_response(bridge.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 400, r
    r = only_response(bridge.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert r.status == 400, r
    assert requests_logged(bridge) == []
    # Percent-encoded, the same path reaches the app.
    assert request(bridge.port, "GET", "/caf%C3%A9").status == 404
    assert requests_logged(bridge) == ["GET /café"]


BAD_HOSTS = {
    "none in HTTP/1.1": (b"1.1", b""),
    "two lines": (b"1.1", b"Host: a\r\nHost: a\r\n"),
    "two lines in HTTP/1.0": (b"1.0", b"Host: a\r\nHost: b\r\n"),
    "a space": (b"1.1", b"Host: a b\r\n"),
    "userinfo": (b"1.1", b"Host: user@a\r\n"),
    "a slash": (b"1.1", b"Host: a/b\r\n"),
    "a bad port": (b"1.1", b"Host: a:8o\r\n"),
}


@pytest.mark.parametrize("version,host", BAD_HOSTS.values(), ids=BAD_HOSTS.keys())
def test_a_missing_repeated_or_invalid_host_gets_400(bridge, version, host):
    """RFC 9112 §3.2: MUST answer 400 to an HTTP/1.1 request without Host, and to any
    with more than one Host line or an invalid one; the app never sees it."""
    r = only_response(bridge.port, b"GET /logged HTTP/" + version + b"\r\n" + host + b"\r\n")
    assert r.status == 400, r
    r = only_response(bridge.port, b"GET /logged HTTP/" + version + b"\r\n" + host + b"Upgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert r.status == 400, r
    assert requests_logged(bridge) == []


@pytest.mark.parametrize("host", [b"", b"example.com:8080", b"[::1]:80", b"xn--caf-dma.example"])
def test_valid_hosts_reach_the_app(bridge, host):
    r = only_response(bridge.port, b"GET /logged HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert r.status == 404, r  # the app's answer
    assert requests_logged(bridge) == ["GET /logged"]


# -- everyone else --------------------------------------------------------------


def test_refusals_are_logged_rate_limited(bridge_factory):
    # A client repeating a bad head cannot flood the log: a few lines per
    # address and reason per 10 s window (LogLimiter's burst is 5, and each
    # I/O thread has a limiter of its own).
    b = bridge_factory(gateway_args=["--threads", "2"])
    for _ in range(30):
        assert only_response(b.port, b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n").status == 400
    assert request(b.port, "GET", "/").status == 200  # the gateway got past them all
    lines = [line for line in b.gateway.log().splitlines()
             if "bad request (400): invalid byte in the request target" in line]
    assert 1 <= len(lines) <= 2 * 5, lines



def test_other_connections_keep_working_during_attacks(bridge):
    with RawConnection(bridge.port) as bystander:
        bystander.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert bystander.read_response().status == 200
        attacks = [b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a:b\r\n" * 40000 + b"\r\n",
                   head_with_fields(101),
                   post(b"Transfer-Encoding: chunked, identity\r\n", CHUNKED_THEN_GET),
                   b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n"]
        for attack in attacks:
            assert only_response(bridge.port, attack).status in (400, 431)
        # The bystander's keep-alive connection still serves.
        bystander.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert bystander.read_response().status == 200
