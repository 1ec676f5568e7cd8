"""The cluster test's load client: steady, bounded HTTP requests and long-lived WebSockets
through the load balancer, every outcome counted.

HTTP: `threads` threads, each one request at a time (a new connection each, so a failure is
that request's own), at most one every `interval` seconds. An outcome is "ok" (200 with the
app's body), "status N" or the exception's class name. Only GETs: that is what a load
balancer may retry on another server.

WebSockets: opened in a batch; each learns its gateway (the X-Gateway header HAProxy adds)
and its owner (the pid a Python worker answers to "who"; a C++ echo worker echoes "who"),
then sends a message every `interval` and checks the echo until it is closed; the close
code (1006 when none came) and any wrong echo are recorded.
"""

from __future__ import annotations

import asyncio
import collections
import http.client
import threading
import time

import websockets


class HttpLoad:
    def __init__(self, port: int, threads: int = 3, interval: float = 0.02):
        self.port, self.interval = port, interval
        self.outcomes = collections.Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> collections.Counter:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.outcomes

    def snapshot(self) -> collections.Counter:
        with self._lock:
            return collections.Counter(self.outcomes)

    def _run(self):
        while not self._stop.is_set():
            outcome = self._one()
            with self._lock:
                self.outcomes[outcome] += 1
            self._stop.wait(self.interval)

    def _one(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/load", headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and body.startswith(b"ok") or (
                    response.status == 200 and body == b""):  # the C++ echo worker
                return "ok"
            return f"status {response.status}"
        except Exception as exc:  # every failure is an outcome, counted
            return type(exc).__name__
        finally:
            conn.close()


class Ws:
    __slots__ = ("index", "gateway", "owner", "code", "bad_echoes", "echoes")

    def __init__(self, index):
        self.index, self.gateway, self.owner = index, None, None
        self.code = None        # close code once closed
        self.bad_echoes = 0     # an echo that did not match
        self.echoes = 0


class WsLoad:
    """`count` WebSockets on their own event loop thread."""

    def __init__(self, port: int, count: int, interval: float = 0.2):
        self.port, self.count, self.interval = port, count, interval
        self.sockets = [Ws(i) for i in range(count)]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks = []

    def __enter__(self):
        self._thread.start()
        self._open_all(self.sockets)
        return self

    def open_more(self, count: int):
        """`count` more WebSockets, like the first ones."""
        more = [Ws(len(self.sockets) + i) for i in range(count)]
        self.sockets += more
        self._open_all(more)

    def _open_all(self, sockets):
        futures = [asyncio.run_coroutine_threadsafe(self._open(ws), self._loop)
                   for ws in sockets]
        for future in futures:
            future.result(30)

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        async def cancel_all():
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def open(self):
        return [ws for ws in self.sockets if ws.code is None]

    async def _open(self, ws):
        conn = await websockets.connect(f"ws://127.0.0.1:{self.port}/ws", open_timeout=20,
                                        ping_interval=None, close_timeout=2)
        ws.gateway = conn.response_headers.get("X-Gateway")
        await conn.send("who")
        answer = await asyncio.wait_for(conn.recv(), 20)
        ws.owner = "cpp" if answer == "who" else answer
        self._tasks.append(asyncio.ensure_future(self._keep(ws, conn)))

    async def _keep(self, ws, conn):
        n = 0
        try:
            while True:
                n += 1
                await conn.send(f"m{n}")
                if await conn.recv() != f"m{n}":
                    ws.bad_echoes += 1
                ws.echoes += 1
                await asyncio.sleep(self.interval)
        except websockets.exceptions.ConnectionClosed as exc:
            ws.code = exc.rcvd.code if exc.rcvd is not None else 1006
        except asyncio.CancelledError:
            await conn.close()
            raise


def wait_closed(sockets, timeout: float):
    """Until every WebSocket in `sockets` is closed (bounded); returns those still open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(ws.code is None for ws in sockets):
        time.sleep(0.05)
    return [ws for ws in sockets if ws.code is None]
