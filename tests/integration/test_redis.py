"""The Redis bus (docs/redis.md) end to end: real gateways, real Python workers, a real
redis-server of the test's own (free port, no persistence).

- WebSocket behaviour that must not depend on the bus, over ZeroMQ and Redis;
- a Redis restart under load: connections in flight fail as the contract says (502,
  abort, 1011; nothing hangs), new ones wait for it up to the dispatch timeout (served if
  it is back by then, else 503), and service comes back without restarting the gateway or
  the workers;
- two gateways and two workers sharing one Redis: every client gets its own answer from
  its own gateway, under many concurrent requests and WebSockets;
- authentication: ``requirepass`` and an ACL user work; a wrong password is a start-up
  error naming the failure, exit status 1, for the gateway and the worker alike.
"""

from __future__ import annotations

import asyncio
import http.client
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack
import pytest
import redis
import websockets

from .harness import (Background, Bridge, Gateway, HarnessError, Proc, RawConnection, Worker,
                      free_port, request, wait_for_log, wait_until)

APP = "ws_app:app"
HEARTBEAT = "0.5"  # seconds, gateway and workers alike: a loss shows within 1.5 s


class RedisServer:
    """A private redis-server that a test may kill and start again on the same port."""

    def __init__(self, directory: Path, *args: str):
        if shutil.which("redis-server") is None:
            raise HarnessError("redis-server not found: scripts/install-deps installs it")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.args = args
        self.starts = 0
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.proc = Proc(f"redis-server{self.starts}",
                         ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                          *self.args],
                         self.dir / f"redis{self.starts}.log")

        def listening():
            if not self.proc.alive():
                raise HarnessError(f"redis-server exited: {self.proc.log(20)}")
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as r:
                    r.ping()
                return True
            except redis.AuthenticationError:
                return True  # up, and asking for a password
            except redis.ConnectionError:
                return False
        wait_until(listening, 10, "redis-server to answer")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.close()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()

    def url(self, credentials: str = "") -> str:
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, **kwargs)


@pytest.fixture
def redis_env(tmp_path):
    """(server factory, bridge factory): everything started is stopped at the end."""
    servers: list[RedisServer] = []
    bridges: list[Bridge] = []

    def server(*args: str) -> RedisServer:
        servers.append(RedisServer(tmp_path / f"redis{len(servers) + 1}", *args))
        return servers[-1]

    def bridge(url: str, workers: int = 1, gateway_args=(), worker_args=()) -> Bridge:
        b = Bridge(url, tmp_path / f"bridge{len(bridges) + 1}", APP,
                   gateway_args=["--heartbeat-interval", HEARTBEAT, *gateway_args],
                   worker_args=["--heartbeat-interval", HEARTBEAT, "--graceful-timeout", "1",
                                *worker_args])
        bridges.append(b)
        b.start_gateway()
        for _ in range(workers):
            b.start_worker()
        return b

    yield server, bridge
    for b in reversed(bridges):
        b.close()
    for s in servers:
        s.close()


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_url(port: int, path: str) -> str:
    return f"ws://127.0.0.1:{port}{path}"


def echo(port: int, token: str, timeout: float = 10.0):
    """POST /echo with a body of its own; (status, body, worker pid)."""
    r = request(port, "POST", f"/echo?id={token}", body=token.encode(), timeout=timeout)
    return r.status, r.body, r.header("x-worker-pid")


# -- WebSocket over both buses ------------------------------------------------------------------


@pytest.mark.every_bus
def test_websocket_echo_subprotocol_and_close_codes(bridge_factory):
    b = bridge_factory(APP)

    async def main():
        async with websockets.connect(ws_url(b.port, "/ws?id=a"), subprotocols=["chat"],
                                      max_size=None) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            big = b"z" * (3 * 1024 * 1024)  # several byte windows and credits
            await ws.send(big)
            assert await ws.recv() == big
            for i in range(200):  # more events than the gateway's window of 16
                await ws.send(f"m{i}")
            assert [await ws.recv() for _ in range(200)] == [f"m{i}" for i in range(200)]
            await ws.send("close:4001")
            await ws.wait_closed()
            assert ws.close_code == 4001
        async with websockets.connect(ws_url(b.port, "/ws?id=b")) as ws:
            await ws.close(code=4002, reason="bye")
    run(main())
    b.state.wait_for("ws-b", contains="disconnect 4002")


@pytest.mark.every_bus
def test_websocket_refused_before_accept_gives_403(bridge_factory):
    b = bridge_factory(APP)

    async def main():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(ws_url(b.port, "/ws-refuse")):
                pass
        assert info.value.status_code == 403
    run(main())


@pytest.mark.every_bus
def test_websocket_worker_killed_after_accept_closes_1011(bridge_factory):
    b = bridge_factory(APP)

    async def main():
        async with websockets.connect(ws_url(b.port, "/ws-hang?id=k")) as ws:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: b.state.wait_for("started-k"))
            b.workers[0].kill()
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1011
    run(main())


# -- a client that leaves before any worker took its connection ---------------------------------


@pytest.mark.every_bus
def test_request_whose_client_left_while_waiting_never_reaches_the_app(bridge_factory):
    b = bridge_factory(APP, worker_args=["--concurrency", "1"])
    busy = threading.Thread(target=request, args=(b.port, "GET", "/slow?t=1.5&id=busy"),
                            kwargs={"timeout": 20})
    busy.start()
    b.state.wait_for("started-busy")
    with RawConnection(b.port) as c:  # waits: the only worker is busy
        c.send(b"GET /status?code=201 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
    busy.join(20)
    assert request(b.port, "GET", "/status?code=202").status == 202  # the worker is free
    log = b.state.read("requests.log") or ""
    assert "GET /status" in log and log.count("GET /status") == 1, log  # only the 202


def test_a_claim_after_the_client_left_gets_its_disconnect(redis_env):
    """A worker popped the connection, then the client left, then its claim arrives."""
    server, bridge = redis_env
    srv = server()
    b = bridge(srv.url(), workers=0)
    db = srv.client()
    with RawConnection(b.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf.")
        popped = db.blpop(["asgi:{new}"], timeout=10)  # we are the worker now
        assert popped is not None, "no first event on the shared queue"
    first = msgpack.unpackb(popped[1], raw=False)
    assert first["event"]["type"] == "http.request" and first["s"] == 0
    gateway, conn = first["g"], first["c"]
    time.sleep(0.5)  # the gateway saw the client leave, before any claim
    db.rpush(f"asgi:{{gw:{gateway}}}", msgpack.packb(
        {"v": 1, "k": "credit", "g": gateway, "w": "wk-fake", "c": conn, "events": 0}))
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline:
        reply = db.blpop(["asgi:{wk:wk-fake}"], timeout=1)
        if reply is None:
            continue
        msg = msgpack.unpackb(reply[1], raw=False)
        seen.append(msg)
        if msg["k"] == "event" and msg["c"] == conn:
            assert msg["event"]["type"] == "http.disconnect", seen
            assert msg["s"] == 1, seen
            break
    else:
        raise AssertionError(f"the claimer never heard of the disconnect: {seen}")


# -- Redis restart under load --------------------------------------------------------------------


class Load:
    """Threads sending /echo requests in a loop until stopped; every outcome recorded."""

    def __init__(self, port: int, threads: int = 6):
        self.port = port
        self.stop = threading.Event()
        self.results: list[tuple[float, float, object]] = []  # (start, duration, status)
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            token = f"load{n}-{i}"
            started = time.monotonic()
            try:
                status, body, _ = echo(self.port, token, timeout=20)
                outcome = status if status != 200 or body == token.encode() else "wrong body"
            except (OSError, http.client.HTTPException) as e:
                outcome = type(e).__name__
            with self._lock:
                self.results.append((started, time.monotonic() - started, outcome))
            if outcome != 200:
                time.sleep(0.02)

    def finish(self) -> list[tuple[float, float, object]]:
        self.stop.set()
        for t in self._threads:
            t.join(30)
            assert not t.is_alive(), "a load thread hangs"
        return self.results


def test_redis_restart_under_load(redis_env):
    server, bridge = redis_env
    srv = server()
    b = bridge(srv.url(), workers=2, gateway_args=["--dispatch-timeout", "2"])
    b.wait_ready()
    # wait_ready needs one worker; this test needs both connected before Redis goes
    # (a worker that starts while Redis is down exits at its start-up check).
    wait_until(lambda: all("serving up to" in w.log() for w in b.workers), 15,
               "both workers to be serving")
    gateway_pid, worker_pids = b.gateway.pid, [w.pid for w in b.workers]
    load = Load(b.port)
    wait_until(lambda: sum(1 for r in load.results if r[2] == 200) > 50, 20,
               "the load to be served")

    # Connections in flight when Redis goes: an answer not started, a response
    # started, an accepted WebSocket.
    outcomes: dict[str, object] = {}

    def not_started():
        try:
            outcomes["hang"] = request(b.port, "GET", "/hang?id=h", timeout=30).status
        except (OSError, http.client.HTTPException) as e:
            outcomes["hang"] = type(e).__name__

    def started():
        with RawConnection(b.port, timeout=30) as c:
            c.send(b"GET /start-then-hang?id=s HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            outcomes["started"] = (r.status, r.complete)

    async def websocket(ready: threading.Event):
        async with websockets.connect(ws_url(b.port, "/ws-hang?id=w")) as ws:
            ready.set()
            await asyncio.wait_for(ws.wait_closed(), 30)
            outcomes["ws"] = ws.close_code

    ws_ready = threading.Event()
    waiting = [threading.Thread(target=not_started), threading.Thread(target=started),
               threading.Thread(target=lambda: run(websocket(ws_ready)))]
    for t in waiting:
        t.start()
    for name in ("h", "s", "w"):
        b.state.wait_for(f"started-{name}")
    assert ws_ready.wait(10)

    killed = time.monotonic()
    srv.kill()
    for t in waiting:
        t.join(15)
        assert not t.is_alive(), f"a connection in flight hangs: {outcomes}"
    assert time.monotonic() - killed < 10
    assert outcomes == {"hang": 502, "started": (200, False), "ws": 1011}, outcomes

    # While Redis is down: a new request waits for it up to the dispatch timeout, then 503.
    r = request(b.port, "GET", "/", timeout=10)
    assert r.status == 503, r
    assert r.header("retry-after") is not None
    assert "the bus is unavailable; waiting for it" in b.gateway.log()

    srv.start()  # same port, empty: nothing survived
    back = time.monotonic()
    wait_until(lambda: any(start > back and status == 200
                           for start, _, status in list(load.results)), 15,
               "service to come back")
    time.sleep(1.0)
    results = load.finish()

    # Nothing hung, nothing was answered wrongly, every failure is one of the contract's.
    assert max(duration for _, duration, _ in results) < 10
    outcomes_seen = {status for _, _, status in results}
    assert outcomes_seen <= {200, 502, 503}, outcomes_seen
    assert all(status == 200 for start, _, status in results if start > back + 3.0)
    # Recovered by themselves: same processes, and both workers serve again.
    assert b.gateway.alive() and b.gateway.pid == gateway_pid
    assert [w.pid for w in b.workers if w.alive()] == worker_pids
    pids = {echo(b.port, f"after{i}")[2] for i in range(60)}
    assert pids == {str(p) for p in worker_pids}, pids
    for w in b.workers:
        assert w.log().count("Redis unavailable") == 1, w.log(30)


def test_request_made_while_redis_is_down_is_served_when_it_is_back(redis_env):
    server, bridge = redis_env
    srv = server()
    b = bridge(srv.url(), workers=1, gateway_args=["--dispatch-timeout", "30"])
    b.wait_ready()
    srv.kill()
    wait_for_log(b.gateway, "unavailable (")  # the gateway saw it go
    pending = Background(request, b.port, "GET", "/", timeout=40)
    wait_for_log(b.gateway, "the bus is unavailable; waiting for it")
    srv.start()
    r = pending.result(40)
    assert (r.status, r.body) == (200, b"hello"), r


# -- two gateways, two workers, one Redis ------------------------------------------------------


def test_two_gateways_and_two_workers_share_one_redis(redis_env):
    server, bridge = redis_env
    srv = server()
    one = bridge(srv.url(), workers=2)
    two = bridge(srv.url(), workers=0)  # served by the same two workers
    one.wait_ready()
    two.wait_ready()
    ports = [one.port, two.port]

    def call(i: int):
        port = ports[i % 2]
        token = f"gw{i % 2}-req{i}-" + "x" * (i % 7) * 1000
        return port, token, echo(port, token, timeout=20)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(600)))
    assert all(status == 200 and body == token.encode()
               for _, token, (status, body, _) in results), \
        [r for r in results if r[2][0] != 200 or r[2][1] != r[1].encode()][:5]
    for port in ports:
        pids = {pid for p, _, (_, _, pid) in results if p == port}
        assert pids == {str(w.pid) for w in one.workers}, (port, pids)

    async def chat(port: int, n: int):
        async with websockets.connect(ws_url(port, f"/ws?id=c{port}-{n}")) as ws:
            for i in range(30):
                await ws.send(f"{port}/{n}/{i}")
            return [await ws.recv() for _ in range(30)]

    async def many():
        sessions = [(port, n) for port in ports for n in range(20)]
        answers = await asyncio.gather(*(chat(port, n) for port, n in sessions))
        for (port, n), got in zip(sessions, answers):
            assert got == [f"{port}/{n}/{i}" for i in range(30)]
    run(many())
    # Each worker met both gateways; no gateway saw a message meant for another.
    for w in one.workers:
        assert w.log().count("gateway gw-") >= 2, w.log(40)
    for gw in (one.gateway, two.gateway):
        assert "unknown connection" not in gw.log(), gw.log(40)


# -- authentication ------------------------------------------------------------------------------


def wrong_credentials_fail_at_start(tmp_path: Path, url: str, gateway_words: list[str],
                                    worker_words: list[str]) -> None:
    logs = tmp_path / "refused"
    logs.mkdir(exist_ok=True)
    gw = Gateway(url, logs, name="refused-gateway")
    try:
        assert gw.wait(10) == 1, gw.log()
        line = gw.log()
        assert all(word in line for word in gateway_words), line
    finally:
        gw.close()
    worker = Worker(APP, url, logs, logs, name="refused-worker")
    try:
        assert worker.wait(20) == 1, worker.log()
        line = worker.log()
        assert all(word in line for word in worker_words), line
        assert "startup complete" not in line  # refused before lifespan
    finally:
        worker.close()


def test_requirepass(redis_env, tmp_path):
    server, bridge = redis_env
    srv = server("--requirepass", "s3cret")
    b = bridge(srv.url(":s3cret@"), workers=1)
    b.wait_ready()
    assert echo(b.port, "authenticated")[:2] == (200, b"authenticated")
    for proc in (b.gateway, *b.workers):  # the first line is the command line
        assert "s3cret" not in "\n".join(proc.log().splitlines()[1:]), proc.log()
    wrong_credentials_fail_at_start(tmp_path, srv.url(":wrong@"),
                                    ["AUTH", "WRONGPASS"],
                                    ["authentication failed: WRONGPASS"])
    wrong_credentials_fail_at_start(tmp_path, srv.url(),
                                    ["NOAUTH"], ["authentication failed"])


def test_acl_user(redis_env, tmp_path):
    server, bridge = redis_env
    srv = server()
    with srv.client() as admin:
        # Only what the bus needs: its lists, their expiry, the connection commands.
        admin.execute_command("ACL", "SETUSER", "bridge", "on", ">pw", "~asgi:*",
                              "+@list", "+pexpire", "+@connection")
        admin.execute_command("ACL", "SETUSER", "default", "off")
    b = bridge(srv.url("bridge:pw@"), workers=1)
    b.wait_ready()
    assert echo(b.port, "acl-user")[:2] == (200, b"acl-user")
    # No pub/sub in this ACL: the gateway's broadcast subscription is refused, said once,
    # and not retried (hiredis drops the connection; retrying looped ten times a second).
    wait_for_log(b.gateway, "redis groups: subscription refused (NOPERM")
    assert echo(b.port, "after-refusal")[:2] == (200, b"after-refusal")
    log = b.gateway.log()
    assert log.count("subscription refused") == 1 and "unavailable (NOPERM" not in log, log

    async def ws():
        async with websockets.connect(ws_url(b.port, "/ws?id=acl")) as conn:
            await conn.send("over an ACL user")
            assert await conn.recv() == "over an ACL user"
    run(ws())
    wrong_credentials_fail_at_start(tmp_path, srv.url("bridge:nope@"),
                                    ["AUTH", "WRONGPASS"],
                                    ["authentication failed: WRONGPASS"])
