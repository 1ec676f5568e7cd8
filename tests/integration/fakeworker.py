"""A scripted worker speaking the wire protocol (docs/protocol.md) directly.

It lets the tests make a worker misbehave in ways the real Python worker
never does: send an invalid or out-of-order event, report an error, say
bye, fall silent, ignore its byte window, or flood the bus with raw bytes. It runs in a thread of the test process, with its own
ZeroMQ DEALER.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from typing import Optional

import msgpack
import zmq
import zmq.auth

from .harness import bus_args


class FakeWorker:
    def __init__(self, bus_url: str, capacity: int = 4, heartbeat: float = 1.0):
        assert bus_url.startswith("zmq://"), "the fake worker speaks ZeroMQ only"
        self.id = "wk-fake-" + uuid.uuid4().hex[:8]
        self.capacity = capacity
        self.heartbeat_interval = heartbeat
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, self.id.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self._use_curve_keys(bus_url)
        self.sock.connect("tcp://" + bus_url[len("zmq://"):])
        self.inbox: "queue.Queue[dict]" = queue.Queue()
        self.transport_frames: "queue.Queue[bytes]" = queue.Queue()  # 0xC1 frames (protocol.md §1.1)
        self.gateway_id: Optional[str] = None
        self.heartbeats = True       # set False to fall silent (look dead)
        self._outbox: "queue.Queue[dict]" = queue.Queue()
        self._stop = threading.Event()
        self._seq: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.send({"v": 1, "k": "ready", "w": self.id,
                   "capacity": capacity, "active": 0})
        self._thread.start()

    def _use_curve_keys(self, bus_url: str) -> None:
        """On the ``curve`` test bus, the worker keys the harness gives real workers."""
        args = bus_args(bus_url, "worker")
        options = dict(zip(args[::2], args[1::2]))
        if "--bus-server-key" not in options:
            return
        self.sock.curve_serverkey, _ = zmq.auth.load_certificate(options["--bus-server-key"])
        self.sock.curve_publickey, self.sock.curve_secretkey = zmq.auth.load_certificate(
            options["--bus-secret-key"])

    # -- the socket thread (ZeroMQ sockets are not thread-safe) -----------

    def _run(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_interval
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            while True:
                try:
                    msg = self._outbox.get_nowait()
                except queue.Empty:
                    break
                self.sock.send(msg if isinstance(msg, bytes) else msgpack.packb(msg, use_bin_type=True))
            now = time.monotonic()
            if now >= next_beat:
                if self.heartbeats:
                    self.sock.send(msgpack.packb(
                        {"v": 1, "k": "heartbeat", "w": self.id,
                         "capacity": self.capacity, "active": 0}, use_bin_type=True))
                next_beat = now + self.heartbeat_interval
            if dict(poller.poll(20)).get(self.sock):
                frames = self.sock.recv_multipart()
                if frames[-1][:1] == b"\xc1":
                    self.transport_frames.put(frames[-1])
                    continue
                msg = msgpack.unpackb(frames[-1], raw=False)
                if msg.get("g"):
                    self.gateway_id = msg["g"]
                if msg.get("k") != "heartbeat":
                    self.inbox.put(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close(0)
        self.ctx.term()

    # -- what a test calls ---------------------------------------------------

    def send(self, msg: dict) -> None:
        self._outbox.put(msg)

    def send_raw(self, data: bytes, times: int = 1) -> None:
        """data as one bus message, `times` times (garbage, or a message packed once)."""
        for _ in range(times):
            self._outbox.put(data)

    def sent_all(self, timeout: float = 60.0) -> None:
        """Waits until the socket thread has handed everything queued to ZeroMQ."""
        deadline = time.monotonic() + timeout
        while not self._outbox.empty():
            if time.monotonic() > deadline:
                raise AssertionError("the fake worker could not send its messages")
            time.sleep(0.01)

    def next_event(self, timeout: float = 10.0, type_: Optional[str] = None) -> dict:
        """The next `event` message (optionally of one ASGI type)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"fake worker got no {type_ or 'event'} in {timeout} s")
            try:
                msg = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if msg.get("k") != "event":
                continue
            if type_ is None or msg["event"]["type"] == type_:
                return msg

    def credited(self) -> int:
        """Bytes the gateway credited since the last call (drains the inbox of credits;
        other messages are dropped)."""
        total = 0
        while True:
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return total
            if msg.get("k") == "credit":
                total += msg.get("bytes", 0)

    def reply(self, conn: int, event: dict, seq: Optional[int] = None) -> None:
        """An `event` for connection conn, with the next sequence number
        unless seq is given."""
        s = self._seq.get(conn, 0) if seq is None else seq
        self._seq[conn] = s + 1
        self.send({"v": 1, "k": "event", "g": self.gateway_id, "w": self.id,
                   "c": conn, "s": s, "event": event})

    def error(self, conn: int, message: str) -> None:
        self.send({"v": 1, "k": "error", "g": self.gateway_id, "w": self.id,
                   "c": conn, "message": message})

    def bye(self) -> None:
        self.send({"v": 1, "k": "bye", "w": self.id})


def start(status: int = 200, headers=None) -> dict:
    return {"type": "http.response.start", "status": status,
            "headers": headers or [[b"content-type", b"text/plain"]], "trailers": False}


def body(data: bytes, more: bool = False) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}
