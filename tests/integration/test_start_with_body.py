"""A response's start carrying its first body (docs/protocol.md §2.5 and §4.2, issue 19), driven by a
scripted worker: the gateway offers `features: 3` (bit 1 among them) on the first event of every
connection, and serves such a start over HTTP/1.1 and HTTP/2 as the start followed by that body, with every check of the
two (HEAD, the byte window and its credits, a malformed start)."""

from __future__ import annotations

import time

from .fakeworker import body, start
from .h2client import H2Client
from .harness import Background, RawConnection, request, wait_for_log
from .test_worker_attacks import error_for
from .wsraw import RawWebSocket

START_BODY = 1  # the feature bit
LARGE_PIECES = 2  # the other one the gateway offers (docs/protocol.md §5)
KiB = 1024


def start_with_body(data: bytes, more: bool = False, headers=None) -> dict:
    event = start(200, headers)
    event.update(body=data, more_body=more)
    return event


def test_every_first_event_offers_the_feature(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=20)
    msg = fake.next_event(type_="http.request")
    assert msg["features"] == START_BODY | LARGE_PIECES
    fake.reply(msg["c"], start_with_body(b"one message"))
    assert (pending.result().status, pending.result().body) == (200, b"one message")

    with H2Client(fake_bridge.port, timeout=20) as c:
        stream = c.request("/")
        msg = fake.next_event(type_="http.request")
        assert msg["features"] == START_BODY | LARGE_PIECES
        fake.reply(msg["c"], start_with_body(b"over h2"))
        r = c.wait([stream])[0]
        assert (r.status, bytes(r.body), r.ended) == (200, b"over h2", True)

    with RawWebSocket(fake_bridge.port, "/ws", timeout=20) as ws:
        msg = fake.next_event(type_="websocket.connect")
        assert msg["features"] == START_BODY | LARGE_PIECES
        fake.reply(msg["c"], {"type": "websocket.close", "code": 1000, "reason": ""})
        assert ws.read_handshake().status == 403


def test_start_with_body_over_http11(fake_bridge):
    fake = fake_bridge.add_fake()
    with RawConnection(fake_bridge.port, timeout=20) as c:
        # The whole response in one message: content-length from the app.
        c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        conn = fake.next_event(type_="http.request")["c"]
        fake.reply(conn, start_with_body(b"Hello, world!", headers=[[b"content-length", b"13"]]))
        r = c.read_response()
        assert (r.status, r.header("content-length"), r.body, r.complete) == (200, "13", b"Hello, world!", True)
        # The first body with more to come, then body events: chunked.
        c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        conn = fake.next_event(type_="http.request")["c"]
        fake.reply(conn, start_with_body(b"first ", more=True))
        fake.reply(conn, body(b"second ", more=True))
        fake.reply(conn, body(b"last"))
        r = c.read_response()
        assert (r.status, r.chunked, r.body, r.complete) == (200, True, b"first second last", True)
        # HEAD: the head with the app's content-length, no body; the connection goes on.
        c.send(b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n")
        conn = fake.next_event(type_="http.request")["c"]
        fake.reply(conn, start_with_body(b"not for HEAD", headers=[[b"content-length", b"12"]]))
        r = c.read_response(head_request=True)
        assert (r.status, r.header("content-length")) == (200, "12")
        c.send(b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n")
        conn = fake.next_event(type_="http.request")["c"]
        fake.reply(conn, start_with_body(b"after HEAD"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"after HEAD")


def test_start_with_body_over_h2(fake_bridge):
    fake = fake_bridge.add_fake()
    with H2Client(fake_bridge.port, timeout=20) as c:
        stream = c.request("/")
        conn = fake.next_event(type_="http.request")["c"]
        fake.reply(conn, start_with_body(b"first ", more=True))
        fake.reply(conn, body(b"last"))
        r = c.wait([stream])[0]
        assert (r.status, bytes(r.body), r.ended) == (200, b"first last", True)

        stream = c.request("/", method="HEAD")
        conn = fake.next_event(type_="http.request")["c"]
        fake.reply(conn, start_with_body(b"not for HEAD", headers=[[b"content-length", b"12"]]))
        r = c.wait([stream])[0]
        assert (r.status, r.header(b"content-length"), bytes(r.body), r.ended) == (200, b"12", b"", True)


def test_the_byte_window_counts_the_start_body(fake_bridge):
    """Enforced: an HTTP/2 stream's window is 256 KiB, and a client that leaves its
    flow-control window shut takes 65,535 bytes, below the 64 KiB the gateway credits at:
    a start with 60 KiB and four body events of 60 KiB leave 300 KiB unacknowledged, so a
    sixth payload is past the window (240 KiB without the start's body would not be).
    Credited: over HTTP/1.1 the gateway credits at a quarter of 1 MiB written, and the
    start's body counts toward it as a body event's does."""
    fake = fake_bridge.add_fake()
    chunk = b"w" * (60 * KiB)
    with H2Client(fake_bridge.port, timeout=20, read_body=False) as c:
        c.request("/", method="POST")
        conn = fake.next_event(type_="http.request")["c"]
        fake.reply(conn, start_with_body(chunk, more=True))
        for _ in range(5):
            fake.reply(conn, body(chunk, more=True))
        assert error_for(fake, conn)["message"] == "byte window exceeded"
    wait_for_log(fake_bridge.gateway, f"worker {fake.id} sent past its byte window")

    fake.credited()  # drop what came so far
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=20)
    conn = fake.next_event(type_="http.request")["c"]
    fake.reply(conn, start_with_body(chunk, more=True))
    for _ in range(4):
        fake.reply(conn, body(chunk, more=True))
    fake.reply(conn, body(b"end"))
    assert pending.result().body == chunk * 5 + b"end"
    credited = 0
    deadline = time.monotonic() + 10
    while credited < 5 * len(chunk) and time.monotonic() < deadline:
        credited += fake.credited()
        time.sleep(0.05)
    assert credited == 5 * len(chunk)


def test_start_with_a_wrong_typed_body_is_an_invalid_event(fake_bridge):
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "POST", "/", body=b"x", timeout=20)
    conn = fake.next_event(type_="http.request")["c"]
    bad = start(200)
    bad.update(body="text, not bin", more_body=False)
    fake.reply(conn, bad)
    assert pending.result().status == 502
    assert error_for(fake, conn)["message"] == "malformed message"
    wait_for_log(fake_bridge.gateway, "event.body: expected bin, got str")
