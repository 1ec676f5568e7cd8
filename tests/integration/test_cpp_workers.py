"""The C++ worker SDK's example workers (build/bin/asgi-bridge-example-*) behind
a real gateway, with real clients: http.client for HTTP, the ``websockets``
package (10.4, asyncio API) for WebSocket.

Covers what the SDK does on the bus side and only a real gateway shows:
credits both ways on large bodies and many messages, capacity, --threads,
several gateways, a gateway restart, SIGTERM drain, and a C++ and a Python
worker serving one gateway together.

Every test that takes the ``bus_url`` fixture runs over ZeroMQ and over
Redis (the module is marked ``every_bus``). The Redis tests at the end play
the gateway themselves (with redis-py) to check what docs/redis.md asks of a
worker: a claim at once, no ``ready``, no more connections taken than its
capacity, heartbeats only to gateways it has connections with.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import pytest
import websockets

from .harness import (Background, Bridge, BusUrl, Gateway, Proc, RawConnection, bus_args,
                      free_port, gateway_binary, request, wait_for_log, wait_until)

try:
    import redis
except ImportError:  # only the Redis tests need it
    redis = None

pytestmark = pytest.mark.every_bus


# -- helpers ---------------------------------------------------------------


def example_binary(name: str) -> Path:
    """build/bin/asgi-bridge-example-NAME, next to the gateway executable."""
    path = gateway_binary().parent / f"asgi-bridge-example-{name}"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"C++ example worker not found at {path}: build it with "
                    "`cmake --build build --target asgi-bridge-example-{name}`",
                    pytrace=False)
    return path


def start_cpp_worker(bridge: Bridge, name: str, *args: str,
                     bus_urls: tuple[str, ...] = ()) -> Proc:
    """An example worker on the bridge's bus (or on bus_urls), closed with it."""
    index = sum(1 for p in bridge.procs if p.name.startswith("cpp-")) + 1
    argv = [example_binary(name)]
    for url in bus_urls or (bridge.bus_url,):
        argv += ["--bus", url]
    argv += ["--log-level", "debug", *bus_args(bridge.bus_url, "worker"), *args]
    proc = Proc(f"cpp-{name}{index}", argv, bridge.log_dir / f"cpp-{name}{index}.log")
    bridge.procs.append(proc)
    return proc


def is_redis(bus_url: str) -> bool:
    return bus_url.startswith(("redis://", "rediss://"))


def second_gateway_bus(bridge: Bridge) -> str:
    """The bus URL of a second gateway: ZeroMQ needs one URL (one bound
    socket) per gateway, with the same keys on a CURVE bus; on Redis every
    gateway shares the server."""
    if is_redis(bridge.bus_url):
        return bridge.bus_url
    return BusUrl(f"zmq://127.0.0.1:{free_port()}", bus_args(bridge.bus_url, "gateway"),
                  bus_args(bridge.bus_url, "worker"))


@pytest.fixture
def cpp_bridge(bridge_factory, bus_url):
    """start(example, *worker_args, gateway_args=()) -> (bridge, worker):
    a gateway and one C++ example worker, served and ready."""

    def start(name: str, *args: str, gateway_args=(), ready_path="/__ready"):
        bridge = bridge_factory(None, workers=0, gateway_args=gateway_args)
        worker = start_cpp_worker(bridge, name, *args)
        bridge.wait_ready(ready_path)
        assert worker.alive(), worker.log()
        return bridge, worker
    return start


def ws_url(bridge: Bridge, path: str) -> str:
    return f"ws://127.0.0.1:{bridge.port}{path}"


def run(coro, timeout: float = 30.0):
    """Runs one asyncio test body, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wait_until_both_serve(bridge: Bridge, *workers: Proc) -> None:
    """Until every one of these workers is on the bus: ZeroMQ, the gateway
    heard its ready; Redis, it waits on the shared queue."""
    if is_redis(bridge.bus_url):
        for w in workers:
            wait_for_log(w, "redis shared queue: connected")
    else:
        wait_for_log(bridge.gateway, "joined", more_than=len(workers) - 1)
    bridge.wait_ready()


def taken(worker: Proc) -> int:
    """How many connections the worker has taken so far (from its debug log)."""
    return len(re.findall(r": new (?:http|websocket) connection", worker.log()))


# -- HTTP ------------------------------------------------------------------


def test_hello(cpp_bridge):
    b, _ = cpp_bridge("hello")
    r = request(b.port, "GET", "/anything?x=1")
    assert (r.status, r.body) == (200, b"Hello, world!")
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert r.header("content-length") == "13"


def test_hello_keep_alive_many_requests(cpp_bridge):
    b, _ = cpp_bridge("hello")
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    try:
        for _ in range(50):
            conn.request("GET", "/")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"Hello, world!")
    finally:
        conn.close()


def test_echo_small_body_and_content_type(cpp_bridge):
    b, _ = cpp_bridge("echo")
    r = request(b.port, "POST", "/echo", body=b"some body",
                headers={"Content-Type": "application/x-test"})
    assert (r.status, r.body) == (200, b"some body")
    assert r.header("content-type") == "application/x-test"
    r = request(b.port, "GET", "/")
    assert (r.status, r.body) == (200, b"")


def test_echo_large_body_uses_credits_both_ways(cpp_bridge):
    # 5 MB in: far more than 16 request events, so the worker must credit
    # them; 5 MB out: five byte windows, so the gateway must credit back.
    b, _ = cpp_bridge("echo")
    body = os.urandom(5 * 1024 * 1024)
    r = request(b.port, "POST", "/", body=body, timeout=30)
    assert r.status == 200
    assert len(r.body) == len(body)
    assert r.body == body


def test_echo_chunked_request_body(cpp_bridge):
    b, _ = cpp_bridge("echo")
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    try:
        chunks = [b"x" * 1000, b"y" * 70000, b"z"]
        conn.request("POST", "/", body=iter(chunks), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"".join(chunks))
    finally:
        conn.close()


def test_threads_serve_concurrent_requests(cpp_bridge):
    b, _ = cpp_bridge("echo", "--threads", "3", "--concurrency", "50")
    calls = [Background(request, b.port, "POST", f"/{i}", body=(b"%d" % i) * 5000,
                        timeout=20) for i in range(30)]
    for i, call in enumerate(calls):
        r = call.result()
        assert (r.status, r.body) == (200, (b"%d" % i) * 5000)


def test_capacity_is_announced_and_honoured(cpp_bridge):
    # --concurrency 1: while one request holds the slot (its body is not all
    # in), the gateway keeps the next one waiting; it is served afterwards.
    b, worker = cpp_bridge("echo", "--concurrency", "1",
                           gateway_args=["--dispatch-timeout", "20"])
    with RawConnection(b.port) as first:
        before = taken(worker)
        first.send(b"POST /first HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        wait_until(lambda: taken(worker) > before, 10, "the worker to take the first request")
        second = Background(request, b.port, "POST", "/second", body=b"two", timeout=30)
        time.sleep(1.0)
        assert second.finished_at is None, "the second request overtook a full worker"
        first.send(b"56789")
        r = first.read_response()
        assert (r.status, r.body) == (200, b"0123456789")
    r = second.result()
    assert (r.status, r.body) == (200, b"two")


# -- WebSocket -------------------------------------------------------------


def test_websocket_echo_text_bytes_and_many_messages(cpp_bridge):
    b, _ = cpp_bridge("echo")

    async def body():
        async with websockets.connect(ws_url(b, "/ws"), max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\xffbinary")
            assert await ws.recv() == b"\x00\xffbinary"
            # More than the gateway's 16-event window: the worker's credits
            # must keep the gateway reading.
            for i in range(200):
                await ws.send(f"message {i}")
            for i in range(200):
                assert await ws.recv() == f"message {i}"
            big = "é" * 1_500_000  # 3 MB of UTF-8: several byte windows
            await ws.send(big)
            assert await ws.recv() == big
    run(body())


def test_websockets_are_counted_apart_from_http_requests(cpp_bridge):
    """Open WebSockets count against --websocket-capacity, not --concurrency: with one
    HTTP slot, 5 open WebSockets leave HTTP served; the WebSocket past the limit gets 503."""
    b, _ = cpp_bridge("echo", "--concurrency", "1", "--websocket-capacity", "5",
                      gateway_args=["--dispatch-timeout", "1"])

    async def body():
        sockets = [await websockets.connect(ws_url(b, "/ws")) for _ in range(5)]
        try:
            for _ in range(3):
                r = await asyncio.to_thread(request, b.port, "POST", "/", body=b"served")
                assert (r.status, r.body) == (200, b"served")
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
                async with websockets.connect(ws_url(b, "/ws")):
                    pass
            assert info.value.status_code == 503
        finally:
            for ws in sockets:
                await ws.close()
    run(body())


def test_websocket_on_http_only_example_is_refused(cpp_bridge):
    b, _ = cpp_bridge("hello")

    async def body():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(ws_url(b, "/ws")):
                pass
        assert info.value.status_code == 403
    run(body())


def test_chat_broadcasts_within_a_room_only(cpp_bridge):
    b, _ = cpp_bridge("chat")

    async def body():
        async with websockets.connect(ws_url(b, "/chat/a")) as a1, \
                websockets.connect(ws_url(b, "/chat/a")) as a2, \
                websockets.connect(ws_url(b, "/chat/b")) as b1:
            await a1.send("hi room a")
            assert await a1.recv() == "hi room a"  # the sender too
            assert await a2.recv() == "hi room a"
            await b1.send(b"bytes for b")
            assert await b1.recv() == b"bytes for b"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(a2.recv(), 0.5)  # nothing from room b
            await a2.close()
            await a1.send("after a2 left")
            assert await a1.recv() == "after a2 left"
    run(body())


def test_chat_rooms_span_app_threads(cpp_bridge):
    # Connections are spread over the 4 app threads; a broadcast reaches
    # members on every thread.
    b, _ = cpp_bridge("chat", "--threads", "4")

    async def body():
        members = [await websockets.connect(ws_url(b, "/chat/big")) for _ in range(9)]
        try:
            await members[0].send("to everyone")
            for m in members:
                assert await asyncio.wait_for(m.recv(), 10) == "to everyone"
            await members[5].send("again")
            for m in members:
                assert await asyncio.wait_for(m.recv(), 10) == "again"
        finally:
            for m in members:
                await m.close()
    run(body())


def test_chat_refuses_other_paths_and_answers_http_404(cpp_bridge):
    b, _ = cpp_bridge("chat")

    async def body():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(ws_url(b, "/elsewhere")):
                pass
        assert info.value.status_code == 403
    run(body())
    r = request(b.port, "GET", "/chat/a")
    assert r.status == 404


# -- C++ and Python workers together -----------------------------------------


def test_cpp_and_python_workers_serve_one_gateway(bridge_factory, bus_url):
    b = bridge_factory("basic_app:app", workers=1)  # a Python worker, ready
    cpp = start_cpp_worker(b, "hello")
    if is_redis(bus_url):
        # Both pop the shared queue; Redis serves the longest-blocked first.
        wait_for_log(cpp, "redis shared queue: connected")
    else:
        wait_for_log(b.gateway, "joined", more_than=1)  # the Python worker, then ours
    # ZeroMQ: equal load goes to the worker assigned longest ago, so
    # sequential requests alternate. Redis: whoever is waiting on the queue.
    bodies = set()
    for _ in range(20):
        r = request(b.port, "GET", "/")
        assert r.status == 200
        bodies.add(r.body)
    assert bodies == {b"hello", b"Hello, world!"}, bodies
    assert cpp.alive() and b.workers[0].alive()


# -- gateways ----------------------------------------------------------------


def test_one_worker_serves_two_gateways(bridge_factory, bus_url):
    # ZeroMQ: one --bus per gateway; Redis: one --bus for both.
    b = bridge_factory(None, workers=0)
    other_bus = second_gateway_bus(b)
    gw2 = Gateway(other_bus, b.log_dir, name="gateway2")
    b.procs.insert(0, gw2)  # closed after the workers
    gw2.wait_listening()
    start_cpp_worker(b, "hello", bus_urls=tuple(dict.fromkeys((b.bus_url, other_bus))))
    b.wait_ready()
    for port in (b.port, gw2.port):
        wait_until(lambda: request(port, "GET", "/").status == 200, 10,
                   f"gateway on {port} to be served")
        r = request(port, "GET", "/")
        assert (r.status, r.body) == (200, b"Hello, world!")


def test_chat_room_spans_gateways_served_by_one_worker(bridge_factory, bus_url):
    # Rooms live in the worker process: members that came in through
    # different gateways share a room when one worker serves both gateways.
    b = bridge_factory(None, workers=0)
    other_bus = second_gateway_bus(b)
    gw2 = Gateway(other_bus, b.log_dir, name="gateway2")
    b.procs.insert(0, gw2)
    gw2.wait_listening()
    start_cpp_worker(b, "chat", bus_urls=tuple(dict.fromkeys((b.bus_url, other_bus))))
    b.wait_ready()
    wait_until(lambda: request(gw2.port, "GET", "/").status == 404, 10,
               "the second gateway to be served")

    async def body():
        async with websockets.connect(f"ws://127.0.0.1:{b.port}/chat/r") as one, \
                websockets.connect(f"ws://127.0.0.1:{gw2.port}/chat/r") as two:
            await two.send("across gateways")
            assert await one.recv() == "across gateways"
            assert await two.recv() == "across gateways"
    run(body())


def test_worker_outlives_its_gateway_and_meets_the_next(cpp_bridge):
    # Heartbeats every 0.3 s on both sides (they must agree): a dead gateway
    # is noticed within about a second.
    b, worker = cpp_bridge("echo", "--heartbeat-interval", "0.3",
                           gateway_args=["--heartbeat-interval", "0.3"])

    async def body():
        async with websockets.connect(ws_url(b, "/ws")) as ws:
            await ws.send("up")
            assert await ws.recv() == "up"
            # The gateway dies with the WebSocket open: the worker ends that
            # connection (its app sees a disconnect) once the gateway is silent.
            b.gateway.kill()
            await asyncio.to_thread(wait_for_log, worker, "silent for 3 heartbeat intervals")
    run(body())
    assert "ending its 1 connection(s)" in worker.log()
    new = Gateway(b.bus_url, b.log_dir, args=["--heartbeat-interval", "0.3"], name="gateway-new")
    b.procs.insert(0, new)
    new.wait_listening()
    wait_until(lambda: request(new.port, "POST", "/", body=b"again").status == 200,
               15, "the new gateway to be served by the old worker")
    r = request(new.port, "POST", "/", body=b"again")
    assert (r.status, r.body) == (200, b"again")
    assert worker.alive()


def test_gateway_bye_is_heard_and_the_worker_stays(cpp_bridge, bus_url):
    b, worker = cpp_bridge("hello")
    b.gateway.signal(signal.SIGTERM)
    assert b.gateway.wait(15) == 0
    wait_for_log(worker, "said bye")
    new = Gateway(b.bus_url, b.log_dir, name="gateway-new")
    b.procs.insert(0, new)
    new.wait_listening()
    wait_until(lambda: request(new.port, "GET", "/").status == 200, 15,
               "the new gateway to be served by the same worker")
    assert worker.alive()


# -- signals -------------------------------------------------------------------


def test_sigterm_finishes_in_flight_request_then_exits_0(cpp_bridge):
    b, worker = cpp_bridge("echo")
    with RawConnection(b.port) as c:
        before = taken(worker)
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        wait_until(lambda: taken(worker) > before, 10, "the worker to take the request")
        time.sleep(0.2)  # the first body event reaches the worker
        worker.signal(signal.SIGTERM)
        wait_for_log(worker, "draining")
        c.send(b"56789")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"0123456789")
    assert worker.wait(10) == 0
    log = worker.log()
    assert "waiting for 1 connection(s)" in log
    assert "bye" in log


def test_sigterm_graceful_timeout_closes_websocket_1012(cpp_bridge):
    b, worker = cpp_bridge("echo", "--graceful-timeout", "0.5")

    async def body():
        async with websockets.connect(ws_url(b, "/ws")) as ws:
            await ws.send("up")
            assert await ws.recv() == "up"
            worker.signal(signal.SIGTERM)
            with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd.code == 1012  # service restart
    run(body())
    assert worker.wait(10) == 0


def test_idle_worker_sigint_exits_0_and_gateway_forgets_it(cpp_bridge):
    b, worker = cpp_bridge("hello")
    worker.signal(signal.SIGINT)
    assert worker.wait(5) == 0
    wait_for_log(b.gateway, " left", timeout=5)  # "worker X left": it said bye


def test_sigterm_under_load_loses_no_request(bridge_factory, bus_url):
    # Two workers, requests back to back; one drains and leaves. ZeroMQ: the
    # gateway stops choosing it. Redis: it stops popping at once (its pending
    # pop is cut short), so no new connection reaches it as it leaves.
    b = bridge_factory(None, workers=0)
    leaving = start_cpp_worker(b, "hello")
    staying = start_cpp_worker(b, "hello")
    wait_until_both_serve(b, leaving, staying)
    statuses = []
    stop_at = time.monotonic() + 3.0

    def load():
        while time.monotonic() < stop_at:
            statuses.append(request(b.port, "GET", "/", timeout=10).status)
    clients = [Background(load) for _ in range(3)]
    time.sleep(0.8)
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(10) == 0
    for client in clients:
        client.result(20)
    assert statuses and set(statuses) == {200}, statuses
    assert staying.alive()
    r = request(b.port, "GET", "/")
    assert (r.status, r.body) == (200, b"Hello, world!")


def test_signal_storm_while_draining_interrupts_nothing(cpp_bridge):
    # A signal that lands while libzmq polls its command pipe makes the call
    # fail with EINTR, which cppzmq throws: the worker's bus loop runs on the
    # main thread, the one the kernel picks for a process signal. A draining
    # worker still serves its WebSockets; a storm of SIGTERMs must not end it.
    b, worker = cpp_bridge("echo", "--graceful-timeout", "30")

    async def chat(ws, stop_at):
        sent = 0
        while time.monotonic() < stop_at:
            await ws.send(f"m{sent}")
            assert await ws.recv() == f"m{sent}"
            sent += 1
        return sent

    async def body():
        sockets = [await websockets.connect(ws_url(b, "/ws")) for _ in range(4)]
        stop_at = time.monotonic() + 2.5
        chats = [asyncio.create_task(chat(ws, stop_at)) for ws in sockets]
        for _ in range(300):
            worker.signal(signal.SIGTERM)
            await asyncio.sleep(0.005)
        counts = await asyncio.gather(*chats)
        for ws in sockets:
            await ws.close()
        return counts
    counts = run(body())
    assert min(counts) > 0, counts
    assert worker.wait(10) == 0
    assert "already stopping" in worker.log()


# -- command line --------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["--bus", "zmq://127.0.0.1:1", "--concurrency", "0"],
                                  ["--bus", "zmq://127.0.0.1:1", "--websocket-capacity", "0"],
                                  # negative numbers (CLI11 reads some into an unsigned wrapped)
                                  ["--bus", "zmq://127.0.0.1:1", "--concurrency", "-4294967295"],
                                  ["--bus", "zmq://127.0.0.1:1", "--threads", "-1"],
                                  ["--bus", "zmq://127.0.0.1:1", "--graceful-timeout", "-1"],
                                  ["--bus", "zmq://127.0.0.1:1", "--graceful-timeout", "nan"],
                                  ["--bus", "zmq://127.0.0.1:1", "--heartbeat-interval", "inf"],
                                  ["--bus", "http://nope"], ["--bus", "zmq://127.0.0.1:1", "--nope"],
                                  ["--bus", "redis://127.0.0.1:notaport/0"]])
def test_bad_command_line_exits_2(args):
    result = subprocess.run([str(example_binary("hello")), *args], capture_output=True,
                            timeout=10)
    assert result.returncode == 2, result


def test_help_exits_0():
    result = subprocess.run([str(example_binary("echo")), "--help"], capture_output=True,
                            timeout=10, text=True)
    assert result.returncode == 0
    for option in ("--bus", "--bus-prefix", "--concurrency", "--threads", "--log-level"):
        assert option in result.stdout


def test_unreachable_redis_exits_1_naming_it():
    port = free_port()
    result = subprocess.run([str(example_binary("hello")), "--bus", f"redis://127.0.0.1:{port}/0"],
                            capture_output=True, timeout=10, text=True)
    assert result.returncode == 1, result
    assert f"redis 127.0.0.1:{port}" in result.stderr


# -- Redis: the worker's side of docs/redis.md -----------------------------------


@pytest.fixture
def redis_bus(bus_url):
    if not bus_url.startswith("redis://"):  # its fake gateway speaks plain redis-py
        pytest.skip("a plain Redis bus test")
    if redis is None:
        pytest.fail("the Redis tests need redis-py (python3-redis)", pytrace=False)
    return bus_url


class FakeGateway:
    """Plays one gateway on a Redis bus, with redis-py: pushes first events
    to P:{new} (HTTP) or P:{new}:ws (WebSocket) and later ones to P:{wk:ID},
    reads its own queue P:{gw:ID}."""

    def __init__(self, bus_url: str, gateway_id: str = "gw-fake", prefix: str = "asgi"):
        self.r = redis.Redis.from_url(bus_url)
        self.id = gateway_id
        self.prefix = prefix
        self._beating = threading.Event()

    def heartbeat(self, worker_id: str, interval: float = 0.2) -> None:
        """From now on, heartbeats to that worker (until close()), as a real
        gateway does to the workers it knows: a silent gateway is dead."""
        def beat():
            while not self._beating.wait(interval):
                self._push(f"{{wk:{worker_id}}}", {"v": 1, "k": "heartbeat", "g": self.id})
        threading.Thread(target=beat, daemon=True).start()

    def close(self) -> None:
        self._beating.set()

    def first_http(self, conn: int, body: bytes = b"", features: int = 0) -> None:
        message = {"v": 1, "k": "event", "g": self.id, "c": conn, "s": 0,
                   "scope": {"type": "http", "path": "/", "method": "POST"},
                   "event": {"type": "http.request", "body": body, "more_body": False}}
        if features:
            message["features"] = features  # docs/protocol.md §2.5
        self._push("{new}", message)

    def first_websocket(self, conn: int) -> None:
        self._push("{new}:ws", {"v": 1, "k": "event", "g": self.id, "c": conn, "s": 0,
                             "scope": {"type": "websocket", "path": "/ws"},
                             "event": {"type": "websocket.connect"}})

    def to_worker(self, worker_id: str, conn: int, seq: int, event: dict) -> None:
        self._push(f"{{wk:{worker_id}}}", {"v": 1, "k": "event", "g": self.id, "c": conn,
                                           "s": seq, "event": event})

    def _push(self, queue: str, message: dict) -> None:
        self.r.rpush(f"{self.prefix}:{queue}", msgpack.packb(message, use_bin_type=True))

    def pending_new(self, queue: str = "{new}") -> int:
        return self.r.llen(f"{self.prefix}:{queue}")

    def receive(self, seconds: float) -> list[tuple[float, dict]]:
        """Every message for this gateway within `seconds`, with arrival times."""
        out = []
        deadline = time.monotonic() + seconds
        key = f"{self.prefix}:{{gw:{self.id}}}"
        while time.monotonic() < deadline:
            item = self.r.blpop([key], timeout=0.05)  # redis-py 4: float timeouts
            if item is not None:
                out.append((time.monotonic(), msgpack.unpackb(item[1], raw=False)))
        return out

    def receive_until(self, predicate, timeout: float = 10.0) -> list[dict]:
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while not predicate(got):
            assert time.monotonic() < deadline, f"timed out; received {got!r}"
            got += [m for _, m in self.receive(0.1)]
        return got


@pytest.fixture
def lone_cpp_worker(redis_bus, tmp_path):
    """start(example, *args) -> Proc: a C++ worker on the Redis bus, with no
    gateway (the test plays it), waiting on the shared queue."""
    procs = []

    def start(name: str, *args: str) -> Proc:
        proc = Proc(f"cpp-{name}", [example_binary(name), "--bus", redis_bus,
                                    "--log-level", "debug", *args],
                    tmp_path / f"cpp-{name}{len(procs)}.log")
        procs.append(proc)
        wait_for_log(proc, "redis shared queue: connected")
        return proc
    yield start
    for proc in procs:
        proc.close()


def kinds(messages: list[dict]) -> list[str]:
    return [m["k"] if m["k"] != "event" else m["event"]["type"] for m in messages]


def test_redis_claim_at_once_no_ready_and_heartbeats_only_while_busy(redis_bus, lone_cpp_worker):
    worker = lone_cpp_worker("echo", "--heartbeat-interval", "0.2", "--concurrency", "4")
    gw = FakeGateway(redis_bus)
    time.sleep(0.6)
    # No `ready` on Redis, and nobody to heartbeat: nothing was sent.
    assert gw.r.keys("asgi:{gw:*") == []
    gw.first_http(1, b"ping")
    got = gw.receive_until(lambda ms: "http.response.body" in kinds(ms))
    worker_id = got[0]["w"]
    gw.heartbeat(worker_id)  # the gateway stays alive for the worker throughout
    # The claim comes first, before any event of the app.
    assert got[0] == {"v": 1, "k": "credit", "g": "gw-fake", "w": worker_id, "c": 1, "events": 0}
    events = [m for m in got if m["k"] == "event"]
    assert [(m["s"], m["event"]["type"]) for m in events] == [
        (0, "http.response.start"), (1, "http.response.body")]
    assert events[1]["event"]["body"] == b"ping"
    # Heartbeats go on for 3 intervals (0.6 s) after the connection ended,
    # then stop although the gateway is alive: ticks at 0.2, 0.4 and 0.6 s.
    ended = time.monotonic()
    later = gw.receive(2.5)
    gw.close()
    assert {m["k"] for _, m in later} == {"heartbeat"}, later
    assert 2 <= len(later) <= 4, later
    assert all(m == {"v": 1, "k": "heartbeat", "w": worker_id, "capacity": 4, "active": 0,
                     "ws_capacity": 10000} for _, m in later), later
    assert max(t for t, _ in later) - ended < 1.2, "heartbeats went on after 3 intervals"
    assert worker.alive()
    assert "silent" not in worker.log()


def test_redis_start_carries_the_body_where_the_gateway_offers_it(redis_bus, lone_cpp_worker):
    """docs/protocol.md §2.5: to a gateway that offers feature bit 1 the whole response is one
    message, a start with its body; to one that does not (a gateway before the bit), a start
    and a body, as before."""
    lone_cpp_worker("echo")
    gw = FakeGateway(redis_bus)
    gw.first_http(1, b"one message", features=1)
    gw.first_http(2, b"two messages")
    got = gw.receive_until(lambda ms: "http.response.body" in kinds(ms) and
                           any(m.get("c") == 1 and m["k"] == "event" for m in ms))
    gw.close()
    events = {c: [m for m in got if m["k"] == "event" and m["c"] == c] for c in (1, 2)}
    assert [(m["s"], m["event"]["type"]) for m in events[1]] == [(0, "http.response.start")]
    assert (events[1][0]["event"]["body"], events[1][0]["event"]["more_body"]) == (b"one message", False)
    assert [(m["s"], m["event"]["type"]) for m in events[2]] == [
        (0, "http.response.start"), (1, "http.response.body")]
    assert "body" not in events[2][0]["event"]
    assert events[2][1]["event"]["body"] == b"two messages"


def test_redis_body_pieces_are_a_quarter_window_where_the_gateway_takes_them(redis_bus, lone_cpp_worker):
    """docs/protocol.md §5: to a gateway that offers feature bit 2, a 200 KiB echo is one
    message (a piece is a quarter of the default 1 MiB window); to one that does not, a start
    with the first 60 KiB and body events of 60, 60 and 20 KiB."""
    lone_cpp_worker("echo")
    gw = FakeGateway(redis_bus)
    data = bytes(range(256)) * 800  # 200 KiB
    gw.first_http(1, data, features=3)
    gw.first_http(2, data, features=1)

    def last_of(conn, ms):
        return any(m["k"] == "event" and m["c"] == conn and not m["event"].get("more_body", True)
                   for m in ms)
    got = gw.receive_until(lambda ms: last_of(1, ms) and last_of(2, ms))
    gw.close()
    events = {c: [m["event"] for m in got if m["k"] == "event" and m["c"] == c] for c in (1, 2)}
    assert [e["type"] for e in events[1]] == ["http.response.start"]
    assert (events[1][0]["body"], events[1][0]["more_body"]) == (data, False)
    assert [e["type"] for e in events[2]] == ["http.response.start"] + ["http.response.body"] * 3
    assert [len(e["body"]) for e in events[2]] == [60 * 1024] * 3 + [20 * 1024]
    assert [e["more_body"] for e in events[2]] == [True, True, True, False]
    assert b"".join(e["body"] for e in events[2]) == data


def test_redis_takes_no_more_connections_than_its_capacities(redis_bus, lone_cpp_worker):
    """No more WebSockets than --websocket-capacity; with those full, HTTP requests
    (--concurrency, counted apart) are still taken."""
    worker = lone_cpp_worker("echo", "--concurrency", "2", "--websocket-capacity", "2",
                             "--heartbeat-interval", "0.3")
    gw = FakeGateway(redis_bus)
    for conn in (1, 2, 3, 4):
        gw.first_websocket(conn)
    got = gw.receive_until(lambda ms: "credit" in kinds(ms))
    gw.heartbeat(got[0]["w"])  # else it ends our connections after 0.9 s
    got += gw.receive_until(lambda ms: kinds(got + ms).count("websocket.accept") == 2)
    got += [m for _, m in gw.receive(1.5)]
    claimed = [m["c"] for m in got if m["k"] == "credit"]
    assert sorted(claimed) == [1, 2], got
    assert gw.pending_new("{new}:ws") == 2
    assert {m["active"] for m in got if m["k"] == "heartbeat"} == {2}
    gw.first_http(9, b"still served")
    got += gw.receive_until(lambda ms: "http.response.body" in kinds(ms))
    assert [m["event"]["body"] for m in got if kinds([m]) == ["http.response.body"]] == [
        b"still served"]
    assert gw.pending_new("{new}:ws") == 2
    # One client leaves: a slot is free, and the worker takes one more.
    worker_id = got[0]["w"]
    gw.to_worker(worker_id, 1, 1, {"type": "websocket.disconnect", "code": 1000})
    got = gw.receive_until(lambda ms: "websocket.accept" in kinds(ms))
    assert [m["c"] for m in got if m["k"] == "credit"] == [3], got
    assert gw.pending_new("{new}:ws") == 1
    assert worker.alive()
    gw.close()


def test_redis_first_event_for_leaving_worker_stays_queued(redis_bus, lone_cpp_worker):
    # An idle worker drains: its pending pop is cut short, so a connection
    # offered while it says bye stays on the queue for another worker.
    worker = lone_cpp_worker("hello")
    gw = FakeGateway(redis_bus)
    gw.first_http(1)
    gw.receive_until(lambda ms: "http.response.body" in kinds(ms))
    worker.signal(signal.SIGTERM)
    wait_for_log(worker, "bye")
    gw.first_http(2)
    assert worker.wait(10) == 0
    assert gw.pending_new() == 1
    assert "conn gw-fake/2" not in worker.log()  # never taken: it waits for another worker


def test_redis_bus_prefix_must_match_the_gateways(redis_bus, bridge_factory):
    b = bridge_factory(None, workers=0, gateway_args=["--bus-prefix", "blue",
                                                      "--dispatch-timeout", "1"])
    start_cpp_worker(b, "hello", "--bus-prefix", "green")
    r = request(b.port, "GET", "/")
    assert r.status == 503  # nobody pops blue:{new}
    start_cpp_worker(b, "hello", "--bus-prefix", "blue")
    b.wait_ready("/")
    r = request(b.port, "GET", "/")
    assert (r.status, r.body) == (200, b"Hello, world!")
    assert FakeGateway(redis_bus).r.keys("asgi:*") == []


def own_redis(tmp_path, port: int, *args: str) -> Proc:
    """A Redis server of the test's own (the session's one cannot be
    restarted or given a password)."""
    proc = Proc("redis-own", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp_path), *args],
                tmp_path / "redis-own.log")
    wait_until(lambda: _answers(port), 10, "redis-server to answer")
    return proc


def test_redis_restart_worker_and_gateway_carry_on(redis_bus, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def start_redis() -> Proc:
        return own_redis(tmp_path, port)
    server = start_redis()
    b = Bridge(url, tmp_path / "bridge", None, gateway_args=["--heartbeat-interval", "0.3"])
    try:
        b.start_gateway()
        worker = start_cpp_worker(b, "hello", "--heartbeat-interval", "0.3")
        b.wait_ready("/")
        server.kill()
        server.close()
        time.sleep(1.0)
        server = start_redis()
        wait_until(lambda: request(b.port, "GET", "/").status == 200, 15,
                   "the bridge to serve again after the Redis restart")
        assert worker.alive() and b.gateway.alive()
    finally:
        b.close()
        server.close()


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.exceptions.AuthenticationError:
        return True  # up, and wants a password
    except redis.exceptions.ResponseError as e:
        return "NOAUTH" in str(e)
    except redis.exceptions.ConnectionError:
        return False


def test_redis_password_works_and_is_never_shown(redis_bus, tmp_path):
    port = free_port()
    server = own_redis(tmp_path, port, "--requirepass", "s3cret-pw")
    url = f"redis://:s3cret-pw@127.0.0.1:{port}/0"
    b = Bridge(url, tmp_path / "bridge", None)
    try:
        b.start_gateway()
        worker = start_cpp_worker(b, "hello")
        b.wait_ready("/")
        r = request(b.port, "GET", "/")
        assert (r.status, r.body) == (200, b"Hello, world!")
        wait_for_log(worker, "gateway gw-")
        assert "s3cret-pw" not in worker.log().split("\n", 1)[1]  # past the command line
        assert ":***@127.0.0.1" in worker.log()
        wrong = subprocess.run([str(example_binary("hello")), "--bus",
                                f"redis://:wrong-pw@127.0.0.1:{port}/0"],
                               capture_output=True, timeout=10, text=True)
        assert wrong.returncode == 1, wrong
        assert "AUTH" in wrong.stderr and "wrong-pw" not in wrong.stderr, wrong.stderr
        bad = subprocess.run([str(example_binary("hello")), "--bus",
                              f"redis://:s3cret-pw@127.0.0.1:{port}/notadb"],
                             capture_output=True, timeout=10, text=True)
        assert bad.returncode == 2 and "s3cret-pw" not in bad.stderr, bad.stderr
    finally:
        b.close()
        server.close()
