"""A cluster as local processes: HAProxy in front of two gateways, four workers (two Python,
two C++ echo), on ZeroMQ (every worker connected to both gateways) or on one Redis server.

HAProxy checks each gateway's /readyz on its admin port and tells the client which gateway
answered (X-Gateway); its stats page (CSV) says which gateways are in rotation. Every
process is the harness's Proc: its own process group, a log file, stopped at the end.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

from integration.harness import (Gateway, HarnessError, Proc, Worker, free_port, request,
                                 wait_until)

HERE = Path(__file__).resolve().parent
HEARTBEAT = "0.5"        # gateways and workers: a peer silent 1.5 s is dead
GRACEFUL = "1"           # a worker's drain: its WebSockets get 1012 after 1 s
DRAIN_DELAY = "1.5"      # a gateway's readyz 503 before it drains: > HAProxy's 2 × 300 ms
DRAIN_TIMEOUT = "1"      # then its WebSockets get 1001 after 1 s

HAPROXY_CFG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout tunnel 60s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
frontend web
    bind 127.0.0.1:{port}
    default_backend gateways
frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
backend gateways
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header X-Gateway %[srv_name]
    default-server inter 300ms fall 2 rise 2
{servers}
"""


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Cluster:
    def __init__(self, base: Path, bus: str, gateway_binary: Path, cpp_worker: Path):
        self.base, self.bus, self.cpp_worker = base, bus, cpp_worker
        self.gateway_binary = gateway_binary
        self.procs: list[Proc] = []
        self.redis = None
        self.redis_port = free_port() if bus == "redis" else None
        names = ("gw1", "gw2")
        self.gw_ports = {n: free_port() for n in names}
        self.admin_ports = {n: free_port() for n in names}
        self.bus_ports = {n: free_port() for n in names}
        self.gateways: dict[str, Gateway] = {}
        self.workers: dict[str, Proc] = {}
        self.serial = 0
        self.port, self.stats_port = free_port(), free_port()
        self.haproxy = None

    # --- processes -------------------------------------------------------------------

    def _track(self, proc):
        self.procs.append(proc)
        return proc

    def gateway_bus(self, name):
        if self.bus == "redis":
            return f"redis://127.0.0.1:{self.redis_port}/0"
        return f"zmq://127.0.0.1:{self.bus_ports[name]}"

    def worker_buses(self):
        if self.bus == "redis":
            return [f"redis://127.0.0.1:{self.redis_port}/0"]
        return [self.gateway_bus(name) for name in self.gw_ports]

    def start_redis(self):
        self.redis = self._track(Proc(
            "redis-server", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(self.base)],
            self.base / f"redis-{len(self.procs)}.log"))
        wait_until(lambda: port_open(self.redis_port), 10, "redis-server to listen")

    def start_gateway(self, name):
        self.serial += 1  # a restarted gateway logs to a new file
        gw = self._track(Gateway(
            self.gateway_bus(name), self.base, name=f"{name}-{self.serial}",
            port=self.gw_ports[name],
            log_level="info",
            args=["--admin", f"127.0.0.1:{self.admin_ports[name]}",
                  "--heartbeat-interval", HEARTBEAT, "--drain-delay", DRAIN_DELAY,
                  "--drain-timeout", DRAIN_TIMEOUT, "--dispatch-timeout", "10"]))
        # Logs of a restarted gateway go to a new file (the harness names it after `name`).
        self.gateways[name] = gw
        gw.wait_listening()
        return gw

    def start_worker(self, kind):
        """A Python ("py") or C++ ("cpp") worker; its name is kind + a serial number."""
        self.serial += 1
        name = f"{kind}{self.serial}"
        common = ["--heartbeat-interval", HEARTBEAT, "--graceful-timeout", GRACEFUL,
                  "--log-level", "info"]
        if kind == "py":
            proc = Worker("cluster_app:app", self.worker_buses()[0], self.base, self.base,
                          name=name, log_level="info",
                          args=[*(a for url in self.worker_buses()[1:] for a in ("--bus", url)),
                                "--heartbeat-interval", HEARTBEAT, "--graceful-timeout",
                                GRACEFUL, "--app-dir", str(HERE)])
        else:
            argv = [self.cpp_worker]
            for url in self.worker_buses():
                argv += ["--bus", url]
            proc = Proc(name, argv + common, self.base / f"{name}.log")
        self.workers[name] = self._track(proc)
        return name

    def start_haproxy(self):
        servers = "\n".join(
            f"    server {n} 127.0.0.1:{self.gw_ports[n]} check port {self.admin_ports[n]}"
            for n in self.gw_ports)
        cfg = self.base / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=self.port, stats_port=self.stats_port,
                                          servers=servers))
        self.haproxy = self._track(Proc("haproxy", [shutil.which("haproxy"), "-db", "-f", cfg],
                                        self.base / "haproxy.log"))
        wait_until(lambda: port_open(self.port), 10, "haproxy to listen")

    def start(self):
        if self.bus == "redis":
            self.start_redis()
        for name in self.gw_ports:
            self.start_gateway(name)
        for kind in ("py", "py", "cpp", "cpp"):
            self.start_worker(kind)
        self.start_haproxy()
        self.wait_workers(4)
        self.wait_in_rotation({"gw1", "gw2"})

    def close(self):
        for proc in reversed(self.procs):
            proc.close()

    # --- what the cluster says about itself --------------------------------------------

    def metric(self, name, gateway):
        try:
            body = request(self.admin_ports[gateway], "GET", "/metrics", timeout=5).body
        except OSError:
            return None
        found = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
        return float(found.group(1)) if found else None

    def wait_workers(self, count, timeout=20.0):
        """ZeroMQ: until both gateways count `count` registered workers. Redis: a gateway
        hears only from the workers that took its connections, so until `count` live
        workers said they serve (they then pop from the shared queue)."""
        def both():
            return all(self.metric("asgi_bridge_workers", g) == count for g in self.gw_ports)

        def serving():
            live = [p for p in self.workers.values() if p.alive()]
            return len(live) == count and all(" serving " in p.log() for p in live)
        wait_until(serving if self.bus == "redis" else both, timeout,
                   f"{count} workers to serve")

    def served_by(self, pid, attempts=400):
        """Whether a request through HAProxy reaches the Python worker `pid` within
        `attempts` requests (its body is "ok PID")."""
        return any(request(self.port, "GET", "/who").body == f"ok {pid}".encode()
                   for _ in range(attempts))

    def in_rotation(self) -> set[str]:
        try:
            body = request(self.stats_port, "GET", "/stats;csv", timeout=5).body
        except OSError:
            return set()
        up = set()
        for line in body.decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "gateways" and fields[1] != "BACKEND" and fields[17] == "UP":
                up.add(fields[1])
        return up

    def wait_in_rotation(self, names, timeout=15.0):
        try:
            wait_until(lambda: self.in_rotation() == set(names), timeout,
                       f"HAProxy to have exactly {sorted(names)} in rotation")
        except HarnessError as exc:
            raise HarnessError(f"{exc}; in rotation: {sorted(self.in_rotation())}") from None

    def worker_pid(self, name):
        """The pid that answers for a Python worker (the process itself: --processes 1)."""
        return str(self.workers[name].pid)


def require_haproxy():
    if shutil.which("haproxy") is None:
        raise HarnessError("haproxy not found: scripts/install-deps installs it")
