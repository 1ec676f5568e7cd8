"""A cluster as local processes: HAProxy in front of two gateways, four workers (two Python,
two C++ echo), on ZeroMQ (every worker connected to both gateways) or on one Redis server.

HAProxy checks each gateway's /readyz on its admin port and tells the client which gateway
answered (X-Gateway); its stats page (CSV) says which gateways are in rotation. Every
process is the harness's Proc: its own process group, a log file, stopped at the end.
With Namespaces, gateways, workers and Redis each run in a network namespace of their own
(the bus then crosses interfaces: CURVE keys on ZeroMQ, a password on Redis).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

from integration.harness import WORKER_PATH, HarnessError, Proc, free_port, wait_until

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


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def get_body(host: str, port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


class Namespaces:
    """Gateways, workers and Redis each in a network namespace of their own, joined by veth
    pairs on a bridge of the host's (which keeps HAProxy and the test): the bus crosses
    interfaces with addresses of its own, so ZeroMQ runs with CURVE. Needs root and `ip`."""

    SUBNET = "10.231.77"
    ROLES = {"gw": 2, "wk": 3, "rd": 4}  # the last byte of each one's address
    made = 0  # in this process: each set gets names of its own

    def __init__(self):
        # A deleted namespace's veth pair goes away asynchronously: the next set must not
        # reuse its names (the second netns variant was skipped, "File exists").
        Namespaces.made += 1
        tag = (os.getpid() * 10 + Namespaces.made) % 1000000
        self.bridge = f"abbr{tag}"
        self.names = {role: f"ab{tag}{role}" for role in self.ROLES}
        self.hosts = {role: f"{self.SUBNET}.{n}" for role, n in self.ROLES.items()}
        self.hosts["root"] = f"{self.SUBNET}.1"
        self._done = []

    @staticmethod
    def _ip(*args, ns=None):
        argv = ["ip", *(("netns", "exec", ns, "ip") if ns else ()), *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise OSError(f"{' '.join(argv)}: {out.stderr.strip()}")

    def up(self):
        """Set it up, or raise OSError saying why it cannot be (then nothing is left)."""
        if shutil.which("ip") is None or os.geteuid() != 0:
            raise OSError("needs root and iproute2's `ip`")
        try:
            self._ip("link", "add", self.bridge, "type", "bridge")
            self._done.append(("link", "del", self.bridge))
            self._ip("addr", "add", f"{self.hosts['root']}/24", "dev", self.bridge)
            self._ip("link", "set", self.bridge, "up")
            for role, n in self.ROLES.items():
                ns, host_end, ns_end = self.names[role], f"{self.bridge}h{n}", f"{self.bridge}n{n}"
                self._ip("netns", "add", ns)
                self._done.append(("netns", "del", ns))
                self._ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
                self._done.append(("link", "del", host_end))  # both ends, at once
                self._ip("link", "set", ns_end, "netns", ns)
                self._ip("link", "set", host_end, "master", self.bridge, "up")
                self._ip("addr", "add", f"{self.hosts[role]}/24", "dev", ns_end, ns=ns)
                self._ip("link", "set", ns_end, "up", ns=ns)
                self._ip("link", "set", "lo", "up", ns=ns)
        except (OSError, subprocess.SubprocessError) as exc:
            self.down()
            raise OSError(str(exc)) from None

    def down(self):
        for args in reversed(self._done):  # a namespace's veth goes with it
            try:
                self._ip(*args)
            except OSError:
                pass
        self._done.clear()

    def wrap(self, role, argv):
        """`argv` run inside `role`'s namespace (`ip netns exec` execs it: same pid)."""
        return ["ip", "netns", "exec", self.names[role], *map(str, argv)]


class Cluster:
    def __init__(self, base: Path, bus: str, gateway_binary: Path, cpp_worker: Path,
                 net: Optional[Namespaces] = None):
        self.base, self.bus, self.cpp_worker = base, bus, cpp_worker
        self.gateway_binary = gateway_binary
        self.net = net
        self.procs: list[Proc] = []
        self.redis = None
        self.redis_port = free_port() if bus == "redis" else None
        names = ("gw1", "gw2")
        self.gw_ports = {n: free_port() for n in names}
        self.admin_ports = {n: free_port() for n in names}
        self.bus_ports = {n: free_port() for n in names}
        self.gateways: dict[str, Proc] = {}
        self.workers: dict[str, Proc] = {}
        self.serial = 0
        self.port, self.stats_port = free_port(), free_port()
        self.haproxy = None
        self.curve = self._keys() if net is not None and bus == "zmq" else None

    # --- addresses and keys ---------------------------------------------------------------

    def host(self, role):
        """Where `role` ("gw", "wk", "rd") listens: loopback, or its namespace's address."""
        return self.net.hosts[role] if self.net else "127.0.0.1"

    def _keys(self):
        """CURVE: a gateway pair (both gateways) and a worker pair on their allow-list."""
        keys = self.base / "keys"
        (keys / "authorized").mkdir(parents=True)
        for name in ("gateway", "authorized/worker"):
            subprocess.run([self.gateway_binary, "keygen", keys / name], check=True,
                           capture_output=True, timeout=30)
        return {"gateway": ["--bus-secret-key", keys / "gateway.key_secret",
                            "--bus-authorized-keys", keys / "authorized"],
                "worker": ["--bus-server-key", keys / "gateway.key",
                           "--bus-secret-key", keys / "authorized" / "worker.key_secret"]}

    def curve_args(self, side):
        return list(map(str, self.curve[side])) if self.curve else []

    def redis_url(self):
        # Off loopback Redis takes a password (an ACL user in deploy/cluster-redis.yml).
        auth = ":cluster-test@" if self.net else ""
        return f"redis://{auth}{self.host('rd')}:{self.redis_port}/0"

    def gateway_bus(self, name):
        if self.bus == "redis":
            return self.redis_url()
        return f"zmq://{self.host('gw')}:{self.bus_ports[name]}"

    def worker_buses(self):
        if self.bus == "redis":
            return [self.redis_url()]
        return [self.gateway_bus(name) for name in self.gw_ports]

    # --- processes -------------------------------------------------------------------

    def _start(self, role, name, argv, env=None):
        if self.net is not None and role != "root":
            argv = self.net.wrap(role, argv)
        proc = Proc(name, argv, self.base / f"{name}.log", env=env)
        self.procs.append(proc)
        return proc

    def start_redis(self):
        self.serial += 1
        password = ["--requirepass", "cluster-test"] if self.net else []
        self.redis = self._start("rd", f"redis-{self.serial}", [
            "redis-server", "--port", self.redis_port, "--bind", self.host("rd"), "--save", "",
            "--appendonly", "no", "--dir", self.base, *password])
        wait_until(lambda: port_open(self.redis_port, self.host("rd")), 10,
                   "redis-server to listen")

    def start_gateway(self, name):
        self.serial += 1  # a restarted gateway logs to a new file
        host = self.host("gw")
        gw = self._start("gw", f"{name}-{self.serial}", [
            self.gateway_binary, "--bind", f"{host}:{self.gw_ports[name]}",
            "--bus", self.gateway_bus(name), *self.curve_args("gateway"),
            "--admin", f"{host}:{self.admin_ports[name]}", "--log-level", "info",
            "--heartbeat-interval", HEARTBEAT, "--drain-delay", DRAIN_DELAY,
            "--drain-timeout", DRAIN_TIMEOUT, "--dispatch-timeout", "10"])
        self.gateways[name] = gw
        wait_until(lambda: port_open(self.gw_ports[name], host), 10, f"{name} to listen")
        return gw

    def start_worker(self, kind):
        """A Python ("py") or C++ ("cpp") worker; its name is kind + a serial number."""
        self.serial += 1
        name = f"{kind}{self.serial}"
        options = [*(a for url in self.worker_buses() for a in ("--bus", url)),
                   *self.curve_args("worker"), "--heartbeat-interval", HEARTBEAT,
                   "--graceful-timeout", GRACEFUL, "--log-level", "info"]
        if kind == "py":
            env = dict(os.environ, PYTHONPATH=str(WORKER_PATH), PYTHONUNBUFFERED="1")
            argv = [sys.executable, "-m", "asgi_bridge", "cluster_app:app", "--app-dir", HERE,
                    *options]
        else:
            env, argv = None, [self.cpp_worker, *options]
        self.workers[name] = self._start("wk", name, argv, env)
        return name

    def start_haproxy(self):
        servers = "\n".join(
            f"    server {n} {self.host('gw')}:{self.gw_ports[n]} check port {self.admin_ports[n]}"
            for n in self.gw_ports)
        cfg = self.base / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=self.port, stats_port=self.stats_port,
                                          servers=servers))
        self.haproxy = self._start("root", "haproxy", [shutil.which("haproxy"), "-db", "-f", cfg])
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
            body = get_body(self.host("gw"), self.admin_ports[gateway], "/metrics")
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
        return any(get_body("127.0.0.1", self.port, "/who") == f"ok {pid}".encode()
                   for _ in range(attempts))

    def in_rotation(self) -> set[str]:
        try:
            body = get_body("127.0.0.1", self.stats_port, "/stats;csv")
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



def require_haproxy():
    if shutil.which("haproxy") is None:
        raise HarnessError("haproxy not found: scripts/install-deps installs it")
