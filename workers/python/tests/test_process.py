"""The worker as a real process against a fake gateway: a ZeroMQ ROUTER in this process.

Everything binds to 127.0.0.1 and every wait is bounded.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import zmq

from asgi_bridge import codec

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)


class FakeGateway:
    def __init__(self, gateway_id="gw-test"):
        self.id = gateway_id
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"zmq://127.0.0.1:{self.port}"

    def recv(self, timeout=5.0):
        """Next (routing id, decoded message); fails the test after `timeout`. The
        worker's shared-memory ring offer (docs/protocol.md §1.1) is skipped, as a
        gateway that does not map rings drops it."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.socket.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                raise AssertionError(f"nothing from the worker within {timeout}s")
            frames = self.socket.recv_multipart()
            assert len(frames) == 2, frames  # [routing id][message]: no delimiter frame
            if frames[1][:1] != b"\xc1":
                return frames[0], codec.decode(frames[1])

    def expect(self, kind, timeout=5.0):
        """Skip heartbeats (and credits) until a message of `kind`."""
        deadline = time.monotonic() + timeout
        while True:
            identity, msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg["k"] == kind:
                return identity, msg
            if msg["k"] not in ("heartbeat", "credit"):
                raise AssertionError(f"expected {kind}, got {msg}")

    def collect(self, wanted, count, timeout=10.0):
        """The next `count` messages for which `wanted(msg)` holds, skipping others."""
        found = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            identity, msg = self.recv(max(0.01, deadline - time.monotonic()))
            if wanted(msg):
                found.append((identity, msg))
        return found

    def send(self, identity, **envelope):
        envelope.setdefault("g", self.id)
        self.socket.send_multipart([identity, codec.encode(envelope)])

    def request(self, identity, conn, path="/", body=b"", query=b""):
        self.send(identity, k="event", c=conn, s=0, window=1 << 20,
                  scope={"type": "http", "method": "POST", "path": path, "query_string": query,
                         "headers": [[b"host", b"test"]], "client": ["127.0.0.1", 1234],
                         "server": ["127.0.0.1", 8000],
                         "extensions": {"http.response.trailers": {}}},
                  event={"type": "http.request", "body": body})

    def response(self, conn, timeout=5.0):
        """The (start, body) events of connection `conn`, checking their sequence numbers."""
        _, start = self.expect("event", timeout)
        _, body = self.expect("event", timeout)
        assert (start["c"], start["s"], body["c"], body["s"]) == (conn, 0, conn, 1)
        return start["event"], body["event"]

    def close(self):
        self.socket.close()
        self.context.term()


def spawn(gateway, *args, env=None):
    environment = dict(os.environ, PYTHONPATH=PACKAGE_ROOT, **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "asgi_bridge", "tests_app:app", "--bus", gateway.url,
         "--heartbeat-interval", "0.2", "--log-level", "debug", *args],
        cwd=HERE, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)  # its own process group, so teardown can end it whole


def finish(proc, timeout=10):
    """Wait for the process; return (exit code, stdout, stderr)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def gateway():
    gw = FakeGateway()
    procs = []
    gw.spawn = lambda *args, **kwargs: procs.append(spawn(gw, *args, **kwargs)) or procs[-1]
    yield gw
    for proc in procs:  # never leave a worker behind, even when a test failed
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate(timeout=5)
    gw.close()


def test_ready_then_http_request_and_response(gateway):
    proc = gateway.spawn("--concurrency", "9")
    identity, ready = gateway.expect("ready")
    assert ready == {"v": 1, "k": "ready", "w": identity.decode(), "capacity": 9, "active": 0,
                     "ws_capacity": 10000}
    gateway.request(identity, conn=1, path="/echo", body=b"ping")
    # Our gateway id is new to the worker: it announces itself to it again first.
    assert gateway.expect("ready")[1]["w"] == identity.decode()
    start, body = gateway.response(conn=1)
    assert start == {"type": "http.response.start", "status": 200,
                     "headers": [[b"content-type", b"text/plain"], [b"content-length", b"4"]],
                     "trailers": False}
    assert body == {"type": "http.response.body", "body": b"ping", "more_body": False}
    _, heartbeat = gateway.expect("heartbeat")
    assert heartbeat["capacity"] == 9 and heartbeat["w"] == identity.decode()
    proc.send_signal(signal.SIGTERM)
    gateway.expect("drain")
    gateway.expect("bye")
    code, out, err = finish(proc)
    assert code == 0, err
    assert "event loop: uvloop" in err or "event loop: asyncio" in err


def test_state_errors_and_unknown_connections(gateway):
    proc = gateway.spawn()
    identity, _ = gateway.expect("ready")
    gateway.request(identity, conn=1, path="/state")
    gateway.expect("ready")
    assert gateway.response(conn=1)[1]["body"] == b"hello from lifespan"
    gateway.request(identity, conn=2, path="/raise")
    _, error = gateway.expect("error")
    assert (error["c"], error["message"], error["g"]) == (2, "RuntimeError: boom", "gw-test")
    gateway.send(identity, k="event", c=77, s=4, event={"type": "http.disconnect"})
    assert gateway.expect("error")[1]["message"] == "unknown connection"
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 0
    assert "RuntimeError: boom" in err and "Traceback" in err  # the traceback is logged


def test_websocket_echo(gateway):
    proc = gateway.spawn()
    identity, _ = gateway.expect("ready")
    gateway.send(identity, k="event", c=5, s=0,
                 scope={"type": "websocket", "path": "/ws", "subprotocols": ["chat"]},
                 event={"type": "websocket.connect"})
    gateway.expect("ready")
    _, accept = gateway.expect("event")
    assert accept["event"]["type"] == "websocket.accept" and accept["s"] == 0
    gateway.send(identity, k="event", c=5, s=1, event={"type": "websocket.receive", "text": "hé"})
    _, echo = gateway.expect("event")
    assert (echo["s"], echo["event"]) == (1, {"type": "websocket.send", "text": "hé"})
    gateway.send(identity, k="event", c=5, s=2, event={"type": "websocket.disconnect", "code": 1000})
    proc.send_signal(signal.SIGTERM)
    gateway.expect("drain")
    gateway.expect("bye")
    assert finish(proc)[0] == 0


def test_sigterm_drains_in_flight_requests_then_says_bye(gateway):
    proc = gateway.spawn()
    identity, _ = gateway.expect("ready")
    gateway.request(identity, conn=3, path="/slow", query=b"0.5")
    gateway.expect("ready")
    time.sleep(0.2)  # the request is in the app now
    proc.send_signal(signal.SIGTERM)
    gateway.expect("drain")
    start, body = gateway.response(conn=3)  # finished, not cut off
    assert body["body"] == b"slow done"
    gateway.expect("bye")
    code, out, err = finish(proc)
    assert code == 0, err
    assert "tests_app: lifespan shutdown" in out


def test_graceful_timeout_bounds_the_drain(gateway):
    proc = gateway.spawn("--graceful-timeout", "0.3")
    identity, _ = gateway.expect("ready")
    gateway.request(identity, conn=4, path="/slow", query=b"30")
    gateway.expect("ready")
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    gateway.expect("drain")
    _, error = gateway.expect("error")
    assert error["message"] == "worker shut down before the application finished"
    gateway.expect("bye")
    assert finish(proc)[0] == 0


def test_lifespan_startup_failure_exits_non_zero(gateway):
    proc = gateway.spawn(env={"TESTS_APP_FAIL_STARTUP": "1"})
    code, out, err = finish(proc)
    assert code != 0
    assert "no database today" in err
    assert not gateway.socket.poll(100)  # never announced itself


def test_websocket_capacity_from_the_environment_is_announced(gateway):
    gateway.spawn("--concurrency", "9", env={"ASGI_BRIDGE_WEBSOCKET_CAPACITY": "250"})
    _, ready = gateway.expect("ready")
    assert (ready["capacity"], ready["ws_capacity"]) == (9, 250)


@pytest.mark.parametrize("option", ["concurrency", "websocket-capacity", "processes",
                                    "heartbeat-interval", "graceful-timeout"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_numeric_options_refuse_what_is_not_a_positive_number(option, value, monkeypatch, capsys):
    from asgi_bridge.__main__ import parse_args
    base = ["app:app", "--bus", "zmq://127.0.0.1:1"]
    if value == "inf" and option in ("concurrency", "websocket-capacity", "processes"):
        value = "1e3"  # int() refuses it anyway; keep a bad integer spelling
    with pytest.raises(SystemExit) as info:
        parse_args([*base, f"--{option}", value])
    assert info.value.code == 2 and f"--{option}" in capsys.readouterr().err
    monkeypatch.setenv("ASGI_BRIDGE_" + option.upper().replace("-", "_"), value)
    with pytest.raises(SystemExit) as info:
        parse_args(base)
    assert info.value.code == 2 and f"--{option}" in capsys.readouterr().err


def test_bad_command_lines_fail_fast(gateway):
    for args in (["--bus", "http://x"], ["--concurrency", "0"], ["--websocket-capacity", "0"]):
        proc = gateway.spawn(*args)
        code, out, err = finish(proc)
        assert code == 2 and "usage:" in err
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    missing = subprocess.run([sys.executable, "-m", "asgi_bridge", "no_such_module_q:app",
                              "--bus", gateway.url], cwd=HERE, env=env, capture_output=True,
                             timeout=10)
    assert missing.returncode == 1 and b"could not import module 'no_such_module_q'" in missing.stderr


def test_processes_fork_workers_and_forward_signals(gateway):
    proc = gateway.spawn("--processes", "2")
    ids = {gateway.expect("ready")[0], gateway.expect("ready")[0]}
    assert len(ids) == 2  # two workers, two ids
    for conn, identity in enumerate(sorted(ids), start=1):
        gateway.request(identity, conn=conn, path="/pid")
    bodies = gateway.collect(lambda m: m["k"] == "event" and
                             m["event"]["type"] == "http.response.body", 2)
    assert len({m["event"]["body"] for _, m in bodies}) == 2  # two processes answered
    proc.send_signal(signal.SIGTERM)
    byes = gateway.collect(lambda m: m["k"] == "bye", 2)
    assert {identity for identity, _ in byes} == ids
    code, out, err = finish(proc)
    assert code == 0, err


def test_supervisor_restarts_a_worker_that_dies(gateway):
    proc = gateway.spawn("--processes", "2")
    ids = {gateway.expect("ready")[0], gateway.expect("ready")[0]}
    victim = sorted(ids)[0]
    gateway.request(victim, conn=1, path="/pid")
    pid = int(gateway.collect(lambda m: m["k"] == "event" and
                              m["event"]["type"] == "http.response.body", 1)[0][1]["event"]["body"])
    os.kill(pid, signal.SIGKILL)
    identity, _ = gateway.expect("ready", timeout=10)  # its replacement, after the backoff
    assert identity not in ids
    gateway.request(identity, conn=2, path="/pid")
    body = gateway.collect(lambda m: m["k"] == "event" and
                           m["event"]["type"] == "http.response.body", 1)[0][1]["event"]["body"]
    assert int(body) != pid
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 0, err
    assert f"worker process {pid} died (exit -9): restarting it in 0.5 s" in err


def test_max_requests_recycles_a_worker_gracefully(gateway):
    proc = gateway.spawn("--max-requests", "2", "--max-requests-jitter", "0")
    first, _ = gateway.expect("ready")
    gateway.request(first, conn=1, path="/slow", query=b"0.3")
    gateway.request(first, conn=2, path="/pid")
    # Both are answered (the second during the drain), then drain and bye, then a new worker.
    # (The first worker says ready again when it meets the gateway id: not counted.)
    seen = gateway.collect(lambda m: m["k"] in ("drain", "bye") or (
        m["k"] == "event" and m["event"]["type"] == "http.response.body"), 4)
    kinds = [m["k"] if m["k"] != "event" else m["c"] for _, m in seen]
    assert sorted(kinds[:3], key=str) == [1, 2, "drain"] and kinds[3] == "bye", kinds
    assert {identity for identity, _ in seen} == {first}
    fresh = gateway.collect(lambda m: m["k"] == "ready", 1)[0][0]
    assert fresh != first
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 0, err
    assert "served 2 connections (--max-requests): recycling" in err and "recycled" in err


def test_max_requests_jitter_and_negative_values(monkeypatch, capsys):
    from asgi_bridge.__main__ import parse_args
    from asgi_bridge.runtime import _max_requests
    base = ["app:app", "--bus", "zmq://127.0.0.1:1"]
    args = parse_args([*base, "--max-requests", "100", "--max-requests-jitter", "10"])
    assert {_max_requests(args) for _ in range(200)} <= set(range(100, 111))
    assert len({_max_requests(args) for _ in range(200)}) > 1
    assert _max_requests(parse_args(base)) == 0
    for option in ("--max-requests", "--max-requests-jitter"):
        with pytest.raises(SystemExit) as info:
            parse_args([*base, option, "-1"])
        assert info.value.code == 2 and option in capsys.readouterr().err


def test_a_worker_that_fails_before_it_serves_is_not_restarted(gateway):
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    proc = subprocess.run([sys.executable, "-m", "asgi_bridge", "no_such_module_q:app",
                           "--bus", gateway.url, "--processes", "2"], cwd=HERE, env=env,
                          capture_output=True, timeout=20)
    assert proc.returncode == 1
    assert b"before it served: not restarting it" in proc.stderr


def test_health_file_is_touched_at_every_heartbeat(gateway, tmp_path):
    health = tmp_path / "health"
    gateway.spawn("--health-file", str(health))
    gateway.expect("ready")
    gateway.expect("heartbeat")
    gateway.expect("heartbeat")
    first = health.stat().st_mtime_ns
    gateway.collect(lambda m: m["k"] == "heartbeat", 3)
    assert health.stat().st_mtime_ns > first
