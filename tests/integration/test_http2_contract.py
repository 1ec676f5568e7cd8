"""The HTTP suite's scope and failure-contract checks re-run over HTTP/2
(issue 18): test_http_basic.py, test_http_failures.py and
test_invalid_responses.py, each check here as its HTTP/1.1 twin states it,
with HTTP/2's differences said where they are (no chunking, a stream reset
instead of a cut connection, the connection going on after a refused
stream). Plus what the issue names beside them: response trailers (over h2
and HTTP/1.1), --min-body-rate on h2 request bodies, 100-continue.

test_proxy_headers.py's trusted proxy too. Checks of test_http2.py are not
repeated (60 streams, 1 MiB bodies, h2 over TLS with scheme https, a worker
killed before the head, 503 without a worker, 431 and 413 limits, the
access log). Over ZeroMQ only: nothing here depends on the bus.

The app is apps/contract_app.py (basic_app, bad_heads_app, slow_body_app
and /trailers); most tests share one gateway and worker (module fixture).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import h2.errors
import pytest

from .fakeworker import FakeWorker, body, start
from .h2client import H2Client, StreamResult
from .harness import (Background, Bridge, RawConnection, curl_echo_post, free_port, wait_for_log,
                      wait_until)
from .test_http_basic import unjson
from .test_invalid_responses import GATEWAY_CASES, WORKER_CASES

INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR
APP = "contract_app:app"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, gateway_path):
    """One gateway and worker for the module's stateless checks; every test must leave them serving."""
    b = Bridge(f"zmq://127.0.0.1:{free_port()}", tmp_path_factory.mktemp("h2contract"), APP,
               gateway_args=["--root-path", "/mount", "--proxy-headers"])
    b.start_gateway()
    b.start_worker()
    b.wait_ready()
    yield b
    b.close()


def scope_of(result) -> dict:
    assert result.status == 200, (result.status, bytes(result.body))
    return unjson(json.loads(bytes(result.body)))


def requests_logged(bridge) -> str:
    return bridge.state.read("requests.log") or ""


def wait_for_body(c: H2Client, stream: int, size: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(c.streams[stream].body) < size and not c.streams[stream].done:
        assert time.monotonic() < deadline, f"{size} body bytes not received: {bytes(c.streams[stream].body)!r}"
        c.pump(0.2)


def reset_after_head(r, body: bytes) -> None:
    """A response cut after its head: the head and what the app sent arrived, then RST_STREAM."""
    assert r.status == 200, r.status
    assert bytes(r.body) == body, bytes(r.body)
    assert r.reset == INTERNAL_ERROR and not r.ended, (r.reset, r.ended)


# -- test_http_basic.py: round trips and the scope --------------------------------


def test_round_trips_and_statuses(gw):
    with H2Client(gw.port) as c:
        r = c.get("/")
        assert (r.status, bytes(r.body)) == (200, b"hello")
        assert (r.header(b"content-type"), r.header(b"content-length")) == (b"text/plain", b"5")
        payload = bytes(range(256)) * 4
        r = c.get("/echo", method="POST", body=payload, headers=[("content-type", "application/x-test")])
        assert (r.status, bytes(r.body), r.header(b"content-type")) == (200, payload, b"application/x-test")
        r = c.get("/no-such-route")
        assert (r.status, bytes(r.body)) == (404, b"not found")
        for code in (201, 204, 302, 404, 418, 503):
            r = c.get(f"/status?code={code}")
            assert r.status == code
            assert bytes(r.body) == (b"" if code == 204 else f"status {code}".encode())
        assert c.goaway is None


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed")
def test_curl_round_trip(gw):
    head, payload = curl_echo_post(gw.port, "--http2-prior-knowledge")
    assert head.startswith(b"HTTP/2 200"), head
    assert b"content-type: text/x-curl" in head.lower()
    assert payload == b"from curl"


def test_scope_is_complete_and_exact(gw):
    raw_path = b"/scope/caf%C3%A9%20x/%2F"
    query = b"a=1&b=%20%FF&a=2&empty="
    sent = [(b"x-dup", b"1"), (b"x-mixed-case", b"Value With Case"), (b"x-dup", b"2"), (b"x-latin", b"caf\xe9")]
    with H2Client(gw.port) as c:
        scope = scope_of(c.get((raw_path + b"?" + query).decode("latin-1"), authority=f"127.0.0.1:{gw.port}",
                               headers=sent))
        client_host, client_port = c.sock.getsockname()
        # Streams of one connection share it: one client port.
        ports = {scope_of(c.get(f"/scope?i={i}"))["client"][1] for i in range(3)}
    assert scope["type"] == "http"
    assert (scope["asgi"]["version"], scope["asgi"]["spec_version"]) == ("3.0", "2.5")
    assert scope["http_version"] == "2"
    assert (scope["method"], scope["scheme"]) == ("GET", "http")
    assert scope["path"] == "/scope/café x//"
    assert scope["raw_path"] == raw_path
    assert scope["query_string"] == query
    assert scope["root_path"] == "/mount"
    # :authority first as host; the rest in the order sent, duplicates kept.
    assert scope["headers"] == [[b"host", f"127.0.0.1:{gw.port}".encode()]] + [list(h) for h in sent]
    assert scope["client"] == [client_host, client_port]
    assert scope["server"] == ["127.0.0.1", gw.port]
    assert "http.response.trailers" in scope["extensions"]
    assert ports == {client_port}


def test_scope_invalid_utf8_path_and_method_headers(gw):
    with H2Client(gw.port) as c:
        scope = scope_of(c.get("/scope/%FF%41"))
        put = scope_of(c.get("/scope?q", method="PUT", body=b"x=1",
                             headers=[("content-type", "text/plain"), ("content-length", "3")]))
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/scope/\ufffdA", b"/scope/%FF%41", b"")
    assert put["method"] == "PUT" and put["query_string"] == b"q"
    assert [b"content-length", b"3"] in put["headers"] and [b"content-type", b"text/plain"] in put["headers"]


def test_trusted_proxy_headers_set_client_and_scheme(gw):
    """test_proxy_headers.py over h2 (the module's gateway trusts 127.0.0.1 with --proxy-headers)."""
    forwarded = [("x-forwarded-for", "198.51.100.1, 203.0.113.7"), ("x-forwarded-proto", "https"),
                 ("x-forwarded-port", "51000")]
    with H2Client(gw.port) as c:
        scope = scope_of(c.get("/scope", headers=forwarded))
    assert (scope["client"], scope["scheme"]) == (["203.0.113.7", 51000], "https")
    assert [b"x-forwarded-proto", b"https"] in scope["headers"]


# -- request and response bodies ---------------------------------------------------


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no-length"])
def test_request_body_is_streamed_to_the_app(gw, length):
    """Before the next DATA frame goes, the app must have every byte sent so far (no timing)."""
    ident = f"h2-{length}"

    def received():
        lines = (gw.state.read(f"body-{ident}") or "").splitlines()
        return sum(int(line.split()[0]) for line in lines if line[0].isdigit())

    with H2Client(gw.port) as c:
        stream = c.request(f"/record-body?id={ident}", method="POST", end=False,
                           headers=[("content-length", "9")] if length else [])
        sent = 0
        for piece in (b"abc", b"defg"):
            c.send_body(stream, piece, end=False)
            sent += len(piece)
            wait_until(lambda: received() >= sent, 10, f"the app to receive {sent} bytes before more are sent")
        c.conn.send_data(stream, b"hi", end_stream=True)
        c.flush()
        r = c.wait([stream])[0]
    assert (r.status, bytes(r.body)) == (200, b"abcdefghi")
    lines = gw.state.read(f"body-{ident}").splitlines()
    assert lines[-1] == "2 0"
    assert all(line.endswith(" 1") for line in lines[:-1])


def test_request_waits_for_capacity_then_is_served(bridge_factory):
    b = bridge_factory(APP, worker_args=["--concurrency", "1"])
    with H2Client(b.port, timeout=20) as c:
        first = c.request("/slow?id=h2cap&t=1")
        b.state.wait_for("started-h2cap")
        second = c.request("/")
        slow, fine = c.wait([first, second])
    assert (slow.status, fine.status, bytes(fine.body)) == (200, 200, b"hello")


@pytest.mark.parametrize("length", ["1", "0"])
def test_response_body_over_the_bus_message_limit_arrives_whole(bridge_factory, length):
    """The worker splits what the bus would refuse; the stream's byte window
    (256 KiB) lets it through in order."""
    b = bridge_factory(APP, gateway_args=["--max-body-size", "1048576", "--max-message-size", "1048576"])
    size = 5 * 1024 * 1024
    with H2Client(b.port, timeout=30) as c:
        for _ in range(2):  # and the worker is still there for the next one
            r = c.wait([c.request(f"/big?size={size}&length={length}")], timeout=30)[0]
            assert r.status == 200 and bytes(r.body) == bytes(range(256)) * (size // 256)
            assert (r.header(b"content-length") is None) == (length == "0")
    assert "lost" not in b.gateway.log()


def test_body_under_backpressure_arrives_whole(gw):
    payload = b"b" * (2 * 1024 * 1024)
    with H2Client(gw.port, timeout=30) as c:
        r = c.wait([c.request("/slow-reader", method="POST", body=payload)], timeout=30)[0]
    total, events = map(int, bytes(r.body).split())
    assert total == len(payload)
    assert events > 16, "too few events to have filled the window"


def test_responses_stream_without_chunking(gw):
    with H2Client(gw.port) as c:
        r = c.get("/stream")
        assert (r.status, bytes(r.body)) == (200, b"one,two,three")
        assert r.header(b"content-length") is None and r.header(b"transfer-encoding") is None
        r = c.get("/stream-cl")
        assert (bytes(r.body), r.header(b"content-length")) == (b"one,two,three", b"13")
        # The first part arrives while the app still waits for its go-file.
        stream = c.request("/stream-wait?id=h2s1")
        wait_for_body(c, stream, len(b"first"))
        assert bytes(c.streams[stream].body) == b"first" and not c.streams[stream].done
        gw.state.touch("go-h2s1")
        r = c.wait([stream])[0]
        assert (bytes(r.body), r.ended) == (b"firstsecond", True)


def test_head_has_no_body_and_repeated_headers_are_kept(gw):
    with H2Client(gw.port) as c:
        head = c.get("/", method="HEAD")
        assert (head.status, bytes(head.body), head.header(b"content-length")) == (200, b"", b"5")
        streamed = c.get("/stream", method="HEAD")
        assert (streamed.status, bytes(streamed.body), streamed.ended) == (200, b"", True)
        r = c.get("/cookies")
        assert [v for n, v in r.headers if n == b"set-cookie"] == [b"a=1; Path=/", b"b=2; Path=/"]
        assert [v for n, v in r.headers if n == b"x-multi"] == [b"one", b"two"]
        assert bytes(c.get("/").body) == b"hello"


def test_expect_100_continue_only_before_an_awaited_body(gw):
    with H2Client(gw.port) as c:
        stream = c.request("/echo", method="POST", headers=[("expect", "100-continue")], end=False)
        deadline = time.monotonic() + 10
        while not c.streams[stream].informational:
            assert time.monotonic() < deadline, "no 100 Continue"
            c.pump(0.2)
        assert c.streams[stream].status is None  # the 100 came before the final response
        c.send_body(stream, b"after continue")
        r = c.wait([stream])[0]
        assert (r.informational, r.status, bytes(r.body)) == ([100], 200, b"after continue")
        # No body to wait for: no 100.
        r = c.get("/", headers=[("expect", "100-continue")])
        assert (r.informational, r.status) == ([], 200)
        # A body the gateway refuses by its length: 413 at once, no 100.
        r = c.get("/echo", method="POST", end=False,
                  headers=[("expect", "100-continue"), ("content-length", str(200 * 1024 * 1024))])
        assert (r.informational, r.status) == ([], 413)


# -- test_http_failures.py: the app fails ------------------------------------------


def test_app_failures_end_only_their_stream(gw):
    with H2Client(gw.port) as c:
        ids = [c.request(p) for p in ("/raise", "/noreply", "/body-before-start?id=h2bbs",
                                      "/double-start?id=h2ds", "/")]
        raised, noreply, early, double, fine = c.wait(ids)
        assert (raised.status, noreply.status, early.status) == (500, 500, 500)
        assert (double.status, bytes(double.body)) == (200, b"after violation")
        assert (fine.status, bytes(fine.body)) == (200, b"hello")
        assert c.get("/").status == 200 and c.goaway is None
    assert gw.state.wait_for("violation-h2bbs") != "no exception"
    assert gw.state.wait_for("violation-h2ds") != "no exception"


def test_app_returning_after_start_resets_the_stream_after_its_head(gw):
    """The head and the body sent so far reach the client, then RST_STREAM
    INTERNAL_ERROR (never a lost head, never a hang), each time: the app's
    error comes right behind its body, so a race would show."""
    with H2Client(gw.port) as c:
        for r in c.wait([c.request("/half-reply") for _ in range(10)]):
            reset_after_head(r, b"partial")
        assert c.get("/").status == 200 and c.goaway is None


def test_timeouts_per_stream_and_idle_connection(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--http-timeout", "1", "--keepalive-timeout", "1"])
    with H2Client(b.port, timeout=20) as c:
        slow = c.request("/wait-disconnect?id=h2slow")
        late = c.request("/stream-wait?id=h2late")
        assert c.wait([slow], timeout=15)[0].status == 504
        # A response that started before --http-timeout is not cut by it.
        wait_for_body(c, late, len(b"first"))
        time.sleep(1.5)  # past --http-timeout (the condition, not a measurement)
        b.state.touch("go-h2late")
        r = c.wait([late])[0]
        assert (r.status, bytes(r.body), r.ended) == (200, b"firstsecond", True)
        # Idle past --keepalive-timeout: GOAWAY NO_ERROR, then the close.
        c.wait_closed(timeout=15)
    assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert b.state.wait_for("disconnect-h2slow") == "http.disconnect"


def test_worker_killed_after_response_start_resets_the_stream(bridge_factory):
    b = bridge_factory(APP)
    with H2Client(b.port, timeout=20) as c:
        stream = c.request("/start-then-hang?id=h2abort")
        wait_for_body(c, stream, len(b"partial"))
        os.kill(int(b.state.wait_for("started-h2abort")), signal.SIGKILL)
        reset_after_head(c.wait([stream], timeout=15)[0], b"partial")
        assert c.goaway is None
    wait_for_log(b.gateway, "worker lost")


# -- bad requests and limits -------------------------------------------------------


def base_head(path: str, method: str = "POST") -> list[tuple[str, str]]:
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", "x")]


MALFORMED = {
    "uppercase header name": (base_head("/malformed-1", "GET") + [("X-Upper", "1")], None),
    "NUL in header value": (base_head("/malformed-2", "GET") + [("x-bad", "a\x00b")], None),
    "connection-specific header": (base_head("/malformed-3", "GET") + [("connection", "keep-alive")], None),
    "space in :path": (base_head("/malformed 4", "GET"), None),
    "no :path": ([(":method", "GET"), (":scheme", "http"), (":authority", "x")], None),
    "non-numeric content-length": (base_head("/malformed-6") + [("content-length", "abc")], b"abc"),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_is_refused_per_stream(gw, case):
    head, payload = case
    with H2Client(gw.port, validate=False) as c:
        stream = c.conn.get_next_available_stream_id()
        c.streams[stream] = StreamResult()
        c.conn.send_headers(stream, head, end_stream=payload is None)
        if payload is not None:
            c.conn.send_data(stream, payload, end_stream=True)
        c.flush()
        r = c.wait([stream])[0]
        assert r.status == 400 or r.reset == h2.errors.ErrorCodes.PROTOCOL_ERROR, (r.status, r.reset)
        assert c.get("/").status == 200 and c.goaway is None
    assert "/malformed" not in requests_logged(gw), "a malformed request reached the app"


def test_body_longer_than_its_content_length_is_refused(gw):
    """Found by the DATA frames, after the head may have gone to the app (as
    HTTP/1.1 dispatches a head with its first body bytes): the stream is reset
    and the app, if it had the request, hears http.disconnect, never a whole body."""
    with H2Client(gw.port, validate=False) as c:
        stream = c.conn.get_next_available_stream_id()
        c.streams[stream] = StreamResult()
        c.conn.send_headers(stream, base_head("/record-body?id=h2long") + [("content-length", "3")])
        c.conn.send_data(stream, b"abcd", end_stream=True)
        c.flush()
        r = c.wait([stream])[0]
        assert r.reset == h2.errors.ErrorCodes.PROTOCOL_ERROR, (r.status, r.reset)
        assert c.get("/").status == 200 and c.goaway is None
    if gw.state.read("body-h2long") is not None:  # the app had the request (its first event)
        lines = gw.state.wait_for("body-h2long", contains="http.disconnect").splitlines()
        assert not any(line.endswith(" 0") for line in lines), lines


def test_oversized_body_is_413_and_the_app_never_sees_it_whole(bridge_factory):
    b = bridge_factory(APP, gateway_args=["--max-body-size", "1024"])
    with H2Client(b.port) as c:
        r = c.get("/record-body?id=h2cl", method="POST", end=False, headers=[("content-length", "2000")])
        assert r.status == 413
        assert "record-body" not in requests_logged(b), "a body refused by its length reached the app"
        # No length: refused as it passes the limit, after the app had the request.
        stream = c.request("/record-body?id=h2te", method="POST", end=False)
        c.send_body(stream, b"q" * 600, end=False)
        wait_until(lambda: "600 1" in (b.state.read("body-h2te") or ""), 10, "the app to have the first 600 bytes")
        c.send_body(stream, b"q" * 600, end=False)
        r = c.wait([stream])[0]
        assert r.status == 413 or r.reset is not None
        b.state.wait_for("body-h2te", contains="http.disconnect")
        lines = b.state.read("body-h2te").splitlines()
        assert not any(line.endswith(" 0") for line in lines), f"the app saw a cut body as whole: {lines}"
        r = c.get("/echo", method="POST", body=b"z" * 1024)
        assert (r.status, len(r.body)) == (200, 1024), "a body at the limit was refused"


def test_a_body_cut_by_the_limit_never_looks_whole_to_the_worker(bridge_factory):
    """What the worker gets, seen by a scripted one: the body so far, then
    http.disconnect, never a last http.request (more_body false) that would
    make a cut body look whole."""
    b = bridge_factory(None, workers=0, gateway_args=["--max-body-size", "1024"])
    fake = FakeWorker(b.bus_url)
    try:
        with H2Client(b.port) as c:
            stream = c.request("/", method="POST", end=False)
            c.send_body(stream, b"q" * 600, end=False)
            events = [fake.next_event()["event"]]
            while sum(len(e.get("body", b"")) for e in events) < 600:
                events.append(fake.next_event()["event"])
            assert all(e["more_body"] for e in events), events
            c.send_body(stream, b"q" * 600, end=False)
            assert c.wait([stream])[0].status == 413
            assert fake.next_event()["event"]["type"] == "http.disconnect"
    finally:
        fake.close()


# -- the client leaves -------------------------------------------------------------


def test_client_reset_or_close_reaches_the_app(gw):
    with H2Client(gw.port) as c:
        stream = c.request("/wait-disconnect?id=h2rst")
        gw.state.wait_for("started-h2rst")
        c.conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        c.flush()
        assert gw.state.wait_for("disconnect-h2rst") == "http.disconnect"
        assert c.get("/").status == 200  # the connection goes on
    c = H2Client(gw.port)
    c.request("/wait-disconnect?id=h2gone")
    gw.state.wait_for("started-h2gone")
    c.close()
    assert gw.state.wait_for("disconnect-h2gone") == "http.disconnect"


# -- test_invalid_responses.py -----------------------------------------------------


@pytest.mark.parametrize("case", GATEWAY_CASES)
def test_invalid_head_gives_500_and_a_log_line(gw, case):
    with H2Client(gw.port) as c:
        r = c.get(f"/head/{case}")
        assert r.status == 500, r.status
        assert r.ended and b"hello" not in r.body, bytes(r.body)
        assert r.header(b"x-bad") is None and r.header(b"upgrade") is None, r.headers
        assert c.get("/").status == 200 and c.goaway is None  # the stream failed, not the connection
    problem = GATEWAY_CASES[case]
    wait_until(lambda: problem in gw.gateway.log(), 10, f"a log line naming {problem!r}")
    line = next(line for line in gw.gateway.log().splitlines() if problem in line)
    assert "invalid http.response.start from worker wk-" in line, line


@pytest.mark.parametrize("case", WORKER_CASES)
def test_head_the_worker_refuses_gives_500(gw, case):
    with H2Client(gw.port) as c:
        r = c.get(f"/head/{case}")
    assert r.status == 500 and r.header(b"x-injected") is None and b"hello" not in r.body


def test_valid_unusual_heads_pass(gw):
    with H2Client(gw.port) as c:
        r = c.get("/ok/cl-repeated-same")
        assert (r.status, bytes(r.body)) == (200, b"hello")
        assert [v for n, v in r.headers if n == b"content-length"] == [b"5"]
        assert bytes(c.get("/ok/cl-leading-zeros").body) == b"hello"
        # The app's transfer-encoding is HTTP/1.1's business: dropped over h2.
        r = c.get("/ok/te-chunked-from-app")
        assert (r.status, bytes(r.body), r.header(b"transfer-encoding")) == (200, b"hello", None)
        assert (c.get("/ok/status-599").status, c.get("/ok/status-299").status) == (599, 299)
        r = c.get("/ok/odd-but-valid")
        assert r.header(b"x-tchars!#$%&'*+-.^_`|~") == b"tab\there, obs-text \xe9\xff", r.headers
        assert r.header(b"x-empty") == b""


# -- worker misbehaviour (a scripted worker) ------------------------------------


def test_scripted_worker_failures_per_stream(fake_bridge):
    """test_worker_misbehaviour.py's rows over h2: invalid or out-of-order
    events → 502 with a log line, the worker's error → 500; after the head,
    RST_STREAM once the head and body sent so far are out."""
    fake = fake_bridge.add_fake()
    with H2Client(fake_bridge.port, timeout=20) as c:
        def exchange():
            # A POST (never re-dispatched) in one event: no body.
            stream = c.request("/", method="POST")
            return stream, fake.next_event(type_="http.request")["c"]

        stream, conn = exchange()
        fake.reply(conn, {"type": "http.response.start", "status": 999, "headers": []})
        assert c.wait([stream])[0].status == 502
        stream, conn = exchange()
        fake.reply(conn, start(200), seq=1)
        assert c.wait([stream])[0].status == 502
        stream, conn = exchange()
        fake.error(conn, "the app raised")
        assert c.wait([stream])[0].status == 500
        for breaks in ("error", "invalid event"):
            stream, conn = exchange()
            fake.reply(conn, start(200))
            fake.reply(conn, body(b"some", more=True))
            wait_for_body(c, stream, len(b"some"))
            if breaks == "error":
                fake.error(conn, "the app raised after start")
            else:
                fake.reply(conn, start(200))  # a second start
            reset_after_head(c.wait([stream])[0], b"some")
        assert c.goaway is None
    wait_for_log(fake_bridge.gateway, "invalid event from worker")


# -- response trailers (the http.response.trailers extension) --------------------


def test_trailers_over_h2(gw):
    with H2Client(gw.port) as c:
        r = c.get("/trailers?id=h2t")
        assert (r.status, bytes(r.body), r.ended) == (200, b"one,two", True)
        assert r.header(b"trailer") == b"x-checksum, x-count"
        # A trailing HEADERS frame that ends the stream, names in lower case; no te: trailers needed.
        assert r.trailers == [(b"x-checksum", b"abc"), (b"x-count", b"2")]
        r = c.get("/trailers?id=h2tl&length=1")
        assert (bytes(r.body), r.header(b"content-length"), r.trailers) == (
            b"one,two", b"7", [(b"x-checksum", b"abc"), (b"x-count", b"2")])
        head = c.get("/trailers?id=h2th", method="HEAD")
        assert (head.status, bytes(head.body), head.trailers, head.ended) == (200, b"", [], True)
        # A trailer the HTTP grammar forbids: the stream is reset after the body.
        reset_after_head(c.get("/trailers?id=h2tb&bad=1"), b"one,two")
        assert c.get("/").status == 200
    assert gw.state.read("trailers-ext-h2t") == "True"
    wait_for_log(gw.gateway, "http.response.trailers with a forbidden header")


def read_chunked(c: RawConnection) -> tuple[bytes, bytes]:
    """The chunked body and the trailer section (up to its empty line) of the response whose head was read."""
    payload = b""
    while size := int(c.read_until(b"\r\n").split(b";")[0], 16):
        payload += c.read_exact(size + 2)[:-2]
    trailer = b""
    while (line := c.read_until(b"\r\n")) != b"\r\n":
        trailer += line
    return payload, trailer + line


def test_trailers_over_http11_only_when_asked(gw):
    with RawConnection(gw.port) as c:
        c.send(b"GET /trailers?id=h1t HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        r = c.read_head()
        assert r.header("transfer-encoding") == "chunked" and r.header("trailer") == "x-checksum, x-count"
        assert read_chunked(c) == (b"one,two", b"X-Checksum: abc\r\nx-count: 2\r\n\r\n")
        # Without TE: trailers the client gets none (RFC 9110 §6.5.1 lets a server drop them).
        c.send(b"GET /trailers?id=h1n HTTP/1.1\r\nHost: x\r\n\r\n")
        c.read_head()
        assert read_chunked(c) == (b"one,two", b"\r\n")
        # A content-length body has no room for trailers.
        c.send(b"GET /trailers?id=h1l&length=1 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body, r.chunked) == (200, b"one,two", False)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().body == b"hello"
        # A trailer the HTTP grammar forbids: the connection is cut before the last chunk.
        c.send(b"GET /trailers?id=h1b&bad=1 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        c.read_head()
        assert (c.read_chunk(), c.read_chunk()) == (b"one,", b"two")
        with pytest.raises(EOFError):
            c.read_chunk()
    assert gw.state.read("trailers-ext-h1t") == "True"


# -- --min-body-rate on h2 request bodies ------------------------------------------


def test_min_body_rate_over_h2(bridge_factory):
    """A stream whose body trickles below --min-body-rate gets 408 and its app
    http.disconnect, while the connection's other streams go on; a stream held
    back by a slow app (credits) is blamed neither by --min-body-rate nor by
    --request-timeout. One gateway for both: a rate of 1 MB/s after 1 s of
    grace cuts a trickler and tests the held stream, as does a hold longer
    than --request-timeout."""
    b = bridge_factory(APP, gateway_args=["--min-body-rate", "1000000", "--min-body-rate-grace", "1",
                                          "--request-timeout", "2"])
    with H2Client(b.port, timeout=20) as c:
        slow = c.request("/record-body?id=h2trickle", method="POST", end=False, headers=[("content-length", "1000")])
        deadline = time.monotonic() + 30
        while not c.streams[slow].done:
            assert time.monotonic() < deadline, "the gateway let the body trickle for 30 s"
            c.conn.send_data(slow, b"a")
            c.flush()
            c.pump(0.2)
        assert c.streams[slow].status == 408, (c.streams[slow].status, c.streams[slow].reset)
        b.state.wait_for("body-h2trickle", contains="http.disconnect")
        r = c.get("/echo", method="POST", body=b"z" * 1000)  # the same connection goes on
        assert (r.status, len(r.body)) == (200, 1000) and c.goaway is None
    wait_for_log(b.gateway, "request body too slow")

    size = 2 * 1024 * 1024
    with H2Client(b.port, timeout=30) as c:
        held = c.request("/held-body?id=h2held", method="POST", end=False)
        sender = Background(c.send_body, held, b"b" * size, timeout=30)
        b.state.wait_for("held-h2held")
        time.sleep(3)  # the app holds the body back past --request-timeout (the condition, not a measurement)
        b.state.touch("go-h2held")
        sender.result(timeout=30)
        r = c.wait([held], timeout=30)[0]
    assert (r.status, bytes(r.body)) == (200, str(size).encode())
