"""--admin HOST:PORT: /healthz, /readyz and /metrics (Prometheus text) on a
port of their own, next to real client traffic."""

from __future__ import annotations

import re
import signal
import socket
import subprocess

import pytest

from .harness import Background, RawConnection, free_port, gateway_binary, request, wait_until

pytestmark = pytest.mark.every_bus


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} missing from:\n{text}"
    return float(match.group(1))


@pytest.fixture
def admin_bridge(bridge_factory):
    def start(**kwargs):
        port = free_port()
        b = bridge_factory(gateway_args=["--admin", f"127.0.0.1:{port}"], **kwargs)
        return b, port
    return start


def test_healthz_readyz_and_metrics_count_responses(admin_bridge, bus_url):
    b, admin = admin_bridge()
    assert request(admin, "GET", "/healthz").status == 200
    r = request(admin, "GET", "/readyz")
    assert (r.status, r.body) == (200, b"ready\n")

    before = request(admin, "GET", "/metrics")
    assert before.status == 200
    assert before.header("content-type").startswith("text/plain; version=0.0.4")
    ok_before = metric(before.body.decode(), "asgi_bridge_responses_total",
                       '{protocol="http",status="2xx",origin="app"}')
    for _ in range(3):
        assert request(b.port, "GET", "/").status == 200
    assert request(b.port, "GET", "/status?code=404").status == 404
    with RawConnection(b.port) as c:  # malformed: our own 400
        c.send(b"GARBAGE\r\n\r\n")
        assert c.read_response().status == 400

    def counted() -> str | None:
        # An exchange is counted once its last byte is written, which may be just
        # after the client has read it: poll the scrape briefly rather than race it.
        text = request(admin, "GET", "/metrics").body.decode()
        # /__ready probes of the harness may add more 2xx, never fewer.
        done = (metric(text, "asgi_bridge_responses_total", '{protocol="http",status="2xx",origin="app"}') >= ok_before + 3
                and metric(text, "asgi_bridge_responses_total", '{protocol="http",status="4xx",origin="app"}') >= 1  # the 404
                and metric(text, "asgi_bridge_responses_total", '{protocol="http",status="4xx",origin="gateway"}') >= 1)
        return text if done else None
    text = wait_until(counted, 5, "the three 2xx, the 404 and the gateway's 400 counted")
    assert metric(text, "asgi_bridge_draining") == 0
    if not bus_url.startswith(("redis://", "rediss://")):
        assert metric(text, "asgi_bridge_workers") == 1
        assert metric(text, "asgi_bridge_worker_capacity") >= 1
    assert "# TYPE asgi_bridge_responses_total counter" in text


def test_open_connections_gauge(admin_bridge):
    b, admin = admin_bridge()
    conns = [RawConnection(b.port) for _ in range(3)]
    try:
        for c in conns:  # a served request makes sure the gateway holds the connection
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response().status == 200
        text = request(admin, "GET", "/metrics").body.decode()
        assert metric(text, "asgi_bridge_open_connections") >= 3
    finally:
        for c in conns:
            c.close()


@pytest.mark.zmq_only("readiness follows the workers the gateway knows")
def test_readyz_is_503_without_a_worker(admin_bridge):
    b, admin = admin_bridge(workers=0, ready=False)
    r = request(admin, "GET", "/readyz")
    assert (r.status, r.body) == (503, b"no worker\n")
    assert request(admin, "GET", "/healthz").status == 200
    b.start_worker()
    wait_until(lambda: request(admin, "GET", "/readyz").status == 200, 15, "/readyz to turn 200")


def test_readyz_turns_503_while_draining(admin_bridge):
    b, admin = admin_bridge()
    pending = Background(request, b.port, "POST", "/slow?id=admin&t=3", body=b"x", timeout=30)
    b.state.wait_for("started-admin")
    b.gateway.signal(signal.SIGTERM)
    wait_until(lambda: request(admin, "GET", "/readyz").status == 503, 5, "/readyz to turn 503")
    assert request(admin, "GET", "/readyz").body == b"draining\n"
    assert metric(request(admin, "GET", "/metrics").body.decode(), "asgi_bridge_draining") == 1
    assert pending.result(timeout=30).status == 200


def test_unknown_path_and_method(admin_bridge):
    _, admin = admin_bridge()
    assert request(admin, "GET", "/nope").status == 404
    assert request(admin, "POST", "/metrics", body=b"x").status == 405
    r = request(admin, "HEAD", "/healthz")
    assert r.status == 200 and r.body == b""


def test_admin_port_in_use_stops_the_gateway_with_a_message():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([str(gateway_binary()), "--bind", f"127.0.0.1:{free_port()}",
                              "--bus", f"zmq://127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert f"--admin: cannot listen on 127.0.0.1:{port}" in out.stderr + out.stdout
