"""--unix-socket PATH: the gateway listens on a Unix domain socket (what nginx on
the same host prefers), alone or next to --bind. Real clients talk over the
socket: curl --unix-socket, http.client on an AF_UNIX socket, and a WebSocket
client (websockets.unix_connect). Per the ASGI spec, the scope of such a
connection has server [path, None] and client None."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import websockets

from .harness import Bridge, Proc, gateway_binary, request, wait_for_log, wait_until
from .test_http_basic import unjson


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX socket instead of TCP."""

    def __init__(self, path: Path, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def get(path: Path, target: str, headers: dict | None = None) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", target, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def accepting(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def start_gateway(bridge: Bridge, *args: str) -> Proc:
    """A gateway with only the options given: no --bind unless passed."""
    argv = [gateway_binary(), *args, "--bus", bridge.bus_url, "--log-level", "debug"]
    gw = Proc("gateway", argv, bridge.log_dir / "gateway.log")
    bridge.procs.append(gw)
    return gw


def serve_over(bridge: Bridge, path: Path, *args: str) -> Proc:
    """Gateway on `path` plus one worker, ready to answer requests."""
    gw = start_gateway(bridge, "--unix-socket", str(path), *args)
    wait_until(lambda: accepting(path) or not gw.alive(), 10, "the gateway to accept on its socket")
    assert gw.alive(), gw.log(40)
    bridge.start_worker()
    wait_until(lambda: ready(path), 15, "a worker behind the socket")
    return gw


def ready(path: Path) -> bool:
    try:
        return get(path, "/__ready")[0] != 503
    except (OSError, http.client.HTTPException):
        return False


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "gw.sock"  # short: a Unix socket path holds at most 107 bytes


@pytest.fixture
def unix_bridge(bus_url, tmp_path):
    """Processes of one test (gateway and worker), stopped at its end."""
    b = Bridge(bus_url, tmp_path / "b", "basic_app:app")
    yield b
    b.close()


def test_http_over_unix_socket_only(unix_bridge, path):
    gw = serve_over(unix_bridge, path, "--access-log")
    # Like uvicorn's --uds: 0666, so that nginx running as another user can connect.
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    out = subprocess.run(["curl", "-sS", "--unix-socket", str(path), "http://localhost/"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hello"

    status, body = get(path, "/scope")
    assert status == 200
    scope = unjson(json.loads(body))
    assert scope["server"] == [str(path), None]
    assert scope["client"] is None

    log = wait_for_log(gw, re.compile(r'\] unix: - - \[[^]]+\] "GET /scope HTTP/1.1" 200 '))  # the socket peer
    assert f"listening on unix:{path}" in log
    assert "listening on http://" not in log  # no TCP listener without --bind


def test_keep_alive_and_post_with_http_client(unix_bridge, path):
    serve_over(unix_bridge, path)
    conn = UnixHTTPConnection(path)
    for i in range(3):  # one connection, several requests
        body = b"x" * (100_000 + i)
        conn.request("POST", "/echo", body=body, headers={"content-type": "application/octet-stream"})
        r = conn.getresponse()
        assert r.status == 200
        assert r.read() == body
    conn.close()


def test_websocket_over_unix_socket(unix_bridge, path):
    unix_bridge.app = "ws_app:app"
    serve_over(unix_bridge, path)

    async def echo():
        async with websockets.unix_connect(str(path), "ws://localhost/ws?id=u") as ws:
            await ws.send("hello over unix")
            text = await ws.recv()
            await ws.send(b"\x00\x01")
            data = await ws.recv()
            return text, data

    assert asyncio.run(asyncio.wait_for(echo(), 20)) == ("hello over unix", b"\x00\x01")
    unix_bridge.state.wait_for("ws-u", contains="disconnect 1000")


def test_stale_socket_file_is_replaced(unix_bridge, path):
    # What a gateway killed with SIGKILL leaves: a socket file nobody accepts on.
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()
    assert path.exists()
    gw = serve_over(unix_bridge, path)
    assert get(path, "/")[1] == b"hello"
    assert f"removed stale socket file {path}" in gw.log()


def refused(bridge: Bridge, path: Path) -> str:
    """The log of a gateway that must refuse to start on `path`."""
    gw = start_gateway(bridge, "--unix-socket", str(path))
    assert gw.wait(10) == 1
    return gw.log()


def test_refuses_a_path_that_is_not_a_socket(unix_bridge, tmp_path):
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    assert "is not a socket; refusing to remove it" in refused(unix_bridge, path)
    assert path.read_text() == "keep me"


def test_refuses_a_socket_another_process_listens_on(unix_bridge, path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen()
        assert "another process is listening on it" in refused(unix_bridge, path)
        assert path.exists()


def test_sigterm_removes_the_socket_file(unix_bridge, path):
    gw = serve_over(unix_bridge, path)
    gw.signal(signal.SIGTERM)
    assert gw.wait(20) == 0
    assert not path.exists()


def test_unix_socket_next_to_bind(bridge_factory, path):
    # Proxy headers: a Unix socket peer is the proxy on this host and trusted;
    # the TCP peer 127.0.0.1 is not in this --trusted-proxies list.
    b = bridge_factory(gateway_args=["--unix-socket", str(path), "--proxy-headers",
                                     "--trusted-proxies", "192.0.2.1"])
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    status, body = get(path, "/scope", forwarded)
    assert status == 200
    scope = unjson(json.loads(body))
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    assert scope["server"] == [str(path), None]

    r = request(b.port, "GET", "/scope", headers=forwarded)
    assert r.status == 200
    scope = unjson(json.loads(r.body))
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"
    assert scope["server"] == ["127.0.0.1", b.port]
