"""--tls-cert/--tls-key: the --bind listeners speak HTTPS and WSS. Real clients
(http.client, curl, websockets) trust a self-signed certificate made with the
openssl command for each test; the scope says https/wss. A client that is not
speaking TLS, or not speaking at all, loses only its own connection. Config
errors stop the gateway at startup with a message naming the problem."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import websockets

from .harness import Proc, free_port, gateway_binary, request, wait_for_log, wait_until
from .test_http_basic import unjson
from .test_unix_socket import get as unix_get

APP = "ws_routes:app"  # basic_app over HTTP (/scope, /echo) plus WebSocket routes


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def client_context(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.set_alpn_protocols(["http/1.1"])
    return context


def https_get(port: int, context: ssl.SSLContext, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def tls_bridge(bridge_factory, certificate, *args: str):
    """Gateway with TLS on its --bind port plus one worker, ready to serve."""
    cert, key = certificate
    b = bridge_factory(APP, gateway_args=["--tls-cert", str(cert), "--tls-key", str(key), *args], ready=False)
    context = client_context(cert)

    def ready():
        try:
            return https_get(b.port, context, "/__ready")[0] != 503
        except (OSError, http.client.HTTPException):
            return False
    wait_until(ready, 15, "a worker behind the TLS listener")
    return b, context


def test_https_round_trips_and_scope(bridge_factory, certificate):
    b, context = tls_bridge(bridge_factory, certificate)
    assert f"listening on https://127.0.0.1:{b.port}" in b.gateway.log()
    conn = http.client.HTTPSConnection("127.0.0.1", b.port, context=context, timeout=10)
    conn.request("GET", "/scope")
    r = conn.getresponse()
    assert r.status == 200
    scope = unjson(json.loads(r.read()))
    assert scope["scheme"] == "https"
    assert scope["server"] == ["127.0.0.1", b.port]
    assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert conn.sock.selected_alpn_protocol() == "http/1.1"
    body = b"y" * 200_000
    conn.request("POST", "/echo", body=body)  # same connection: keep-alive over TLS
    r = conn.getresponse()
    assert r.status == 200
    assert r.read() == body
    conn.close()


def test_curl_with_the_ca_certificate(bridge_factory, certificate):
    b, _ = tls_bridge(bridge_factory, certificate)
    cert, _ = certificate
    out = subprocess.run(["curl", "-sS", "--cacert", str(cert), f"https://localhost:{b.port}/",
                          f"https://127.0.0.1:{b.port}/"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hellohello"
    # Without the certificate curl refuses: it is really TLS with our certificate.
    out = subprocess.run(["curl", "-sS", f"https://127.0.0.1:{b.port}/"], capture_output=True, timeout=30)
    assert out.returncode != 0


def test_wss_echo_and_scope(bridge_factory, certificate):
    b, context = tls_bridge(bridge_factory, certificate)

    async def echo():
        async with websockets.connect(f"wss://127.0.0.1:{b.port}/scope?id=t", ssl=context) as ws:
            await ws.send("over tls")
            text = await ws.recv()
            await ws.send(b"\x00\x01")
            return text, await ws.recv()

    assert asyncio.run(asyncio.wait_for(echo(), 20)) == ("over tls", b"\x00\x01")
    scope = json.loads(b.state.wait_for("scope-t"))
    assert scope["scheme"] == "wss"
    b.state.wait_for("ws-t", contains="disconnect 1000")


def test_forwarded_proto_of_a_trusted_proxy_wins(bridge_factory, certificate):
    b, context = tls_bridge(bridge_factory, certificate, "--proxy-headers")
    conn = http.client.HTTPSConnection("127.0.0.1", b.port, context=context, timeout=10)
    conn.request("GET", "/scope", headers={"X-Forwarded-Proto": "http"})
    r = conn.getresponse()
    assert r.status == 200
    assert json.loads(r.read())["scheme"] == "http"
    conn.close()


def test_unix_socket_and_admin_stay_plain(bridge_factory, certificate, tmp_path):
    path, admin = tmp_path / "gw.sock", free_port()
    b, context = tls_bridge(bridge_factory, certificate, "--unix-socket", str(path), "--admin", f"127.0.0.1:{admin}")
    status, body = unix_get(path, "/scope")
    assert status == 200
    assert json.loads(body)["scheme"] == "http"
    assert request(admin, "GET", "/healthz").status == 200
    assert https_get(b.port, context, "/") == (200, b"hello")


def closed_by_gateway(sock: socket.socket, timeout: float) -> bool:
    """True when the gateway ends the connection (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_plain_http_to_the_tls_port_is_closed(bridge_factory, certificate):
    b, context = tls_bridge(bridge_factory, certificate)
    with socket.create_connection(("127.0.0.1", b.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_gateway(s, 10)
    wait_for_log(b.gateway, "TLS handshake failed", 5)
    assert https_get(b.port, context, "/") == (200, b"hello")  # the next client is served
    assert b.gateway.alive()


def test_silent_client_is_closed_after_the_request_timeout(bridge_factory, certificate):
    b, context = tls_bridge(bridge_factory, certificate, "--request-timeout", "1")
    with socket.create_connection(("127.0.0.1", b.port), timeout=10) as silent:
        started = time.monotonic()
        assert closed_by_gateway(silent, 10)
        elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 8, elapsed
    assert https_get(b.port, context, "/") == (200, b"hello")


def refused(tmp_path, *args: str) -> str:
    """The log of a gateway that must refuse to start with these options."""
    argv = [gateway_binary(), "--bind", "127.0.0.1:0", "--bus", "zmq://127.0.0.1:1", *args]
    gw = Proc("gateway", argv, tmp_path / "refused.log")
    try:
        assert gw.wait(10) != 0
        return gw.log()
    finally:
        gw.close()


def test_certificate_without_key_is_a_config_error(tmp_path, certificate):
    cert, key = certificate
    assert "--tls-cert: needs --tls-key too" in refused(tmp_path, "--tls-cert", str(cert))
    assert "--tls-key: needs --tls-cert too" in refused(tmp_path, "--tls-key", str(key))


def test_unusable_files_stop_the_gateway(tmp_path, certificate):
    cert, key = certificate
    missing = tmp_path / "missing.pem"
    log = refused(tmp_path, "--tls-cert", str(missing), "--tls-key", str(key))
    assert f"--tls-cert {missing}: cannot read" in log
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    log = refused(tmp_path, "--tls-cert", str(cert), "--tls-key", str(garbage))
    assert f"--tls-key {garbage}: not a PEM private key" in log
    log = refused(tmp_path, "--tls-cert", str(garbage), "--tls-key", str(key))
    assert f"--tls-cert {garbage}: not a PEM certificate chain" in log
    _, other_key = make_certificate(tmp_path, "other")
    log = refused(tmp_path, "--tls-cert", str(cert), "--tls-key", str(other_key))
    assert f"--tls-key {other_key}" in log


def test_wss_close_from_the_app_ends_promptly(bridge_factory, certificate):
    # The closing handshake ends with a TLS shutdown both ways, not a timeout.
    b, context = tls_bridge(bridge_factory, certificate)

    async def closed_by_app():
        async with websockets.connect(f"wss://127.0.0.1:{b.port}/echo?id=c", ssl=context) as ws:
            started = time.monotonic()
            await ws.send("close:4001:bye")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            await ws.wait_closed()
            return ws.close_code, ws.close_reason, time.monotonic() - started

    code, reason, elapsed = asyncio.run(asyncio.wait_for(closed_by_app(), 20))
    assert (code, reason) == (4001, "bye")
    assert elapsed < 3, elapsed
