"""ZeroMQ CURVE on the bus (issue 13, docs/security.md): real gateway and workers with keys
made by both keygen commands in the test's folder.

- the right keys serve HTTP and WebSocket; an unknown key, no key, or the wrong gateway key
  never get a connection (503 after a short --dispatch-timeout), and the gateway logs the
  refusal with the address and the reason; the worker logs why it was refused;
- a rogue DEALER without keys that sends a valid ``ready`` gets nothing;
- a key removed from the allow-list + SIGHUP: that worker's open connection is dropped, it
  cannot come back, the others go on;
  put back + SIGHUP, the refused worker (still retrying) serves again;
- on the wire (a TCP relay between worker and gateway): a request body's marker is in the
  capture without CURVE, not with it;
- a non-loopback bus without CURVE is refused at startup, unless --bus-insecure;
- the C++ SDK's echo example over CURVE (HTTP and WebSocket), and refused until its key is
  added (its monitor logs why, and it keeps retrying).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from .harness import (APPS_DIR, WORKER_PATH, Bridge, Gateway, Worker, free_port,
                      gateway_binary, request, wait_until)
from .test_cpp_workers import start_cpp_worker
from .wsraw import TEXT, RawWebSocket

DISPATCH_TIMEOUT = "1"


def gateway_keygen(base: Path) -> None:
    subprocess.run([str(gateway_binary()), "keygen", str(base)], check=True,
                   capture_output=True, timeout=30)


def python_keygen(base: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(WORKER_PATH))
    subprocess.run([sys.executable, "-m", "asgi_bridge", "keygen", str(base)], check=True,
                   capture_output=True, timeout=30, env=env)


class Keys:
    """The gateway's pair, three workers' pairs (w1 and w2 allowed, stranger not), the
    allow-list folder holding only the allowed public keys."""

    def __init__(self, root: Path):
        self.root = root
        self.authorized = root / "authorized"
        self.authorized.mkdir(parents=True)
        gateway_keygen(root / "gateway")
        python_keygen(root / "w1")
        gateway_keygen(root / "w2")
        python_keygen(root / "stranger")
        for name in ("w1", "w2"):
            (self.authorized / f"{name}.key").write_bytes((root / f"{name}.key").read_bytes())

    def gateway_args(self) -> list[str]:
        return ["--bus-secret-key", str(self.root / "gateway.key_secret"),
                "--bus-authorized-keys", str(self.authorized),
                "--dispatch-timeout", DISPATCH_TIMEOUT]

    def worker_args(self, name: str, server: str = "gateway") -> list[str]:
        return ["--bus-server-key", str(self.root / f"{server}.key"),
                "--bus-secret-key", str(self.root / f"{name}.key_secret")]

    def public(self, name: str) -> str:
        return zmq.auth.load_certificate(self.root / f"{name}.key")[0].decode()


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def bridges(tmp_path):
    made: list[Bridge] = []

    def make(bus_url: str | None = None, app: str = "ws_app:app") -> Bridge:
        b = Bridge(bus_url or f"zmq://127.0.0.1:{free_port()}", tmp_path / f"b{len(made)}", app)
        made.append(b)
        return b

    yield make
    for b in reversed(made):
        b.close()


def wait_log(proc, text: str, timeout: float = 10.0) -> None:
    wait_until(lambda: text in proc.log(), timeout, f"{proc.name} to log {text!r}")


def assert_websocket_echo(port: int, path: str, text: bytes) -> None:
    with RawWebSocket(port, path) as ws:
        assert ws.read_handshake().status == 101
        ws.send_frame(TEXT, text)
        assert ws.read_message() == (TEXT, text)


def test_keygen_writes_zmq_certificates(keys):
    for name in ("gateway", "w1"):  # one from each keygen
        public, secret = keys.root / f"{name}.key", keys.root / f"{name}.key_secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE(public.stat().st_mode) == 0o644
        public_key, none = zmq.auth.load_certificate(public)
        pair = zmq.auth.load_certificate(secret)
        assert none is None and len(public_key) == 40 and pair[0] == public_key
        assert zmq.curve_public(pair[1]) == public_key
    assert keys.public("gateway") != keys.public("w1")


def test_right_keys_serve_http_and_websocket(bridges, keys):
    b = bridges()
    b.start_gateway(keys.gateway_args())
    wait_log(b.gateway, "CURVE on, 2 authorized worker keys")
    b.start_worker(args=keys.worker_args("w1"))
    b.start_worker(args=keys.worker_args("w2"))  # a key pair from the gateway's keygen
    b.wait_ready()
    for _ in range(4):
        r = request(b.port, "POST", "/echo", body=b"over curve")
        assert (r.status, r.body) == (200, b"over curve")
    assert_websocket_echo(b.port, "/ws?id=c", b"hello curve")
    assert "refused worker" not in b.gateway.log()


@pytest.mark.parametrize("case", ["unknown key", "no key", "wrong gateway key"])
def test_refused_worker_gets_no_connection(bridges, keys, case):
    b = bridges()
    b.start_gateway(keys.gateway_args())
    args, gateway_says, worker_says = {
        "unknown key": (keys.worker_args("stranger"),
                        f"unknown key {keys.public('stranger')}",
                        "the gateway refused our public key"),
        "no key": ([], "no CURVE key", "require CURVE"),
        "wrong gateway key": (keys.worker_args("w1", server="stranger"),
                              "not for this gateway's key",
                              "is --bus-server-key the gateway's public key?"),
    }[case]
    w = b.start_worker(args=args)
    refusals = wait_until(lambda: [line for line in b.gateway.log().splitlines()
                                   if "refused worker at" in line and gateway_says in line],
                          10, f"the gateway to log the refusal: {gateway_says}")
    # ZAP names the peer of a refused key; a handshake refused before ZAP (no key, a hello
    # for another key) may close before the gateway reads its address: then it says so,
    # never another peer's (test_refused_plain_peer_is_named_by_its_address pins the address).
    for line in refusals:
        assert "at 127.0.0.1" in line or (case != "unknown key" and UNREAD_ADDRESS in line), line
    if case == "no key":  # the worker hit the mismatch itself, or the gateway hung up first
        wait_until(lambda: re.search(r"gateway requires CURVE|does it require CURVE", w.log()), 10,
                   "the worker to say the gateway requires CURVE")
    else:
        wait_log(w, worker_says)
    for path in ("/", "/__ready"):
        assert request(b.port, "GET", path, timeout=10).status == 503
    assert w.alive(), "a refused worker keeps retrying"
    assert b.state.read("requests.log") is None


UNREAD_ADDRESS = "an unknown address (the connection closed before it could be read)"


def zmtp_greeting(mechanism: bytes) -> bytes:
    """A ZMTP 3.0 greeting (RFC 23): signature, version 3.0, mechanism, as-server 0, filler."""
    return b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\0") + b"\0" + bytes(31)


def test_refused_plain_peer_is_named_by_its_address(bridges, keys):
    """A peer that greets without CURVE, after a pause that lets the gateway see it accepted:
    the refusal names its exact address and port."""
    b = bridges()
    b.start_gateway(keys.gateway_args())
    host, port = b.bus_url.removeprefix("zmq://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as peer:
        ours = "{}:{}".format(*peer.getsockname())
        time.sleep(0.5)  # the gateway handles the ACCEPTED event while we say nothing
        peer.sendall(zmtp_greeting(b"NULL"))
        wait_until(lambda: f"refused worker at {ours}: no CURVE key" in b.gateway.log(), 10,
                   f"the gateway to name {ours} in its refusal")
        peer.settimeout(5)
        try:
            while peer.recv(4096):
                pass  # the gateway's greeting, then its close
        except ConnectionResetError:
            pass


@pytest.mark.parametrize("kind", ["python", "cpp"])
def test_worker_without_keys_refused_by_a_curve_peer_keeps_trying(bridges, kind):
    """A worker without CURVE that sees a CURVE greeting itself gets a protocol error, after
    which libzmq gives up on the endpoint: the worker says why and connects again."""
    b = bridges()  # no gateway: a raw socket greets as a CURVE server
    host, port = b.bus_url.removeprefix("zmq://").rsplit(":", 1)
    with socket.create_server((host, int(port))) as server:
        server.settimeout(10)
        w = b.start_worker() if kind == "python" else start_cpp_worker(b, "echo")
        for attempt in range(2):
            try:
                conn, _ = server.accept()
            except socket.timeout:
                pytest.fail(f"the worker did not connect (attempt {attempt + 1})")
            with conn:
                conn.sendall(zmtp_greeting(b"CURVE")[:32] + b"\x01" + bytes(31))  # as-server
                conn.settimeout(5)
                try:
                    while conn.recv(4096):
                        pass  # its greeting, then its close on the mismatch
                except (ConnectionResetError, socket.timeout):
                    pass
        wait_log(w, "the gateway requires CURVE (it has --bus-secret-key)")
        assert w.alive()


def test_refusals_are_rate_limited(bridges, keys):
    """30 refused handshakes in a row: the gateway logs a few lines per window."""
    b = bridges()
    b.start_gateway(keys.gateway_args())
    for _ in range(30):
        rogue = RogueDealer(b.bus_url, curve_keys=(keys, "stranger"))
        try:
            assert rogue.wait_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH) == 400
        finally:
            rogue.close()
    lines = [line for line in b.gateway.log().splitlines() if "refused worker" in line]
    assert 1 <= len(lines) <= 5, lines


class RogueDealer:
    """A pyzmq DEALER that speaks the protocol (ready, heartbeats) without the right keys."""

    def __init__(self, bus_url: str, curve_keys=None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, b"wk-rogue")
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve_keys:
            keys, name = curve_keys
            self.sock.curve_serverkey = keys.public("gateway").encode()
            self.sock.curve_publickey, self.sock.curve_secretkey = zmq.auth.load_certificate(
                keys.root / f"{name}.key_secret")
        self.monitor = self.sock.get_monitor_socket()
        self.sock.connect("tcp://" + bus_url[len("zmq://"):])

    def wait_event(self, event: int, timeout: float = 10.0) -> int:
        """The value of the socket's next `event` (monitor)."""
        def seen():
            while self.monitor.poll(50):
                message = recv_monitor_message(self.monitor)
                if message["event"] == event:
                    return (message["value"],)
            return None
        return wait_until(seen, timeout, f"socket event {event:#x}")[0]

    def send_ready(self) -> None:
        """Queues ready and a heartbeat; once libzmq dropped the refused connection there
        is nowhere to queue them (zmq.Again): nothing leaves either way."""
        for kind in ("ready", "heartbeat"):
            try:
                self.sock.send(msgpack.packb({"v": 1, "k": kind, "w": "wk-rogue", "capacity": 10,
                                              "active": 0}, use_bin_type=True), zmq.NOBLOCK)
            except zmq.Again:
                pass

    def received(self, timeout_ms: int) -> int:
        n = 0
        while self.sock.poll(timeout_ms):
            self.sock.recv_multipart()
            n += 1
        return n

    def close(self) -> None:
        self.monitor.close(0)
        self.sock.close(0)
        self.ctx.term()


def test_rogue_dealer_without_keys_gets_nothing(bridges, keys):
    b = bridges()
    b.start_gateway(keys.gateway_args())
    rogue = RogueDealer(b.bus_url)
    try:
        rogue.wait_event(zmq.EVENT_CONNECTED)
        rogue.send_ready()
        wait_log(b.gateway, "no CURVE key")
        rogue.send_ready()
        assert request(b.port, "POST", "/echo", body=b"secret", timeout=10).status == 503
        assert rogue.received(500) == 0
    finally:
        rogue.close()


def serving_pids(b: Bridge, count: int):
    """The pids of the workers that answered 10 requests, if `count` of them did."""
    pids = {request(b.port, "GET", "/pid").body for _ in range(10)}
    return pids if len(pids) == count else None


def test_removed_key_is_refused_after_sighup(bridges, keys):
    b = bridges()
    b.start_gateway(keys.gateway_args())
    w1 = b.start_worker(args=keys.worker_args("w1"))
    w2 = b.start_worker(args=keys.worker_args("w2"))
    b.wait_ready()
    pids = wait_until(lambda: serving_pids(b, 2), 10, "both workers to serve")

    (keys.authorized / "w1.key").unlink()
    b.gateway.signal(signal.SIGHUP)
    wait_log(b.gateway, "1 authorized worker keys (were 2)")
    # w1's open connection is revoked too: the gateway drops it like a dead worker.
    wait_log(b.gateway, f"(key {keys.public('w1')} no longer authorized)")
    wait_until(lambda: serving_pids(b, 1), 10, "w2 alone to serve")
    assert serving_pids(b, 1) < pids

    # Restarted, w1 cannot come back.
    w1.stop()
    again = Worker(w1.app, b.bus_url, b.log_dir, b.state.path, keys.worker_args("w1"),
                   name="worker1-again")
    b.procs.append(again)
    wait_log(b.gateway, f"unknown key {keys.public('w1')}")
    wait_log(again, "the gateway refused our public key")
    assert serving_pids(b, 1) < pids, "w2 alone serves"
    assert w2.alive() and again.alive()

    # The refused worker kept retrying: its key back + SIGHUP, and it serves again.
    (keys.authorized / "w1.key").write_bytes((keys.root / "w1.key").read_bytes())
    b.gateway.signal(signal.SIGHUP)
    wait_log(b.gateway, "2 authorized worker keys (were 1)")
    wait_log(again, "CURVE handshake succeeded")
    wait_until(lambda: serving_pids(b, 2), 10, "the re-admitted worker to serve again")


class Relay:
    """Forwards TCP between a port of its own and `target_port`, recording every byte."""

    MAX_CAPTURE = 16 * 1024 * 1024

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.captured = bytearray()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, z in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, z), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self.lock:
                    if len(self.captured) < self.MAX_CAPTURE:
                        self.captured += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def capture(self) -> bytes:
        with self.lock:
            return bytes(self.captured)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("curve", [True, False], ids=["curve", "plain"])
def test_request_body_on_the_wire(bridges, keys, curve):
    bus_port = free_port()
    b = bridges(f"zmq://127.0.0.1:{bus_port}")
    b.start_gateway(keys.gateway_args() if curve else [])
    relay = Relay(bus_port)
    try:
        w = Worker("ws_app:app", f"zmq://127.0.0.1:{relay.port}", b.log_dir, b.state.path,
                   keys.worker_args("w1") if curve else [], name="relayed-worker")
        b.procs.append(w)
        b.workers.append(w)
        b.wait_ready()
        marker = b"MARKER-7f3a9c-" * 64
        r = request(b.port, "POST", "/echo", body=marker)
        assert (r.status, r.body) == (200, marker)
        captured = relay.capture()
        assert len(captured) > 2 * len(marker), "the request and its answer crossed the relay"
        assert (b"MARKER-7f3a9c-" in captured) is not curve
    finally:
        relay.close()


def test_non_loopback_bus_needs_curve_or_bus_insecure(bridges, keys, tmp_path):
    port = free_port()
    gw = Gateway(f"zmq://0.0.0.0:{port}", tmp_path)
    assert gw.wait(10) != 0
    message = gw.log()
    for option in ("--bus-secret-key", "--bus-authorized-keys", "--bus-insecure"):
        assert option in message
    assert "reachable from other hosts" in message

    # With CURVE, or with --bus-insecure, the same bind starts (the test connects to 127.0.0.1 only).
    for args, worker in ((keys.gateway_args(), keys.worker_args("w1")), (["--bus-insecure"], [])):
        b = bridges(f"zmq://0.0.0.0:{free_port()}")
        b.start_gateway(args)
        b.bus_url = b.bus_url.replace("0.0.0.0", "127.0.0.1")
        b.start_worker(args=worker)
        b.wait_ready()
        assert request(b.port, "GET", "/").status == 200
        b.close()


def test_curve_option_errors(tmp_path, keys):
    cases = [
        (["--bus-secret-key", str(keys.root / "gateway.key_secret")], "--bus-authorized-keys"),
        (["--bus-secret-key", str(keys.root / "gateway.key"), "--bus-authorized-keys",
          str(keys.authorized)], "no secret-key"),
    ]
    keys_args = ["--bus-secret-key", str(keys.root / "gateway.key_secret"),
                 "--bus-authorized-keys", str(keys.authorized)]
    buses = [f"zmq://127.0.0.1:{free_port()}"] * len(cases) + ["redis://127.0.0.1:1", "bad:-1"]
    cases += [(keys_args, "CURVE keys apply to zmq:// and zmq+ipc:// buses only"),
              (keys_args, "unknown bus URL scheme in 'bad:-1'")]  # the URL named, not the keys
    for i, ((args, expected), bus) in enumerate(zip(cases, buses)):
        gw = Gateway(bus, tmp_path, args, name=f"bad{i}")
        assert gw.wait(10) != 0
        assert expected in gw.log()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WORKER_PATH), str(APPS_DIR)]))
    worker = subprocess.run(
        [sys.executable, "-m", "asgi_bridge", "basic_app:app", "--bus", "zmq://127.0.0.1:1",
         "--bus-server-key", str(keys.root / "gateway.key")],
        capture_output=True, text=True, timeout=30, env=env)
    assert worker.returncode == 2 and "--bus-secret-key" in worker.stderr


def test_cpp_worker_over_curve(bridges, keys):
    b = bridges(app=None)
    b.start_gateway(keys.gateway_args())
    worker = start_cpp_worker(b, "echo", *keys.worker_args("w2"))
    b.wait_ready()
    r = request(b.port, "POST", "/", body=b"c++ over curve")
    assert (r.status, r.body) == (200, b"c++ over curve")
    assert_websocket_echo(b.port, "/ws", b"hello c++")
    assert worker.alive()


def test_cpp_worker_refused_until_its_key_is_added(bridges, keys):
    b = bridges(app=None)
    b.start_gateway(keys.gateway_args())
    worker = start_cpp_worker(b, "echo", *keys.worker_args("stranger"))
    wait_log(worker, "the gateway refused our public key")
    wait_log(b.gateway, f"unknown key {keys.public('stranger')}")
    assert request(b.port, "GET", "/", timeout=10).status == 503

    (keys.authorized / "stranger.key").write_bytes((keys.root / "stranger.key").read_bytes())
    b.gateway.signal(signal.SIGHUP)
    wait_log(worker, "CURVE handshake with")
    b.wait_ready()
    assert request(b.port, "POST", "/", body=b"late").body == b"late"
