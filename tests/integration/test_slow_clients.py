"""Issue 12, item 4: clients that trickle their request. The head must arrive
within --request-timeout in all (not per read), and a body must keep
--min-body-rate over the time the gateway waits for it (not the time it
holds back for the worker's credits). A trickler is answered 408 and the
connection closes; an app that already had the request gets http.disconnect.

Every trickle is bounded (TRICKLE_LIMIT); the only waits are for outcomes.
"""

import select
import socket
import ssl
import time

from .harness import Background, RawConnection, request, wait_until
from .test_tls import make_certificate, tls_bridge

TRICKLE_LIMIT = 30.0  # seconds a trickler keeps going before it gives up: the gateway did not cut it


def trickle(port: int, head: bytes, interval: float, limit: float = TRICKLE_LIMIT):
    """Sends head, then one byte every interval until the gateway answers or
    closes (or limit passes). Returns (response or None if it only closed,
    bytes trickled, whether the gateway stopped it)."""
    with RawConnection(port, timeout=limit + 10) as c:
        c.send(head)
        sent = 0
        deadline = time.monotonic() + limit
        stopped = False
        while time.monotonic() < deadline:
            readable, _, _ = select.select([c.sock], [], [], interval)
            if readable:
                stopped = True
                break
            try:
                c.send(b"a")
            except OSError:  # reset: closed on us
                stopped = True
                break
            sent += 1
        try:
            response = c.read_response()
        except EOFError:
            response = None
        closed = c.at_eof()
    return response, sent, stopped and closed


def gateway_log_has(bridge, text: str, timeout: float = 10.0) -> None:
    wait_until(lambda: text in bridge.gateway.log(), timeout, f"gateway log line {text!r}")


def test_trickled_head_is_cut_by_its_total_deadline(bridge_factory):
    # Each byte comes well within the timeout; the head as a whole does not.
    b = bridge_factory(gateway_args=["--request-timeout", "2"])
    head = b"GET /?id=slowloris HTTP/1.1\r\nHost: x\r\nX-Slow: "
    response, sent, stopped = trickle(b.port, head, interval=0.25)
    assert stopped, f"the gateway let the head trickle for {TRICKLE_LIMIT} s ({sent} bytes)"
    assert response is not None and response.status == 408, response
    gateway_log_has(b, "request head not complete within --request-timeout")
    assert "GET /" not in (b.state.read("requests.log") or ""), "a trickled head reached the app"
    assert request(b.port, "GET", "/").status == 200


def test_trickled_body_below_min_rate_gets_408_and_app_sees_disconnect(bridge_factory):
    b = bridge_factory(gateway_args=["--min-body-rate", "500", "--min-body-rate-grace", "1"])
    head = (b"POST /record-body?id=slow HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n")
    response, sent, stopped = trickle(b.port, head, interval=0.2)
    assert stopped, f"the gateway let the body trickle for {TRICKLE_LIMIT} s ({sent} bytes)"
    assert response is not None and response.status == 408, response
    # The app had the request (the first byte dispatched it): it must hear the end.
    b.state.wait_for("body-slow", timeout=10, contains="http.disconnect")
    gateway_log_has(b, "request body too slow")
    assert request(b.port, "POST", "/echo", body=b"z" * 1000).status == 200


def test_trickled_body_over_tls_gets_408(bridge_factory, tmp_path):
    # The deadline cancels a read inside TLS: the 408 must still go out whole.
    b, context = tls_bridge(bridge_factory, make_certificate(tmp_path),
                            "--min-body-rate", "500", "--min-body-rate-grace", "1")
    with context.wrap_socket(socket.create_connection(("127.0.0.1", b.port), timeout=20),
                             server_hostname="127.0.0.1") as s:
        s.sendall(b"POST /record-body?id=tls HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        # Not select(): TLS 1.3 session tickets make the socket readable with no answer yet.
        s.settimeout(0.2)
        deadline = time.monotonic() + TRICKLE_LIMIT
        answer = b""
        while time.monotonic() < deadline and not answer:
            try:
                answer = s.recv(4096) or b"(closed)"
            except TimeoutError:
                s.sendall(b"a")
        s.settimeout(10)
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    b.state.wait_for("body-tls", timeout=10, contains="http.disconnect")


def test_client_held_back_by_a_slow_app_is_not_cut(bridge_factory):
    # A rate the client could not keep up if the gateway counted the app's pause
    # (1 s grace + ~1 MiB read before the window fills, at 1 MB/s: ~2 s < 3 s).
    b = bridge_factory("slow_body_app:app",
                       gateway_args=["--min-body-rate", "1000000", "--min-body-rate-grace", "1"])
    size = 8 * 1024 * 1024

    def post():
        with RawConnection(b.port, timeout=60) as c:
            c.send(b"POST /held-body?id=bp HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: %d\r\n\r\n" % size + b"b" * size)
            return c.read_response()

    client = Background(post)
    b.state.wait_for("held-bp", timeout=10)
    time.sleep(3)  # the app holds the body back (the condition, not a measurement)
    b.state.touch("go-bp")
    r = client.result(timeout=60)
    assert (r.status, r.body) == (200, str(size).encode()), r
    assert "too slow" not in b.gateway.log()


def test_trickling_clients_no_longer_starve_the_worker(bridge_factory):
    # 10 tricklers hold all 10 slots of the worker; they are cut, and a
    # request that waited for a slot meanwhile is served.
    b = bridge_factory(gateway_args=["--min-body-rate", "500", "--min-body-rate-grace", "2",
                                     "--dispatch-timeout", "30"],
                       worker_args=["--concurrency", "10"])
    names = [f"t{i}" for i in range(10)]
    tricklers = [Background(trickle, b.port,
                            b"POST /record-body?id=%s HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 1000\r\n\r\n" % name.encode(), 0.3)
                 for name in names]
    for name in names:
        b.state.wait_for(f"body-{name}", timeout=15)  # dispatched: a slot each
    normal = Background(request, b.port, "GET", "/", timeout=40)
    for trickler in tricklers:
        response, sent, stopped = trickler.result(timeout=TRICKLE_LIMIT + 15)
        assert stopped, f"a trickler went on for {TRICKLE_LIMIT} s ({sent} bytes)"
        assert response is not None and response.status == 408, response
    for name in names:
        b.state.wait_for(f"body-{name}", timeout=10, contains="http.disconnect")
    assert normal.result(timeout=45).status == 200
