"""The cluster under faults: HAProxy → two gateways → four workers (two Python, two C++),
over ZeroMQ (every worker connected to both gateways) and over Redis, as local processes; on
loopback, and again with gateways, workers and Redis in network namespaces of their own
(skipped, with the reason, where namespaces cannot be made: not root, no `ip`).

Under a steady, bounded load (loadclient.py) each scenario asserts its outcome by count, never
by timing, and adds a row to the table printed at the end (pytest -s shows it):

- rolling restart of every worker (a replacement first, then SIGTERM): no failed HTTP request;
  the WebSockets of the restarting worker get 1012 after its drain, the others keep echoing;
- drain of one gateway (SIGTERM: readyz 503 for --drain-delay, HAProxy takes it out, then the
  drain) and its restart: no failed HTTP request; its WebSockets get 1001, the others keep on;
- kill -9 of one gateway: at most its in-flight requests fail (one per load thread), every
  request after HAProxy took it out succeeds; only its WebSockets end;
- a Python worker frozen (SIGSTOP) 10 s: the gateways declare it dead, its WebSockets get 1011
  (the contract: the owner died after accept), the others keep on; after SIGCONT it rejoins;
- Redis restarted (Redis topology): failures only while it is down, then every request
  succeeds without restarting any process.
"""

from __future__ import annotations

import signal
import time

import pytest

from integration.harness import HarnessError, gateway_binary, wait_until

from .cluster import Cluster, Namespaces, require_haproxy
from .loadclient import HttpLoad, WsLoad, wait_closed

HTTP_THREADS = 3


@pytest.fixture(params=["zmq", "redis", "zmq-netns", "redis-netns"])
def cluster(request, tmp_path):
    require_haproxy()
    cpp = gateway_binary().parent / "asgi-bridge-example-echo"
    if not cpp.exists():
        raise HarnessError(f"{cpp} not built: cmake --build build --target asgi-bridge-example-echo")
    bus, _, variant = request.param.partition("-")
    net = None
    if variant == "netns":
        net = Namespaces()
        try:
            net.up()
        except OSError as exc:
            pytest.skip(f"no network namespaces here ({exc}): the loopback variant ran")
    c = Cluster(tmp_path, bus, gateway_binary(), cpp, net)
    try:
        c.start()
        yield c
    finally:
        c.close()
        if net is not None:
            net.down()


def wait_more(load: HttpLoad, count: int, timeout: float = 30.0):
    """Until the load made `count` more requests (bounded)."""
    start = sum(load.snapshot().values())
    wait_until(lambda: sum(load.snapshot().values()) >= start + count, timeout,
               f"{count} more requests")


def failed(outcomes):
    return {k: v for k, v in outcomes.items() if k != "ok"}


def codes(sockets):
    found = {}
    for ws in sockets:
        found[ws.code] = found.get(ws.code, 0) + 1
    return found


class Table:
    def __init__(self, bus):
        self.bus, self.rows = bus, []

    def add(self, scenario, outcomes, closed, untouched, note=""):
        kinds = ", ".join(f"{k}×{n}" for k, n in sorted(failed(outcomes).items()))
        self.rows.append((scenario, outcomes.get("ok", 0), sum(failed(outcomes).values()),
                          " ".join(f"{c}×{n}" for c, n in sorted(codes(closed).items())) or "-",
                          untouched, " ".join(filter(None, (note, kinds)))))

    def print(self):
        head = ("scenario", "http ok", "http failed", "ws closed (code×n)", "ws untouched", "")
        print(f"\ncluster over {self.bus}:")
        for row in (head, *self.rows):
            print(f"  {row[0]:<26} {row[1]:>8} {row[2]:>11}  {row[3]:<20} {row[4]:>12}  {row[5]}")


def rolling_restart(c: Cluster, table: Table):
    with HttpLoad(c.port, HTTP_THREADS) as load, WsLoad(c.port, 12) as wsl:
        cpp_owned = {ws for ws in wsl.sockets if ws.owner == "cpp"}
        for name in list(c.workers):
            kind = name.rstrip("0123456789")
            before = set(wsl.open())
            echoes = {ws: ws.echoes for ws in before}
            c.start_worker(kind)
            c.wait_workers(5)
            old = c.workers.pop(name)
            owned = {ws for ws in before if ws.owner == str(old.pid)}
            old.signal(signal.SIGTERM)
            assert old.wait(20) == 0, old.log(30)
            c.wait_workers(4)
            if kind == "py":
                assert not wait_closed(owned, 10)
            closed = before - set(wsl.open())
            assert all(ws.code == 1012 for ws in closed), codes(closed)
            assert closed == owned if kind == "py" else closed <= cpp_owned
            survivors = before - closed
            wait_until(lambda: all(ws.echoes > echoes[ws] for ws in survivors), 10,
                       "the other WebSockets to keep echoing")
        assert not wait_closed(wsl.sockets, 10)  # every one had its owner restarted
        outcomes = load.stop()
    assert not failed(outcomes), outcomes
    assert codes(wsl.sockets) == {1012: 12}
    assert sum(ws.bad_echoes for ws in wsl.sockets) == 0
    table.add("rolling restart, 4 workers", outcomes, wsl.sockets, 0)


def gateway_drain(c: Cluster, table: Table):
    with HttpLoad(c.port, HTTP_THREADS) as load, WsLoad(c.port, 8) as wsl:
        mine = {ws for ws in wsl.sockets if ws.gateway == "gw1"}
        others = set(wsl.sockets) - mine
        assert mine and others, [ws.gateway for ws in wsl.sockets]
        gw = c.gateways["gw1"]
        gw.signal(signal.SIGTERM)
        c.wait_in_rotation({"gw2"})
        assert gw.wait(20) == 0, gw.log(30)
        assert not wait_closed(mine, 5)
        echoes = {ws: ws.echoes for ws in others}
        c.start_gateway("gw1")
        c.wait_workers(4)
        c.wait_in_rotation({"gw1", "gw2"})
        wait_more(load, 30)
        wait_until(lambda: all(ws.echoes > echoes[ws] for ws in others), 10,
                   "the other gateway's WebSockets to keep echoing")
        outcomes = load.stop()
    assert not failed(outcomes), outcomes
    assert codes(mine) == {1001: len(mine)} and all(ws.code is None for ws in others)
    table.add("drain + restart gw1", outcomes, mine, len(others))


def gateway_kill(c: Cluster, table: Table):
    with HttpLoad(c.port, HTTP_THREADS) as load, WsLoad(c.port, 8) as wsl:
        mine = {ws for ws in wsl.sockets if ws.gateway == "gw1"}
        others = set(wsl.sockets) - mine
        c.gateways["gw1"].kill()
        c.wait_in_rotation({"gw2"})
        during = load.snapshot()
        assert not wait_closed(mine, 10)
        echoes = {ws: ws.echoes for ws in others}
        wait_more(load, 50)
        after = load.snapshot() - during
        assert not failed(after), after  # every request after HAProxy took it out
        wait_until(lambda: all(ws.echoes > echoes[ws] for ws in others), 10,
                   "the other gateway's WebSockets to keep echoing")
        c.start_gateway("gw1")
        c.wait_workers(4)
        c.wait_in_rotation({"gw1", "gw2"})
        outcomes = load.stop()
    # Only what was in flight on gw1 may fail: at most one request per load thread.
    assert sum(failed(outcomes).values()) <= HTTP_THREADS, outcomes
    assert all(ws.code is None for ws in others)
    table.add("kill -9 gw1", outcomes, mine, len(others), f"{len(mine)} ws on gw1")


def worker_freeze(c: Cluster, table: Table):
    with HttpLoad(c.port, HTTP_THREADS) as load, WsLoad(c.port, 12) as wsl:
        # On Redis whoever pops first owns a WebSocket: open more (bounded) until a Python
        # worker owns some; freeze the one that owns the most.
        for _ in range(3):
            if any(ws.owner != "cpp" for ws in wsl.sockets):
                break
            wsl.open_more(12)
        name = max((n for n in c.workers if n.startswith("py")),
                   key=lambda n: sum(ws.owner == str(c.workers[n].pid) for ws in wsl.sockets))
        proc = c.workers[name]
        mine = {ws for ws in wsl.sockets if ws.owner == str(proc.pid)}
        others = set(wsl.sockets) - mine
        assert mine, [ws.owner for ws in wsl.sockets]
        frozen_at = time.monotonic()
        proc.signal(signal.SIGSTOP)
        try:
            # Detected: its WebSockets end (and on ZeroMQ both gateways drop it).
            assert not wait_closed(mine, 9)
            if c.bus == "zmq":
                c.wait_workers(3, timeout=5)
            echoes = {ws: ws.echoes for ws in others}
            wait_until(lambda: all(ws.echoes > echoes[ws] for ws in others), 5,
                       "the other WebSockets to keep echoing")
            time.sleep(max(0.0, 10 - (time.monotonic() - frozen_at)))  # the freeze: 10 s
        finally:
            proc.signal(signal.SIGCONT)
        c.wait_workers(4)
        assert c.served_by(proc.pid)  # it rejoined: it answers requests again
        during = load.snapshot()
        wait_more(load, 50)
        after = load.snapshot() - during
        outcomes = load.stop()
    assert proc.alive()
    assert not failed(after), after
    # What it held when frozen fails per the contract (502; a GET it never acknowledged is
    # re-dispatched): at most one request in flight per load thread.
    assert sum(failed(outcomes).values()) <= HTTP_THREADS, outcomes
    assert codes(mine) == {1011: len(mine)}
    assert all(ws.code is None for ws in others)
    table.add("SIGSTOP py worker 10 s", outcomes, mine, len(others))


def redis_restart(c: Cluster, table: Table):
    pids = {p.pid for p in c.procs if p.alive() and p is not c.redis}
    with HttpLoad(c.port, HTTP_THREADS) as load:
        c.redis.stop()
        # Requests while Redis is down: a gateway holds each up to --dispatch-timeout
        # waiting for the bus, so one per load thread is what the outage can take.
        wait_more(load, HTTP_THREADS)
        c.start_redis()
        wait_until(lambda: load.snapshot()["ok"] and not failed(_last(load, 20)), 30,
                   "requests to succeed again")
        during = load.snapshot()
        wait_more(load, 50)
        after = load.snapshot() - during
        outcomes = load.stop()
    assert not failed(after), after
    assert {p.pid for p in c.procs if p.alive() and p is not c.redis} == pids  # none restarted
    table.add("redis restart", outcomes, [], "-", "while down:")


def _last(load, count):
    """The outcomes of roughly the last `count` requests (a window of the counter)."""
    first = load.snapshot()
    wait_more(load, count)
    return load.snapshot() - first


def test_cluster_under_faults(cluster):
    table = Table(cluster.bus + (" across network namespaces (CURVE / password)"
                                 if cluster.net else " on loopback"))
    try:
        rolling_restart(cluster, table)
        gateway_drain(cluster, table)
        gateway_kill(cluster, table)
        worker_freeze(cluster, table)
        if cluster.bus == "redis":
            redis_restart(cluster, table)
    finally:
        table.print()
