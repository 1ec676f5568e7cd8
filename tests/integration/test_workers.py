"""Worker processes: sharing load, coming late, leaving cleanly, lifespan,
ASGI 2 apps."""

import json
import re
import signal
import time

import pytest

from .harness import Background, request, wait_for_log, wait_until
from .wsraw import CLOSE, RawWebSocket, close_payload

pytestmark = pytest.mark.every_bus  # the same over ZeroMQ and Redis (conftest.py)


def pids_serving(port, concurrent=2, rounds=10, path="/slow?t=0.3&id=share"):
    """PIDs that answered batches of concurrent requests."""
    pids = set()
    for _ in range(rounds):
        batch = [Background(request, port, "GET", path, timeout=20)
                 for _ in range(concurrent)]
        for bg in batch:
            r = bg.result()
            assert r.status == 200, r
            pids.add(int(r.header("x-worker-pid")))
        if len(pids) >= concurrent:
            break
    return pids


def test_two_worker_commands_share_load(bridge_factory):
    b = bridge_factory(workers=2, worker_args=["--concurrency", "1"])
    pids = pids_serving(b.port)
    assert len(pids) == 2, f"only {pids} served two concurrent requests at a time"
    assert pids == {w.pid for w in b.workers}


def test_processes_option_forks_workers_that_share_load(bridge_factory):
    b = bridge_factory(workers=1, worker_args=["--processes", "2", "--concurrency", "1"])
    pids = pids_serving(b.port)
    assert len(pids) == 2, f"only {pids} served two concurrent requests at a time"


def test_worker_started_after_gateway(bridge_factory):
    b = bridge_factory(workers=0, gateway_args=["--dispatch-timeout", "15"])
    # A request made while no worker exists waits for one (within the
    # dispatch timeout) and is served once the worker announces itself.
    pending = Background(request, b.port, "GET", "/", timeout=30)
    time.sleep(0.5)
    b.start_worker()
    r = pending.result(timeout=30)
    assert (r.status, r.body) == (200, b"hello")
    assert request(b.port, "GET", "/").status == 200


def test_worker_sigterm_finishes_in_flight_request(bridge_factory):
    b = bridge_factory()
    worker = b.workers[0]
    pending = Background(request, b.port, "GET", "/slow?id=inflight&t=1.5", timeout=30)
    b.state.wait_for("started-inflight")
    worker.signal(signal.SIGTERM)
    r = pending.result(timeout=30)
    assert (r.status, r.body) == (200, b"slow done")
    assert worker.wait(15) == 0


def test_rolling_restart_loses_no_request(bridge_factory):
    b = bridge_factory(workers=1, gateway_args=["--dispatch-timeout", "15"])
    old = b.workers[0]
    pending = Background(request, b.port, "GET", "/slow?id=roll&t=1", timeout=30)
    b.state.wait_for("started-roll")
    new = b.start_worker()
    old.signal(signal.SIGTERM)
    assert pending.result().status == 200
    assert old.wait(15) == 0
    # Every request after the old worker left is served by the new one.
    for _ in range(3):
        r = request(b.port, "GET", "/pid", timeout=20)
        assert (r.status, r.body) == (200, str(new.pid).encode())


def test_lifespan_state_reaches_requests_and_shutdown_runs(bridge_factory):
    b = bridge_factory("lifespan_app:app", ready_path="/")
    r = request(b.port, "GET", "/")
    assert r.status == 200
    data = json.loads(r.body)
    assert data["state"] == {"greeting": "set at startup"}
    pid = data["pid"]
    assert b.state.read(f"startup-{pid}") == "done"
    worker = b.workers[0]
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert b.state.read(f"shutdown-{pid}") == "done"


def test_lifespan_startup_failure_exits_non_zero(bridge_factory, monkeypatch):
    monkeypatch.setenv("LIFESPAN_FAIL", "1")
    b = bridge_factory("lifespan_app:app", workers=0)
    worker = b.start_worker(args=["--lifespan", "on"])
    code = worker.wait(15)
    assert code != 0
    assert "database unreachable (on purpose)" in worker.log()


def test_lifespan_off_skips_startup(bridge_factory):
    b = bridge_factory("lifespan_app:app", worker_args=["--lifespan", "off"],
                       ready_path="/")
    r = request(b.port, "GET", "/")
    assert r.status == 200
    data = json.loads(r.body)
    assert b.state.read(f"startup-{data['pid']}") is None
    assert not data["state"]


def test_asgi2_app_is_served(bridge_factory):
    b = bridge_factory("asgi2_app:app", ready_path="/")
    r = request(b.port, "POST", "/two", body=b"body")
    assert (r.status, r.body) == (200, b"asgi2 /two body")


def test_unknown_app_exits_non_zero(bridge_factory):
    b = bridge_factory(workers=0)
    worker = b.start_worker("no_such_module_here:app")
    assert worker.wait(15) != 0
    wait_until(lambda: "no_such_module_here" in worker.log(), 5,
               "the worker to name the module it could not import")


def test_graceful_timeout_closes_websockets_1012_and_the_gateway_says_so(bridge_factory):
    """An open WebSocket that the graceful timeout ends gets 1012 "service restart" (the
    gateway stays: come back), as from the C++ worker, not the 1011 of an error; the
    gateway's departure line says what the worker had and did."""
    b = bridge_factory("ws_routes:app", worker_args=["--graceful-timeout", "0.5"])
    worker = b.workers[0]
    with RawWebSocket(b.port, "/hang?id=g", timeout=15) as c:
        assert c.read_handshake().status == 101
        b.state.wait_for("started-g")
        worker.signal(signal.SIGTERM)
        assert c.read_close()[0] == 1012
        c.send_frame(CLOSE, close_payload(1012))
    assert worker.wait(15) == 0
    log = wait_for_log(b.gateway, " left after draining")
    assert re.search(r"worker \S+ is draining with 1 connection", log), log
    assert re.search(r"worker \S+ left after draining 1 connection, "
                     r"1 WebSocket closed 1012 by the worker", log), log
