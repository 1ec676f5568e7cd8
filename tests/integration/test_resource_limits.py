"""Descriptor exhaustion and --limit-connections (issue 12, item 6).

An attacker who opens connections until the gateway runs out of file
descriptors must not make it spin (an accept that fails at once, retried at
once), flood its log, or cut off the bus and the admin endpoint. The gateway
raises its soft RLIMIT_NOFILE to the hard limit at start, answers 503 past
--limit-connections (by default: the descriptor limit less what it needs for
itself and a reserve), and pauses a listener whose accept fails.
"""

from __future__ import annotations

import os
import re
import resource
import time
from typing import Optional

import pytest

from .harness import Bridge, RawConnection, free_port, request, wait_until

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rlimit_nofile(soft: int, hard: int):
    """A preexec_fn: the child starts with this RLIMIT_NOFILE."""
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def served(conn: RawConnection) -> int:
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return conn.read_response().status


def open_served(port: int, count: int) -> list[RawConnection]:
    """count keep-alive connections, each with one request answered."""
    conns = []
    for _ in range(count):
        c = RawConnection(port)
        conns.append(c)
        assert served(c) == 200
    return conns


def close_all(conns) -> None:
    for c in conns:
        c.close()


def log_lines(gateway) -> int:
    return gateway.log().count("\n")


@pytest.fixture
def limited_bridge(gateway_path, bus_url, tmp_path):
    """start(soft, hard, gateway_args): a gateway under that RLIMIT_NOFILE
    (None: the test's own), with the basic app behind it (one worker) and
    --admin on a free port."""
    bridges = []

    def start(soft: Optional[int], hard: Optional[int], gateway_args=(), ready: bool = True):
        b = Bridge(bus_url, tmp_path / f"bridge{len(bridges) + 1}", "basic_app:app")
        bridges.append(b)
        b.admin_port = free_port()
        b.start_gateway(["--admin", f"127.0.0.1:{b.admin_port}", "--threads", "2",
                         "--keepalive-timeout", "60", *gateway_args],
                        preexec_fn=rlimit_nofile(soft, hard) if soft else None)
        b.start_worker()
        if ready:
            b.wait_ready()
        return b

    yield start
    for b in reversed(bridges):
        b.close()


def connection_limit(gateway) -> int:
    match = re.search(r"up to (\d+) client connections", gateway.log())
    assert match, f"no connection limit in the startup log:\n{gateway.log(40)}"
    return int(match.group(1))


def no_open_connections(admin_port: int) -> bool:
    text = request(admin_port, "GET", "/metrics").body.decode()
    return re.search(r"^asgi_bridge_open_connections 0$", text, re.M) is not None


def test_startup_log_states_the_raised_descriptor_limit(limited_bridge):
    b = limited_bridge(200, 300, ready=False)
    log = wait_until(lambda: "file descriptor limit" in b.gateway.log() and b.gateway.log(),
                     10, "the descriptor limit in the log")
    assert "file descriptor limit: 300 (was 200)" in log
    limit = connection_limit(b.gateway)
    assert 0 < limit < 300 - 32  # the gateway's own descriptors and the reserve are kept


def test_limit_connections_answers_503_past_the_limit(limited_bridge):
    b = limited_bridge(None, None, ["--limit-connections", "5"])
    assert connection_limit(b.gateway) == 5
    # The readiness probes' connections are gone before counting starts.
    wait_until(lambda: no_open_connections(b.admin_port), 10, "no open client connection")
    held = open_served(b.port, 5)
    try:
        with RawConnection(b.port) as sixth:
            sixth.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            r = sixth.read_response()
            assert r.status == 503, r
            assert r.header("connection") == "close"
            assert sixth.at_eof()
        # The admin endpoint and the worker still serve at the limit.
        assert request(b.admin_port, "GET", "/healthz").status == 200
        assert request(b.admin_port, "GET", "/metrics").status == 200
        assert served(held[0]) == 200
        assert "--limit-connections 5 reached" in b.gateway.log()

        held.pop().close()  # a place frees up: the next connection is served
        wait_until(lambda: request(b.port, "GET", "/").status == 200, 5,
                   "a new connection to be served after one closed")
    finally:
        close_all(held)


def test_default_limit_keeps_descriptors_for_bus_and_admin(limited_bridge):
    """No --limit-connections, 128 descriptors: clients get 503 before the
    table is full, and a worker that connects at the limit serves."""
    b = limited_bridge(128, 128)
    limit = connection_limit(b.gateway)
    assert limit >= 10
    wait_until(lambda: no_open_connections(b.admin_port), 10, "no open client connection")
    held = open_served(b.port, limit)
    try:
        refused = []
        for _ in range(5):
            c = RawConnection(b.port)
            refused.append(c)
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response().status == 503
        close_all(refused)
        assert request(b.admin_port, "GET", "/metrics").status == 200
        # A new worker connects over the bus at the limit; the old one leaves.
        old = b.workers[0]
        b.start_worker()
        wait_until(lambda: b.gateway.log().count(" joined (capacity") >= 2, 15,
                   "the second worker to join over the bus")
        old.stop()  # it said drain and bye: the gateway dispatches to the new one only
        assert served(held[0]) == 200
        assert served(held[1]) == 200
    finally:
        close_all(held)


def test_descriptor_exhaustion_does_not_spin_and_recovers(limited_bridge):
    """--limit-connections above what 64 descriptors allow: accepts fail
    (EMFILE). The listeners pause instead of spinning, the log stays short,
    and once the clients leave, the pending connections are served."""
    b = limited_bridge(64, 64, ["--limit-connections", "1000"])
    clients = []
    try:
        for _ in range(70):  # more than the table holds; the rest wait in the backlog
            c = RawConnection(b.port, timeout=30)
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(c)
        wait_until(lambda: "accept failed" in b.gateway.log(), 10, "an accept to fail")
        # At the limit the admin endpoint cannot accept either: its probe
        # waits in the backlog (and makes the admin listener fail too).
        probe = RawConnection(b.admin_port, timeout=30)
        probe.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # let the admin listener reach its failing accept

        lines_before = log_lines(b.gateway)
        cpu_before = cpu_seconds(b.gateway.pid)
        wall_before = time.monotonic()
        time.sleep(3)
        cpu = cpu_seconds(b.gateway.pid) - cpu_before
        wall = time.monotonic() - wall_before
        grown = log_lines(b.gateway) - lines_before
        assert cpu < 0.3 * wall, f"gateway used {cpu:.2f} s of CPU in {wall:.2f} s at the descriptor limit"
        assert grown < 40, f"{grown} log lines in {wall:.1f} s at the descriptor limit"

        close_all(clients)
        clients = []
        # The admin probe that waited is answered, and clients are served again.
        assert probe.read_response().status == 200
        probe.close()
        wait_until(lambda: request(b.port, "GET", "/", timeout=5).status == 200, 10,
                   "the gateway to serve again after the clients left")
        assert request(b.admin_port, "GET", "/metrics").status == 200
    finally:
        close_all(clients)
