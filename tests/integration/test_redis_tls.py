"""Redis over TLS (``rediss://``, issue 13, docs/redis.md): a real ``redis-server --tls-port``
with a CA, server and client certificates made by ``openssl`` in the test's folder.

- a gateway and a Python worker over rediss:// serve HTTP and a WebSocket echo, the server's
  certificate checked against --bus-tls-ca-file;
- with ``tls-auth-clients yes``: the client certificate and key make it work; without them
  the gateway refuses to start, saying why (the worker too);
- a CA that did not sign the server's certificate fails verification with OpenSSL's reason,
  on both sides; --bus-tls-insecure skips the check;
- a Redis restart: 503 while it is down, then served again over a new TLS connection;
- the C++ SDK's echo example over rediss:// with a client certificate (HTTP and WebSocket);
- a server that never answers the handshake is a start-up error, not a hang;
- misused options (TLS options on redis://, a certificate without its key) are refused.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import start_tls_redis
from .harness import APPS_DIR, WORKER_PATH, Bridge, BusUrl, Gateway, free_port, request, wait_until
from .tlscerts import Pki
from .test_bus_curve import assert_websocket_echo, bridges  # noqa: F401 (a fixture)
from .test_cpp_workers import start_cpp_worker

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def redis_tls(tmp_path, pki):
    made = []

    def start(auth_clients: bool, port: int | None = None) -> int:
        directory = tmp_path / f"redis{len(made)}"
        directory.mkdir()
        proc, port = start_tls_redis(directory, pki, auth_clients, port=port)
        made.append(proc)
        return port

    start.made = made
    yield start
    for proc in made:
        proc.close()


def serve_and_echo(bridges, url: str, args: list[str]) -> Bridge:
    b = bridges(BusUrl(url, gateway_args=args, worker_args=args))
    b.start_gateway()
    b.start_worker()
    b.wait_ready()
    r = request(b.port, "POST", "/echo", body=b"over rediss")
    assert (r.status, r.body) == (200, b"over rediss")
    assert_websocket_echo(b.port, "/ws?id=t", b"hello rediss")
    return b


def run_worker(url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER_PATH), str(APPS_DIR)]))
    return subprocess.run([sys.executable, "-m", "asgi_bridge", "ws_app:app", "--bus", url, *args],
                          capture_output=True, text=True, timeout=30, env=env)


def refused_gateway(tmp_path: Path, url: str, args: list[str], name: str) -> str:
    gw = Gateway(url, tmp_path, args, name=name)
    assert gw.wait(15) not in (0, None)
    return gw.log()


def test_http_and_websocket_over_rediss(bridges, redis_tls, pki):
    port = redis_tls(auth_clients=False)
    serve_and_echo(bridges, f"rediss://127.0.0.1:{port}/0", ["--bus-tls-ca-file", str(pki.ca)])


def test_client_certificate_required(bridges, redis_tls, pki, tmp_path):
    port = redis_tls(auth_clients=True)
    url = f"rediss://127.0.0.1:{port}/0"
    serve_and_echo(bridges, url, ["--bus-tls-ca-file", str(pki.ca), *pki.client_args()])

    log = refused_gateway(tmp_path, url, ["--bus-tls-ca-file", str(pki.ca)], "nocert")
    # TLS 1.3: the server checks the client's certificate once the client's side of the
    # handshake is done, so the gateway reads its alert ("certificate required") or,
    # when the server's close overtakes it, a reset. Either way it does not start.
    assert f"redis 127.0.0.1:{port}: TLS: " in log
    assert "certificate required" in log or "Connection reset by peer" in log, log
    worker = run_worker(url, "--bus-tls-ca-file", str(pki.ca))
    assert worker.returncode != 0 and f"rediss://127.0.0.1:{port}/0" in worker.stderr


def test_reconnects_after_a_redis_restart(bridges, redis_tls, pki):
    port = redis_tls(auth_clients=True)
    b = serve_and_echo(bridges, f"rediss://127.0.0.1:{port}/0", ["--bus-tls-ca-file", str(pki.ca), *pki.client_args()])
    redis_tls.made[-1].close()
    wait_until(lambda: request(b.port, "GET", "/").status == 503, 10, "503 while Redis is down")
    redis_tls(auth_clients=True, port=port)
    wait_until(lambda: request(b.port, "GET", "/").status == 200, 15, "serving again over a new TLS connection")
    log = b.gateway.log()
    assert f"connected to 127.0.0.1:{port}" in log[log.index(f"127.0.0.1:{port} unavailable"):]


def test_cpp_worker_over_rediss(bridges, redis_tls, pki):
    port = redis_tls(auth_clients=True)
    args = ["--bus-tls-ca-file", str(pki.ca), *pki.client_args()]
    b = bridges(BusUrl(f"rediss://127.0.0.1:{port}/0", gateway_args=args, worker_args=args))
    b.start_gateway()
    worker = start_cpp_worker(b, "echo")
    b.wait_ready()
    r = request(b.port, "POST", "/", body=b"c++ over rediss")
    assert (r.status, r.body) == (200, b"c++ over rediss")
    assert_websocket_echo(b.port, "/ws", b"hello c++")
    assert worker.alive()


def test_wrong_ca_fails_verification_unless_insecure(bridges, redis_tls, pki, tmp_path):
    port = redis_tls(auth_clients=False)
    url = f"rediss://127.0.0.1:{port}/0"
    log = refused_gateway(tmp_path, url, ["--bus-tls-ca-file", str(pki.other_ca)], "wrongca")
    assert f"redis 127.0.0.1:{port}: TLS: certificate verify failed (self-signed certificate" in log
    worker = run_worker(url, "--bus-tls-ca-file", str(pki.other_ca))
    assert worker.returncode != 0 and "certificate verify failed" in worker.stderr

    # The system's CAs know nothing of this one either.
    assert "certificate verify failed" in refused_gateway(tmp_path, url, [], "systemca")
    serve_and_echo(bridges, url, ["--bus-tls-ca-file", str(pki.other_ca), "--bus-tls-insecure"])


def test_host_name_is_verified(redis_tls, pki, tmp_path):
    port = redis_tls(auth_clients=False)
    # The certificate names localhost and 127.0.0.1, not 127.0.0.2 (also this machine).
    log = refused_gateway(tmp_path, f"rediss://127.0.0.2:{port}/0", ["--bus-tls-ca-file", str(pki.ca)],
                          "wronghost")
    assert "certificate verify failed" in log
    worker = run_worker(f"rediss://127.0.0.2:{port}/0", "--bus-tls-ca-file", str(pki.ca))
    assert worker.returncode != 0 and "certificate verify failed" in worker.stderr


def test_silent_server_is_a_startup_error(tmp_path):
    """A server that takes the TCP connection and never answers the handshake."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        log = refused_gateway(tmp_path, f"rediss://127.0.0.1:{port}/0", [], "silent")
    assert f"redis 127.0.0.1:{port}: TLS handshake timed out" in log


def test_tls_option_errors(tmp_path, pki):
    plain = f"redis://127.0.0.1:{free_port()}/0"
    assert "rediss://" in refused_gateway(tmp_path, plain, ["--bus-tls-insecure"], "plain")
    tls = f"rediss://127.0.0.1:{free_port()}/0"
    assert "--bus-tls-key" in refused_gateway(tmp_path, tls, ["--bus-tls-cert", str(pki.client[0])], "nokey")
    worker = run_worker(plain, "--bus-tls-insecure")
    assert worker.returncode == 2 and "rediss://" in worker.stderr
    worker = run_worker(tls, "--bus-tls-cert", str(pki.client[0]))
    assert worker.returncode == 2 and "--bus-tls-key" in worker.stderr
