"""design.md section 5, HTTP rows: what the client and the app see when
something goes wrong (app errors, no worker, timeouts, dead workers, bad
requests, limits, client leaving)."""

import os
import signal
import time

import pytest

from .harness import Background, RawConnection, raw_request, request

pytestmark = pytest.mark.every_bus  # the same over ZeroMQ and Redis (conftest.py)


def requests_logged(bridge):
    return (bridge.state.read("requests.log") or "").splitlines()


# -- the app fails --------------------------------------------------------


def test_app_raising_before_start_gives_500(bridge):
    r = request(bridge.port, "GET", "/raise")
    assert r.status == 500
    # The gateway and worker go on serving.
    assert request(bridge.port, "GET", "/").status == 200


def test_app_returning_without_response_gives_500(bridge):
    r = request(bridge.port, "GET", "/noreply")
    assert r.status == 500
    assert request(bridge.port, "GET", "/").status == 200


def test_body_before_start_raises_in_app_and_gives_500(bridge):
    r = request(bridge.port, "GET", "/body-before-start?id=bbs")
    assert r.status == 500
    seen = bridge.state.wait_for("violation-bbs", timeout=10)
    assert seen != "no exception", "the worker let the app send a body before start"


def test_second_start_raises_in_app(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"GET /double-start?id=ds HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read_head()
        assert head.status == 200
    seen = bridge.state.wait_for("violation-ds", timeout=10)
    assert seen != "no exception", "the worker let the app start the response twice"


def test_app_returning_after_start_aborts_response(bridge):
    with RawConnection(bridge.port) as c:
        c.send(b"GET /half-reply HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    assert r.chunked
    assert not r.complete, f"an unfinished response was terminated as if complete: {r}"
    assert r.body.startswith(b"partial")


# -- no worker, slow app ----------------------------------------------------


def test_no_worker_gives_503_with_retry_after(bridge_factory):
    b = bridge_factory(workers=0, gateway_args=["--dispatch-timeout", "1"])
    start = time.monotonic()
    r = request(b.port, "GET", "/", timeout=15)
    elapsed = time.monotonic() - start
    assert r.status == 503
    assert r.header("retry-after") is not None, r.headers
    assert elapsed < 10, f"503 took {elapsed:.1f} s with --dispatch-timeout 1"


def test_slow_app_gives_504_and_app_sees_disconnect(bridge_factory):
    b = bridge_factory(gateway_args=["--http-timeout", "1.5"])
    start = time.monotonic()
    r = request(b.port, "GET", "/wait-disconnect?id=slow", timeout=20)
    elapsed = time.monotonic() - start
    assert r.status == 504
    assert elapsed < 10, f"504 took {elapsed:.1f} s with --http-timeout 1.5"
    assert b.state.wait_for("disconnect-slow", timeout=10) == "http.disconnect"


def test_http_timeout_does_not_cut_a_started_response(bridge_factory):
    b = bridge_factory(gateway_args=["--http-timeout", "1"])
    with RawConnection(b.port) as c:
        c.send(b"GET /stream-wait?id=late HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_head().status == 200
        assert c.read_chunk() == b"first"
        time.sleep(1.5)  # past --http-timeout: the response has started, no 504
        b.state.touch("go-late")
        assert c.read_chunk() == b"second"
        assert c.read_chunk() is None


def test_request_waits_for_capacity_then_is_served(bridge_factory):
    b = bridge_factory(worker_args=["--concurrency", "1"])
    first = Background(request, b.port, "GET", "/slow?id=cap1&t=1", timeout=20)
    b.state.wait_for("started-cap1")
    second = request(b.port, "GET", "/", timeout=20)
    assert (second.status, second.body) == (200, b"hello")
    assert first.result().status == 200


# -- dead workers -------------------------------------------------------------


def test_worker_killed_mid_request_gives_502_and_spares_others(bridge_factory):
    b = bridge_factory(workers=2, worker_args=["--concurrency", "1"])
    # POST: never re-dispatched, so the client must see the 502.
    victim = Background(request, b.port, "POST", "/hang?id=victim", body=b"x", timeout=30)
    victim_pid = int(b.state.wait_for("started-victim"))
    # With capacity 1 each, this one goes to the other worker.
    other = Background(request, b.port, "POST", "/slow?id=other&t=6", body=b"y", timeout=30)
    other_pid = int(b.state.wait_for("started-other"))
    assert other_pid != victim_pid

    killed_at = time.monotonic()
    os.kill(victim_pid, signal.SIGKILL)
    r = victim.result(timeout=30)
    assert r.status == 502
    assert victim.finished_at - killed_at < 5, (
        f"502 came {victim.finished_at - killed_at:.1f} s after the kill")

    r = other.result(timeout=30)
    assert (r.status, r.body) == (200, b"slow done")
    # New connections go to the surviving worker.
    r = request(b.port, "GET", "/pid", timeout=20)
    assert (r.status, r.body) == (200, str(other_pid).encode())


def test_worker_killed_after_response_start_aborts_connection(bridge):
    with RawConnection(bridge.port, timeout=15) as c:
        c.send(b"GET /start-then-hang?id=abort HTTP/1.1\r\nHost: x\r\n\r\n")
        head = c.read_head()
        assert head.status == 200
        assert "chunked" in (head.header("transfer-encoding") or "")
        assert c.read_chunk() == b"partial"
        pid = int(bridge.state.wait_for("started-abort"))
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EOFError):
            c.read_chunk()  # no terminating chunk: the connection just ends
        assert time.monotonic() - killed_at < 10


# -- bad requests and limits --------------------------------------------------


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: x\r\nNo-Colon-Here\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "NUL in header value": b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    "non-numeric content-length": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "conflicting content-lengths":
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "HTTP/1.1 without Host": b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gives_400(bridge, data):
    r = raw_request(bridge.port, data)
    assert r.status == 400, r
    assert requests_logged(bridge) == [], "a malformed request reached the app"
    assert request(bridge.port, "GET", "/").status == 200


def test_oversized_headers_give_431(bridge_factory):
    b = bridge_factory(gateway_args=["--max-header-size", "1024"])
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    assert raw_request(b.port, big).status == 431
    many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(40)) + b"\r\n"
    assert raw_request(b.port, many).status == 431
    assert requests_logged(b) == [], "a request over the header limit reached the app"
    # A request under the limit still passes.
    r = request(b.port, "GET", "/", headers={"X-Small": "a" * 100})
    assert r.status == 200


def test_oversized_body_gives_413(bridge_factory):
    b = bridge_factory(gateway_args=["--max-body-size", "1024"])
    r = raw_request(b.port, b"POST /record-body?id=cl HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 2000\r\n\r\n" + b"z" * 2000)
    assert r.status == 413
    if "POST /record-body" in requests_logged(b):
        b.state.wait_for("body-cl", timeout=10, contains="http.disconnect")
    r = request(b.port, "POST", "/echo", body=b"z" * 1024)
    assert (r.status, len(r.body)) == (200, 1024), "a body at the limit was refused"


def test_oversized_chunked_body_gives_413_and_app_sees_disconnect(bridge_factory):
    b = bridge_factory(gateway_args=["--max-body-size", "1024"])
    piece = b"258\r\n" + b"q" * 600 + b"\r\n"
    with RawConnection(b.port) as c:
        c.send(b"POST /record-body?id=te HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            c.send(piece + piece + piece + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway may stop reading and close: the status must be there
        r = c.read_response()
    assert r.status == 413
    if "POST /record-body" in requests_logged(b):
        # Already dispatched: the app must learn the request is gone.
        b.state.wait_for("body-te", timeout=10, contains="http.disconnect")


# -- the client leaves ----------------------------------------------------------


def test_client_disconnect_reaches_app(bridge):
    c = RawConnection(bridge.port)
    c.send(b"GET /wait-disconnect?id=gone HTTP/1.1\r\nHost: x\r\n\r\n")
    bridge.state.wait_for("started-gone")
    c.close()
    assert bridge.state.wait_for("disconnect-gone", timeout=10) == "http.disconnect"
    assert request(bridge.port, "GET", "/").status == 200


def test_client_disconnect_reaches_app_on_a_kept_alive_connection(bridge):
    """The watcher starts only for a response that is slow (the disconnect
    sweep): a connection's later request with a body is watched too."""
    with RawConnection(bridge.port) as c:
        for _ in range(3):
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response().status == 200
        c.send(b"POST /wait-disconnect?id=gone-ka HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        bridge.state.wait_for("started-gone-ka")
    assert bridge.state.wait_for("disconnect-gone-ka", timeout=10) == "http.disconnect"
