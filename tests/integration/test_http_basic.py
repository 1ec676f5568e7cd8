"""HTTP/1.1 through gateway + bus + Python worker: requests, scope, bodies."""

import contextlib
import http.client
import json
import time

import pytest

from .harness import (Background, RawConnection, Worker, bus_args, curl_echo_post, free_port,
                      raw_request, read_response, request, wait_until)
from .test_bus_curve import Relay

pytestmark = pytest.mark.every_bus  # the same over ZeroMQ and Redis (conftest.py)


def unjson(value):
    """Inverse of basic_app.jsonable for bytes."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return value["$bytes"].encode("latin-1")
        return {k: unjson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unjson(v) for v in value]
    return value


def get_scope(port, raw_head: bytes):
    with RawConnection(port) as c:
        c.send(raw_head)
        r = c.read_response()
        local = c.sock.getsockname()
    assert r.status == 200, r
    return unjson(json.loads(r.body)), local


def test_get_and_post_round_trip(bridge):
    r = request(bridge.port, "GET", "/")
    assert (r.status, r.body) == (200, b"hello")
    assert r.header("content-type") == "text/plain"
    assert r.header("content-length") == "5"

    payload = bytes(range(256)) * 4
    r = request(bridge.port, "POST", "/echo", body=payload,
                headers={"Content-Type": "application/x-test"})
    assert r.status == 200
    assert r.body == payload
    assert r.header("content-type") == "application/x-test"

    r = request(bridge.port, "GET", "/no-such-route")
    assert (r.status, r.body) == (404, b"not found")


def test_status_codes_pass_through(bridge):
    for code in (201, 204, 302, 404, 418, 503):
        r = request(bridge.port, "GET", f"/status?code={code}")
        assert r.status == code
        if code != 204:
            assert r.body == f"status {code}".encode()


def test_a_204_has_no_body_and_no_content_length(bridge):
    """RFC 9110 §8.6: a 204 MUST NOT carry Content-Length, though the app gave one
    (its body is dropped); the connection goes on with the next request."""
    with RawConnection(bridge.port) as c:
        c.send(b"GET /status?code=204 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read_head()
        assert head.status == 204
        assert head.header("content-length") is None, head
        assert c.read_response().status == 200  # nothing of the dropped body came between


def test_curl_round_trip(bridge):
    head, body = curl_echo_post(bridge.port)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"content-type: text/x-curl" in head.lower()
    assert body == b"from curl"


def test_scope_is_complete_and_exact(bridge):
    port = bridge.port
    raw_path = b"/scope/caf%C3%A9%20x/%2F"
    query = b"a=1&b=%20%FF&a=2&empty="
    head = (b"GET " + raw_path + b"?" + query + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1:" + str(port).encode() + b"\r\n"
            b"X-Dup: 1\r\n"
            b"X-Mixed-CASE: Value With Case\r\n"
            b"X-Dup: 2\r\n"
            b"X-Latin: caf\xe9\r\n"
            b"\r\n")
    scope, (client_host, client_port) = get_scope(port, head)

    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"]["spec_version"] == "2.5"
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/café x//"
    assert scope["raw_path"] == raw_path
    assert scope["query_string"] == query
    assert scope["root_path"] == ""
    sent = [
        [b"host", b"127.0.0.1:" + str(port).encode()],
        [b"x-dup", b"1"],
        [b"x-mixed-case", b"Value With Case"],
        [b"x-dup", b"2"],
        [b"x-latin", b"caf\xe9"],
    ]
    assert scope["headers"] == sent, (
        f"headers must keep the order sent and duplicates:\n sent {sent}\n  got {scope['headers']}")
    assert scope["client"] == [client_host, client_port]
    assert scope["server"] == ["127.0.0.1", port]


def test_scope_advertises_trailers_extension(bridge):
    scope, _ = get_scope(bridge.port, b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "http.response.trailers" in scope.get("extensions", {}), scope.get("extensions")


def test_scope_path_invalid_utf8_is_replaced(bridge):
    scope, _ = get_scope(bridge.port, b"GET /scope/%FF%41 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert scope["path"] == "/scope/\ufffdA"
    assert scope["raw_path"] == b"/scope/%FF%41"
    assert scope["query_string"] == b""


def test_scope_method_and_post_headers(bridge):
    body = b"x=1"
    head = (b"PUT /scope?q HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 3\r\n\r\n" + body)
    scope, _ = get_scope(bridge.port, head)
    assert scope["method"] == "PUT"
    assert scope["query_string"] == b"q"
    assert [b"content-length", b"3"] in scope["headers"]
    assert [b"content-type", b"text/plain"] in scope["headers"]


def test_scope_root_path_option(bridge_factory):
    b = bridge_factory(gateway_args=["--root-path", "/mount"])
    scope, _ = get_scope(b.port, b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert scope["root_path"] == "/mount"


def test_keep_alive_serves_many_requests_on_one_connection(bridge):
    conn = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    try:
        client_ports = set()
        for i in range(5):
            conn.request("GET", f"/scope?i={i}")
            r = read_response(conn)
            assert r.status == 200
            assert (r.header("connection") or "").lower() != "close"
            scope = unjson(json.loads(r.body))
            assert scope["query_string"] == f"i={i}".encode()
            client_ports.add(scope["client"][1])
            conn.request("POST", "/echo", body=f"body {i}".encode())
            r = read_response(conn)
            assert (r.status, r.body) == (200, f"body {i}".encode())
        assert len(client_ports) == 1, "requests did not share one connection"
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(bridge):
    """RFC 9112 §9.3.2: requests sent before the previous response arrives are
    answered in order — in one write, and while a slow response is pending (the
    gateway reads the next request while it watches the socket)."""
    with RawConnection(bridge.port) as c:
        c.send(b"GET /scope?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
               b"GET /scope?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second, third = c.read_response(), c.read_response(), c.read_response()
        assert unjson(json.loads(first.body))["query_string"] == b"n=1"
        assert (second.status, second.body) == (200, b"body")
        assert unjson(json.loads(third.body))["query_string"] == b"n=3"

        c.send(b"GET /slow?t=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)  # the slow response is pending: the next request comes meanwhile
        c.send(b"GET /scope?n=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        slow, fifth = c.read_response(), c.read_response()
        assert (slow.status, slow.body) == (200, b"slow done")
        assert unjson(json.loads(fifth.body))["query_string"] == b"n=5"


def test_body_read_past_the_buffer_stops_at_its_end(bridge):
    """A body that arrives after its head is read from the socket straight into its
    chunk (the gateway's in-place read): the read must stop at Content-Length, and the
    pipelined request sent in the same write as the body's end must still be served."""
    body = bytes(range(256)) * 600  # 150 KiB: three chunks
    with RawConnection(bridge.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(0.1)  # the head alone first: the body is not in the gateway's buffer
        c.send(body[:70000])
        time.sleep(0.1)
        c.send(body[70000:] + b"GET /scope?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        echoed, second = c.read_response(), c.read_response()
    assert (echoed.status, echoed.body) == (200, body)
    assert unjson(json.loads(second.body))["query_string"] == b"n=2"

def test_http_1_0_request(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"GET /scope HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.status_line.startswith("HTTP/1.")
        assert json.loads(r.body)["http_version"] == "1.0"
        assert c.at_eof(), "HTTP/1.0 connection without keep-alive stayed open"


def test_http_1_0_streamed_response_is_not_chunked(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"GET /stream HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    assert "chunked" not in (r.header("transfer-encoding") or "").lower()
    assert r.body == b"one,two,three"


def test_chunked_request_body_reaches_app_in_chunks(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: text/plain\r\n\r\n"
               b"5\r\nhello\r\n1\r\n \r\n6;ext=1\r\nworld!\r\n0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    assert r.body == b"hello world!"
    chunks = json.loads(r.header("x-chunks"))
    assert sum(n for n, _ in chunks) == 12
    assert chunks[-1][1] is False
    assert all(more for _, more in chunks[:-1])


def streamed_body_test(port, state, head: bytes, pieces, ident: str):
    """Sends (wire bytes, payload length) pieces one by one; before sending the
    next one, the app must have received every payload byte sent so far:
    proves the body streams to the app, without any timing."""
    def received():
        lines = (state.read(f"body-{ident}") or "").splitlines()
        return sum(int(line.split()[0]) for line in lines if line[0].isdigit())

    with RawConnection(port) as c:
        c.send(head)
        sent = 0
        for n, (wire, length) in enumerate(pieces, 1):
            c.send(wire)
            sent += length
            wait_until(lambda: received() >= sent, 10,
                       f"the app to receive body piece {n} ({sent} bytes in all)"
                       " before the next piece is sent")
        r = c.read_response()
    return r, (state.read(f"body-{ident}") or "").splitlines()


def test_chunked_request_body_is_streamed(bridge):
    ident = "chunked"
    head = (f"POST /record-body?id={ident} HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    pieces = [(b"3\r\nabc\r\n", 3), (b"4\r\ndefg\r\n", 4), (b"2\r\nhi\r\n0\r\n\r\n", 2)]
    r, lines = streamed_body_test(bridge.port, bridge.state, head, pieces, ident)
    assert (r.status, r.body) == (200, b"abcdefghi")
    assert lines[-1].endswith(" 0")  # last event: more_body false
    assert all(line.endswith(" 1") for line in lines[:-1])


def test_content_length_request_body_is_streamed(bridge):
    ident = "cl"
    head = (f"POST /record-body?id={ident} HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 9\r\n\r\n").encode()
    pieces = [(b"abc", 3), (b"defg", 4), (b"hi", 2)]
    r, lines = streamed_body_test(bridge.port, bridge.state, head, pieces, ident)
    assert (r.status, r.body) == (200, b"abcdefghi")
    assert lines[-1].endswith(" 0")
    assert all(line.endswith(" 1") for line in lines[:-1])


def test_large_body_both_ways(bridge):
    payload = bytes((i * 7) & 0xFF for i in range(3 * 1024 * 1024 + 17))
    r = request(bridge.port, "POST", "/echo", body=payload, timeout=30)
    assert r.status == 200
    assert len(r.body) == len(payload)
    assert r.body == payload
    chunks = json.loads(r.header("x-chunks"))
    assert sum(n for n, _ in chunks) == len(payload)


@contextlib.contextmanager
def relayed_worker(bridge_factory, bus_url, *args):
    """A gateway and one Python worker whose bus connection crosses a TCP relay that
    records what the worker sends (the relay reads plain TCP only)."""
    if not bus_url.startswith("zmq://127.0.0.1:") or bus_args(bus_url, "worker"):
        pytest.skip("the relay reads plain TCP")
    b = bridge_factory(workers=0)
    relay = Relay(int(bus_url.rsplit(":", 1)[1]))
    try:
        w = Worker("basic_app:app", f"zmq://127.0.0.1:{relay.port}", b.log_dir, b.state.path,
                   args=args, name="relayed-worker")
        b.procs.append(w)
        b.workers.append(w)
        b.wait_ready()
        yield b, relay
    finally:
        relay.close()


@pytest.mark.zmq_only("a TCP relay between the worker and the gateway's ZeroMQ bus")
def test_a_body_up_to_a_quarter_window_is_one_bus_message(bridge_factory, bus_url):
    """docs/protocol.md §5: the gateway offers feature bit 2, so the worker sends a 200 KiB
    response as one message (a start with its body: a piece is a quarter of the 1 MiB
    window), and a 600 KiB one as a start and three body events (256 KiB, 256 KiB, the rest)."""
    # No shared memory: every message crosses the relay whole.
    with relayed_worker(bridge_factory, bus_url, "--bus-shared-memory", "0") as (b, relay):
        for size, bodies in ((200 * 1024, 0), (600 * 1024, 3)):
            seen = len(relay.capture())
            r = request(b.port, "GET", f"/big?size={size}")
            assert (r.status, r.body) == (200, bytes(range(256)) * (size // 256))
            answer = relay.capture()[seen:]
            assert answer.count(b"http.response.start") == 1
            assert answer.count(b"http.response.body") == bodies, size


@pytest.mark.parametrize("length,limit", [("1", "1048576"), ("0", "1048576"), ("1", "1000")])
def test_response_body_over_the_bus_message_limit_arrives_whole(bridge_factory, length, limit):
    # The gateway refuses a bus message over max(--max-body-size,
    # --max-message-size, 256 KiB) + 64 KiB and drops the worker that sent it: the
    # app's one 5 MiB send must reach the bus as several body events, of a quarter
    # window each (docs/protocol.md §5), which fit even the smallest limits.
    b = bridge_factory(gateway_args=["--max-body-size", limit, "--max-message-size", limit])
    size = 5 * 1024 * 1024
    expected = bytes(range(256)) * (size // 256)
    for _ in range(2):  # and the worker is still there for the next one
        r = request(b.port, "GET", f"/big?size={size}&length={length}", timeout=60)
        assert r.status == 200
        assert len(r.body) == size and r.body == expected
        assert (r.header("content-length") is None) == (length == "0")
    assert "lost" not in b.gateway.log()


def test_body_under_backpressure_arrives_whole(bridge):
    # The app reads slowly: the gateway must stop at its event window and go
    # on with every credit the worker sends, until the last byte.
    payload = b"b" * (4 * 1024 * 1024)
    r = request(bridge.port, "POST", "/slow-reader", body=payload, timeout=60)
    assert r.status == 200
    total, events = map(int, r.body.split())
    assert total == len(payload)
    assert events > 16, "too few events to have filled the window"


def test_streamed_response_without_length_is_chunked(bridge):
    r = raw_request(bridge.port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 200
    assert r.chunked, r
    assert r.header("content-length") is None
    assert r.complete
    assert r.body == b"one,two,three"


def test_streamed_response_with_length_is_not_chunked(bridge):
    r = raw_request(bridge.port, b"GET /stream-cl HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 200
    assert not r.chunked, r
    assert r.header("transfer-encoding") is None
    assert r.header("content-length") == "13"
    assert r.body == b"one,two,three"


def test_response_streams_before_app_finishes(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"GET /stream-wait?id=s1 HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_head()
        assert r.status == 200
        # The app is now waiting for go-s1: the first chunk must already be here.
        assert c.read_chunk() == b"first"
        bridge.state.touch("go-s1")
        assert c.read_chunk() == b"second"
        assert c.read_chunk() is None


def test_head_has_no_body(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_head()
        assert r.status == 200
        assert r.header("content-length") == "5"
        # Same connection: the next bytes must be the next response, no body.
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r2 = c.read_response()
        assert r2.status_line.startswith("HTTP/1.1 200"), r2
        assert r2.body == b"hello"


def test_head_of_streamed_response_has_no_body(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_head()
        assert r.status == 200
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r2 = c.read_response()
        assert r2.status_line.startswith("HTTP/1.1 200"), r2
        assert r2.body == b"hello"


def test_repeated_response_headers_are_preserved(bridge):
    r = request(bridge.port, "GET", "/cookies")
    assert r.status == 200
    assert r.all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert r.all("x-multi") == ["one", "two"]


def test_expect_100_continue(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_head()
        assert interim.status == 100, interim
        c.send(b"hello")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello")


def test_expect_100_continue_from_http_1_0_is_ignored(bridge):
    """RFC 9110 §10.1.1: an HTTP/1.0 client's 100-continue MUST be ignored (it would
    take a 100 for the final response): the body it then sends is answered 200."""
    with RawConnection(bridge.port) as c:
        c.send(b"POST /echo HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        time.sleep(0.3)  # a 100 would be written by now
        c.send(b"hello")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello")
        assert c.at_eof()


def test_connection_close_on_a_later_field_line_closes(bridge):
    """RFC 9112 §9.6: a close option ends the connection after the response, on
    whichever Connection field line it comes (RFC 9110 §5.3: the lines form one list)."""
    for head in (b"Connection: keep-alive\r\nConnection: close\r\n",
                 b"Connection: foo\r\nX-Other: 1\r\nConnection: close\r\n"):
        with RawConnection(bridge.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
            r = c.read_response()
            assert r.status == 200
            assert (r.header("connection") or "").lower() == "close"
            assert c.at_eof(), head


def test_an_apps_connection_close_ends_the_connection(bridge):
    """The app's own "Connection: close" is not passed on as a header (the gateway owns
    the connection) but obeyed, as uvicorn does: the connection closes after it."""
    with RawConnection(bridge.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
        c.send(b"GET /app-closes HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"closing")
        assert r.header("connection") == "close"
        assert c.at_eof()


def test_empty_lines_before_a_request_line_are_ignored(bridge_factory):
    """RFC 9112 §2.2: a server ignores empty lines before a request line, as after a
    POST body whose client ended it with an extra CRLF. Alone, they leave the
    connection idle: closed quietly at --keepalive-timeout, with no 408."""
    b = bridge_factory(gateway_args=["--keepalive-timeout", "0.5"])
    with RawConnection(b.port) as c:
        c.send(b"\r\n\r\nGET /scope?n=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert unjson(json.loads(c.read_response().body))["query_string"] == b"n=1"
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody\r\n")
        assert (c.read_response().body) == b"body"
        c.send(b"\r")
        time.sleep(0.1)  # the CRLF in two reads
        c.send(b"\nGET /scope?n=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert unjson(json.loads(c.read_response().body))["query_string"] == b"n=3"
        c.send(b"\r\n")
        assert c.read_to_eof() == b"", "empty lines alone got an answer"


def test_empty_lines_without_a_request_are_refused(bridge_factory):
    """Bounded: more than --max-header-size bytes of empty lines get a 400."""
    b = bridge_factory(gateway_args=["--max-header-size", "1024"])
    with RawConnection(b.port) as c:
        c.send(b"\r\n" * 600)
        r = c.read_response()
        assert r.status == 400
        assert c.at_eof()
    assert "empty lines without a request" in b.gateway.log()


def test_idle_keep_alive_connection_is_closed(bridge_factory):
    b = bridge_factory(gateway_args=["--keepalive-timeout", "0.5"])
    with RawConnection(b.port, timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 200
        start = time.monotonic()
        assert c.at_eof(), "idle keep-alive connection not closed"
        assert time.monotonic() - start < 8


def test_several_binds_and_threads(bridge_factory):
    extra = free_port()
    b = bridge_factory(gateway_args=["--threads", "2", "--bind", f"127.0.0.1:{extra}"])
    for port in (b.port, extra, b.port, extra):
        r = request(port, "GET", "/")
        assert (r.status, r.body) == (200, b"hello")


@pytest.mark.zmq_only("a TCP relay between the worker and the gateway's ZeroMQ bus")
def test_a_response_start_carries_its_body_over_the_bus(bridge_factory, bus_url):
    """docs/protocol.md §4.2: the gateway advertises `features` 1, the worker sends a hello's
    start and body as one message, and the client gets the whole response; a start the app
    sends before a wait reaches the gateway while the app waits."""
    with relayed_worker(bridge_factory, bus_url) as (b, relay):
        seen = len(relay.capture())
        r = request(b.port, "GET", "/")
        assert (r.status, r.body, r.header("content-length")) == (200, b"hello", "5")
        answer = relay.capture()[seen:]
        assert b"http.response.start" in answer
        assert b"http.response.body" not in answer, "the start carried the body"

        seen = len(relay.capture())
        waiting = Background(request, b.port, "GET", "/start-then-wait?id=w1")
        b.state.wait_for("started-w1")
        wait_until(lambda: b"http.response.start" in relay.capture()[seen:], 10,
                   "the start on the bus while the app waits")
        assert waiting.finished_at is None  # (the gateway writes the head with a body)
        b.state.touch("go-w1")
        r = waiting.result(10)
        assert (r.status, r.body) == (200, b"after the wait")
