"""The Python worker's own CPU per request, without a bus or a gateway.

Feeds a `Worker` (bench/app.py as its app) pre-encoded gateway messages over a fake
transport, a batch per loop iteration as the ZeroMQ transport does, and reports
`time.process_time()` per HTTP hello and per WebSocket echo message: the difference
between a long and a short run, so that start-up cancels out. Repeatable on a loaded
machine (docs/performance.md, "The Python worker, second pass").

    PYTHONPATH=workers/python:bench /usr/bin/python3 bench/worker_inproc.py [--no-native]
        [--loop uvloop|asyncio] [--profile hello|ws] [--once hello|ws COUNT] [--features N]
        [--later-step]

Under callgrind, two --once runs of different lengths give instructions per request
(their difference over the difference of the counts), unmoved by other jobs' load.
"""

import argparse
import asyncio
import cProfile
import functools
import os
import pstats
import sys
import time

import msgpack

from asgi_bridge import codec, runtime, wire
from asgi_bridge.worker import Worker

import app as bench_app

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "workers", "python", "tests"))
from bridge_helpers import FakeTransport  # noqa: E402

BATCH = 64  # connections in flight, as bench/run's 64 clients
WS_POOL = 1000  # rounds of WebSocket messages built for every run

HEADERS = [[b"host", b"127.0.0.1:8000"], [b"user-agent", b"wrk"], [b"accept", b"*/*"]]


class NullTransport(FakeTransport):
    """The tests' fake transport, keeping nothing: what is sent is only counted."""

    def __init__(self):
        super().__init__(["zmq://bench"])
        self.count = 0

    def set_free_capacity(self, requests, websockets=0):
        pass

    async def send(self, link, data):
        self.count += 1

    def try_send(self, link, data):  # as the ZeroMQ transport's, when it does not wait
        self.count += 1
        return True

    def send_nowait(self, link, data):
        self.count += 1


def first_http(conn, features):
    return codec.encode({
        "k": "event", "g": "gw-1", "w": "wk-bench", "c": conn, "s": 0, "window": 1 << 20,
        "features": features,  # as the gateway's: a start may carry the body (1)
        "scope": {"type": "http",
                  "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/",
                  "raw_path": b"/", "query_string": b"", "root_path": "",
                  "headers": HEADERS, "client": ["127.0.0.1", 40000],
                  "server": ["127.0.0.1", 8000], "extensions": {}},
        "event": {"type": "http.request", "body": b"", "more_body": False}})


def first_ws(conn):
    return codec.encode({
        "k": "event", "g": "gw-1", "w": "wk-bench", "c": conn, "s": 0, "window": 1 << 20,
        "scope": {"type": "websocket",
                  "http_version": "1.1", "scheme": "ws", "path": "/ws", "raw_path": b"/ws",
                  "query_string": b"", "root_path": "", "headers": HEADERS,
                  "client": ["127.0.0.1", 40000], "server": ["127.0.0.1", 8000],
                  "subprotocols": [], "extensions": {}},
        "event": {"type": "websocket.connect"}})


def ws_message(conn, seq):
    # msgpack in C, in codec.encode's canonical key order: the same bytes, built fast
    return msgpack.packb({"v": 1, "k": "event", "g": "gw-1", "w": "wk-bench", "c": conn,
                          "s": seq, "event": {"type": "websocket.receive", "text": "x" * 32}})


async def deliver(worker, link, batch):
    """A batch handed to the worker from a loop callback, as the ZeroMQ transport's
    reader does (not from within a task), then the loop iterations that run the apps."""
    asyncio.get_running_loop().call_soon(_on_messages, worker, link, batch)
    await asyncio.sleep(0)  # the callback
    await asyncio.sleep(0)  # the tasks it woke or started
    await asyncio.sleep(0)


def _on_messages(worker, link, batch):
    for data in batch:
        worker.on_message(link, data)


async def hello(worker, link, requests, profiler=None, features=1):
    # One batch of first events, sent again and again: a finished connection's id
    # may open a new one, and no message is built inside the measured loop.
    batch = [first_http(i, features) for i in range(BATCH)]
    await asyncio.sleep(0)
    if profiler:
        profiler.enable()
    start = time.process_time()
    for i in range(0, requests, BATCH):
        await deliver(worker, link, batch[:requests - i])
    cpu = time.process_time() - start
    if profiler:
        profiler.disable()
    assert not worker.conns, "requests left unfinished"
    return cpu


async def ws(worker, link, rounds, profiler=None, base=[1000000]):
    conns = list(range(base[0], base[0] + BATCH))
    base[0] += BATCH
    for conn in conns:
        worker.on_message(link, first_ws(conn))
    await asyncio.sleep(0.01)
    # As many messages built for a short run as for a long one: the difference of the
    # two is the worker's alone.
    messages = [[ws_message(conn, seq) for conn in conns]
                for seq in range(1, max(rounds, WS_POOL) + 1)][:rounds]
    if profiler:
        profiler.enable()
    start = time.process_time()
    for batch in messages:
        await deliver(worker, link, batch)
    cpu = time.process_time() - start
    if profiler:
        profiler.disable()
    for conn in conns:  # end them: a disconnect each
        worker.on_message(link, codec.encode({
            "k": "event", "g": "gw-1", "c": conn, "s": rounds + 1,
            "event": {"type": "websocket.disconnect", "code": 1000}}))
    await asyncio.sleep(0.01)
    return cpu / BATCH  # per message: `rounds` messages on each of BATCH connections


async def later_step(scope, receive, send):
    """The bench app, answering HTTP in a later task step (as after a database query)."""
    if scope["type"] == "http":
        await asyncio.sleep(0)
    await bench_app.app(scope, receive, send)


async def main(args):
    transport = NullTransport()
    app = later_step if args.later_step else bench_app.app
    worker = Worker(app, transport, "wk-bench", concurrency=1000)
    worker.start()
    link = transport.links[0]
    worker.on_message(link, codec.encode({"k": "heartbeat", "g": "gw-1"}))
    kinds = {"hello": (functools.partial(hello, features=args.features), 1280, 6400),
             "ws": (ws, 200, 1000)}
    if args.once:  # for callgrind: the difference of two counts is the per-request cost
        name, count = args.once
        run = kinds[name][0]
        await run(worker, link, 64)  # warm up
        await run(worker, link, int(count))
        await worker.close()
        return
    for name, (run, short, long) in kinds.items():
        if args.profile and args.profile != name:
            continue
        await run(worker, link, short)  # warm up
        if args.profile:
            profiler = cProfile.Profile()
            await run(worker, link, long, profiler)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            continue
        best = []
        for _ in range(args.repeat):
            small = await run(worker, link, short)
            large = await run(worker, link, long)
            best.append((large - small) / (long - short) * 1e6)
        best.sort()
        print(f"{name}: {best[len(best) // 2]:.2f} µs per "
              f"{'request' if name == 'hello' else 'message'} (median of {args.repeat}; "
              f"all {', '.join(f'{b:.2f}' for b in best)})")
    await worker.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--profile", choices=("hello", "ws"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--features", type=int, default=1,
                        help="the first events' `features` (the gateway's: 1; 0 as before "
                             "the start could carry the body)")
    parser.add_argument("--later-step", action="store_true",
                        help="HTTP answered after an await that suspends, not in the first step")
    parser.add_argument("--once", nargs=2, metavar=("hello|ws", "COUNT"),
                        help="one run of COUNT requests (ws: rounds of 64 messages) "
                             "after a warm-up, nothing printed: for callgrind")
    args = parser.parse_args()
    print("codec:", wire.select(not args.no_native), file=sys.stderr)
    loop = runtime.choose_loop(args.loop)[0]()  # the worker's own loop (eager.py)
    loop.run_until_complete(main(args))
    loop.close()
