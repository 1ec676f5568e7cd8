"""Familiar options (issue 17): --version on every program; the names Daphne and uvicorn
users type, each an alias of the gateway's own option, given to a real gateway that then
serves with it; several --bind and --unix-socket values from the environment; --fd with a
listening socket the test creates and hands down (as an inherited descriptor, and through
systemd's LISTEN_FDS/LISTEN_PID); Daphne-Root-Path from a trusted and an untrusted peer."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys

import pytest

from .harness import (WORKER_PATH, Bridge, Proc, bus_args, free_port, gateway_binary, request,
                      wait_for_log, wait_until)
from .test_unix_socket import get as unix_get
from .wsraw import CLOSE, PING, RawWebSocket, close_payload

VERSION = "0.1.0"  # CMakeLists.txt's project VERSION and asgi_bridge.__version__


@pytest.fixture
def bare(gateway_path, bus_url, tmp_path):
    """A Bridge whose gateway each test starts itself, with the options it tests."""
    b = Bridge(bus_url, tmp_path / "bridge", "ws_routes:app")
    yield b
    b.close()


def start_gateway(b: Bridge, *args: str, env: dict | None = None, pass_fds=(),
                  wrapper: tuple[str, ...] = (), preexec_fn=None) -> Proc:
    """A gateway with only the listeners `args` name (no --bind of the harness's)."""
    argv = [*wrapper, gateway_binary(), *args, "--bus", b.bus_url,
            *bus_args(b.bus_url, "gateway"), "--log-level", "debug"]
    gw = Proc(f"gateway{len(b.procs) + 1}", argv, b.log_dir / f"gateway{len(b.procs) + 1}.log",
              env=env, pass_fds=pass_fds, preexec_fn=preexec_fn)
    b.procs.append(gw)
    return gw


def tcp_ready(port: int) -> bool:
    try:
        return request(port, "GET", "/__ready", timeout=5).status != 503
    except (OSError, http.client.HTTPException):
        return False


def serve(b: Bridge, gw: Proc, port: int) -> None:
    """Waits for `gw` to accept on `port`, starts a worker, waits until it serves."""
    def up():
        if not gw.alive():
            raise AssertionError(f"gateway exited {gw.returncode}:\n{gw.log(40)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(up, 10, f"the gateway to accept on port {port}")
    if not b.workers:
        b.start_worker()
    wait_until(lambda: tcp_ready(port), 15, "a worker behind the gateway")


def scope_of(port: int, headers: dict, source: str = "127.0.0.1") -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/scope", headers=headers)
        r = conn.getresponse()
        assert r.status == 200
        return json.loads(r.read())
    finally:
        conn.close()


# -- --version ---------------------------------------------------------------------------------


def test_version_of_every_program(gateway_path):
    def run(argv, env=None):
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30,
                              env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()
    assert run([gateway_path, "--version"]) == f"asgi-bridge {VERSION}"
    env = dict(os.environ, PYTHONPATH=str(WORKER_PATH))
    assert run([sys.executable, "-m", "asgi_bridge", "--version"], env) == \
        f"python -m asgi_bridge {VERSION}"
    example = gateway_path.parent / "asgi-bridge-example-echo"
    assert run([example, "--version"]) == \
        f"asgi-bridge-example-echo (asgi-bridge C++ worker SDK {VERSION})"


# -- Daphne's and uvicorn's names --------------------------------------------------------------


def test_daphne_names(bare, tmp_path):
    port, path = free_port(), tmp_path / "daphne.sock"
    gw = start_gateway(bare, "-b", "127.0.0.1", "-p", str(port), "-u", str(path), "-t", "30",
                       "--websocket_timeout", "60", "--websocket_connect_timeout", "5",
                       "-s", "daphne-named")
    serve(bare, gw, port)
    r = request(port, "GET", "/")
    assert (r.status, r.body, r.header("server")) == (200, b"hello", "daphne-named")
    assert unix_get(path, "/") == (200, b"hello")


def test_uvicorn_names(bare, tmp_path):
    port, path = free_port(), tmp_path / "uvicorn.sock"
    gw = start_gateway(bare, "--host", "127.0.0.1", "--port", str(port), "--uds", str(path),
                       "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1",
                       "--timeout-keep-alive", "0.3",
                       "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.3")
    serve(bare, gw, port)
    assert unix_get(path, "/") == (200, b"hello")
    # --forwarded-allow-ips: the loopback proxy is believed.
    scope = scope_of(port, {"X-Forwarded-For": "203.0.113.9"})
    assert scope["client"][0] == "203.0.113.9"
    # --timeout-keep-alive: an idle keep-alive connection is closed long before the
    # default 5 s.
    with socket.create_connection(("127.0.0.1", port), timeout=4) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"hello"):
            data += s.recv(4096)
        assert s.recv(4096) == b"", "closed when idle"
    # --ws-ping-interval/--ws-ping-timeout: a ping, unanswered, then close 1011.
    with RawWebSocket(port, "/echo?id=alias", timeout=4) as c:
        assert c.read_handshake().status == 101
        assert c.read_frame()[1] == PING
        fin, opcode, payload = c.read_frame()
        assert (opcode, int.from_bytes(payload[:2], "big")) == (CLOSE, 1011)
        c.send_frame(CLOSE, close_payload(1011))
    wait_for_log(gw, "no pong within --ping-timeout (0.3 s)")


def test_limit_concurrency_and_backlog(bare):
    """No worker needed: the connection limit answers before any dispatch."""
    port = free_port()
    gw = start_gateway(bare, "--bind", f"127.0.0.1:{port}", "--limit-concurrency", "1",
                       "--backlog", "7")
    wait_until(lambda: not gw.alive() or "asgi-bridge ready" in gw.log(), 10, "the gateway")
    assert gw.alive(), gw.log(40)
    # ss shows a listening socket's backlog as its Send-Q.
    listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=10).stdout.split()
    assert listing[2] == "7", listing
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        r = request(port, "GET", "/")
        assert r.status == 503
        wait_for_log(gw, "--limit-connections 1 reached")


def test_several_binds_and_sockets_from_the_environment(bare, tmp_path):
    ports = [free_port(), free_port()]
    paths = [tmp_path / "a.sock", tmp_path / "b.sock"]
    env = dict(os.environ, ASGI_BRIDGE_BIND=",".join(f"127.0.0.1:{p}" for p in ports),
               ASGI_BRIDGE_UNIX_SOCKET=",".join(str(p) for p in paths))
    gw = start_gateway(bare, env=env)
    serve(bare, gw, ports[0])
    assert request(ports[1], "GET", "/").status == 200
    for path in paths:
        assert unix_get(path, "/") == (200, b"hello")


# -- --fd and systemd socket activation --------------------------------------------------------


def listening_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def test_fd_serves_inherited_sockets(bare, tmp_path):
    """A TCP and a Unix socket, as `--fd A,B`."""
    path = tmp_path / "inherited.sock"
    with listening_socket() as s, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
        u.bind(str(path))
        u.listen(16)
        port, fd, ufd = s.getsockname()[1], s.fileno(), u.fileno()
        gw = start_gateway(bare, "--fd", f"{fd},{ufd}", pass_fds=[fd, ufd])
        serve(bare, gw, port)
    # Our copies are closed: what answers now is the gateway's.
    assert request(port, "GET", "/").body == b"hello"
    assert unix_get(path, "/") == (200, b"hello")
    log = gw.log()
    assert f"listening on inherited descriptor {fd} (http://127.0.0.1:{port})" in log
    assert f"listening on inherited descriptor {ufd} (unix:{path})" in log


def test_systemd_socket_activation(bare):
    """LISTEN_FDS=1 and LISTEN_PID of the gateway itself: its descriptor 3 is the socket,
    as systemd hands it over. The shell moves the socket to 3 and sets LISTEN_PID to its
    own pid, which exec passes on to the gateway."""
    with listening_socket() as s:
        port = s.getsockname()[1]
        fd = s.fileno()
        gw = start_gateway(bare, env=dict(os.environ, LISTEN_FDS="1"), pass_fds=[fd],
                           wrapper=("bash", "-c",
                                    f'exec 3<&{fd} {fd}<&-; export LISTEN_PID=$$; exec "$0" "$@"'))
        serve(bare, gw, port)
    assert request(port, "GET", "/").body == b"hello"
    assert "listening on inherited descriptor 3" in gw.log()
    assert "127.0.0.1:8000" not in gw.log(), "no default listener next to the inherited one"


def test_fd_that_is_not_a_listening_socket_is_refused(bare, tmp_path):
    """A file, or a socket that does not listen: the gateway says so and does not start."""
    with open(tmp_path / "plain-file", "w") as f, socket.socket() as unbound:
        gw = start_gateway(bare, "--fd", str(f.fileno()), pass_fds=[f.fileno()])
        assert gw.wait(10) == 1
        assert f"--fd {f.fileno()}: not a socket" in gw.log()
        gw = start_gateway(bare, "--fd", str(unbound.fileno()), pass_fds=[unbound.fileno()])
        assert gw.wait(10) == 1
        assert f"--fd {unbound.fileno()}: not a listening stream socket" in gw.log()


# -- Daphne-Root-Path --------------------------------------------------------------------------


def test_daphne_root_path_from_a_trusted_proxy_only(bare):
    """nginx configurations written for Daphne set Daphne-Root-Path: a trusted proxy's
    becomes the scope's root_path (percent-decoded, and out of the headers, as Daphne
    does); an untrusted peer's changes nothing."""
    port = free_port()
    gw = start_gateway(bare, "--bind", f"127.0.0.1:{port}", "--proxy-headers",
                       "--trusted-proxies", "127.0.0.1", "--root-path", "/configured")
    serve(bare, gw, port)
    trusted = scope_of(port, {"Daphne-Root-Path": "/mounted%20app"})
    assert trusted["root_path"] == "/mounted app"
    names = [name["$bytes"] for name, _ in trusted["headers"]]
    assert "daphne-root-path" not in names and "host" in names
    untrusted = scope_of(port, {"Daphne-Root-Path": "/forged"}, source="127.0.0.2")
    assert untrusted["client"][0] == "127.0.0.2"
    assert untrusted["root_path"] == "/configured"
