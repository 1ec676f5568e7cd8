"""Same-host shared memory between the gateway and C++ workers (docs/protocol.md
§1.1): bus messages of 16 KiB or more go through each side's memfd ring and the
ZeroMQ socket carries a 46-byte reference.

A real gateway and the C++ echo worker: bodies around the threshold, 60 KiB and
a 1 MiB one come back byte-exact, and /metrics shows the rings used both ways;
with --bus-shared-memory 0 on both sides no ring is used and all still works; a
restarted gateway maps the ring of a worker accepted by the previous one on the
worker's next reference. A scripted worker (fakeworker.py) with a ring built in
Python (os.memfd_create and seals) attacks the gateway: offers it cannot back,
references out of range, a huge length, a corrupted tail on the gateway's own
ring; the gateway refuses or drops just that, rate-limits its log, and a real
worker beside it goes on serving.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import re
import struct

import msgpack
import pytest

from .fakeworker import FakeWorker, start
from .harness import Background, Gateway, free_port, raw_request, request, wait_for_log, wait_until
from .test_cpp_workers import start_cpp_worker

HEADER = 4096


def metric(text: str, name: str, direction: str) -> float:
    found = re.search(rf'^{name}\{{direction="{direction}"\}} (\S+)$', text, re.M)
    assert found, f"{name}{{direction={direction}}} missing"
    return float(found.group(1))


def shm_metrics(admin_port: int) -> dict:
    text = request(admin_port, "GET", "/metrics").body.decode()
    return {(kind, d): metric(text, f"asgi_bridge_bus_shared_memory_{kind}_total", d)
            for kind in ("messages", "bytes") for d in ("sent", "received")}


@pytest.fixture
def echo_bridge(bridge_factory, bus_url):
    """start(gateway_args, worker_args) -> (bridge, worker, admin port): a gateway
    with --admin and the C++ echo worker, served."""
    if not bus_url.startswith("zmq"):
        pytest.skip("shared memory is a ZeroMQ transport's")

    def start_bridge(gateway_args=(), worker_args=()):
        admin = free_port()
        b = bridge_factory(None, workers=0, gateway_args=["--admin", f"127.0.0.1:{admin}", *gateway_args])
        worker = start_cpp_worker(b, "echo", *worker_args)
        b.wait_ready("/")
        return b, worker, admin
    return start_bridge


def echo(port: int, size: int) -> None:
    data = os.urandom(size)
    r = request(port, "POST", "/", body=data, headers={"content-type": "application/octet-stream"}, timeout=20)
    assert r.status == 200 and r.body == data, (size, r.status, len(r.body))


def test_large_bodies_go_through_the_rings_byte_exact(echo_bridge):
    b, worker, admin = echo_bridge()
    wait_for_log(b.gateway, "accepted our shared-memory ring")
    wait_for_log(worker, "accepted our shared-memory ring")
    before = shm_metrics(admin)
    for size in (16 * 1024 - 200, 16 * 1024, 16 * 1024 + 200, 60 * 1024, 64 * 1024, 1024 * 1024, 64 * 1024):
        echo(b.port, size)
    after = shm_metrics(admin)
    for direction in ("sent", "received"):
        assert after[("messages", direction)] - before[("messages", direction)] >= 5, (direction, before, after)
        assert after[("bytes", direction)] - before[("bytes", direction)] >= 5 * 16 * 1024, (direction, after)
    assert "shared-memory" not in "".join(line for line in b.gateway.log().splitlines() if "warn" in line)


def test_without_rings_everything_goes_over_the_socket(echo_bridge):
    b, worker, admin = echo_bridge(["--bus-shared-memory", "0"], ["--bus-shared-memory", "0"])
    for size in (16 * 1024, 64 * 1024, 1024 * 1024):
        echo(b.port, size)
    assert set(shm_metrics(admin).values()) == {0}
    assert "shared-memory ring" not in b.gateway.log() + worker.log()


def test_a_bad_ring_size_is_refused_at_start(bridge_factory, tmp_path):
    b = bridge_factory(None, workers=0)
    bad = Gateway(b.bus_url, tmp_path, args=["--bus-shared-memory", "100000"], name="bad-gateway")
    b.procs.append(bad)
    assert bad.wait(10) != 0
    assert "--bus-shared-memory: expected 0 (no ring) or a power of two from 65536 to 67108864" in bad.log()
    worker = start_cpp_worker(b, "echo", "--bus-shared-memory", "65537")
    assert worker.wait(10) == 2
    assert "power of two" in worker.log()


def test_a_restarted_gateway_maps_the_old_workers_ring(echo_bridge):
    b, worker, _ = echo_bridge()
    wait_for_log(worker, "accepted our shared-memory ring")
    echo(b.port, 64 * 1024)
    b.gateway.kill()
    admin = free_port()
    new = Gateway(b.bus_url, b.log_dir, args=["--admin", f"127.0.0.1:{admin}"], name="gateway-new")
    b.procs.insert(0, new)
    new.wait_listening()
    wait_until(lambda: request(new.port, "GET", "/").status == 200, 15, "the new gateway to be served by the old worker")
    for _ in range(3):
        echo(new.port, 64 * 1024)
    counts = shm_metrics(admin)
    assert counts[("messages", "received")] >= 3 and counts[("messages", "sent")] >= 1, counts
    assert re.search(r"mapped the shared-memory ring of wk-\S+", new.log())


# --- a hostile worker ------------------------------------------------------------


class PyRing:
    """A ring as docs/protocol.md §1.1 builds it, from Python."""

    def __init__(self, capacity: int = 64 * 1024):
        self.capacity = capacity
        self.fd = os.memfd_create("test-ring", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        os.ftruncate(self.fd, HEADER + capacity)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.token = os.urandom(16)
        self.map = mmap.mmap(self.fd, HEADER + capacity)
        self.map[0:32] = b"ABRING1\0" + self.token + struct.pack("<Q", capacity)

    def reference(self, position: int, length: int, token: bytes | None = None, fd: int | None = None) -> bytes:
        return b"\xc1R" + struct.pack("<II16sQQI", os.getpid(), self.fd if fd is None else fd,
                                      token or self.token, self.capacity, position, length)

    def put(self, position: int, data: bytes) -> bytes:
        offset = HEADER + position % self.capacity
        self.map[offset:offset + len(data)] = data
        return self.reference(position, len(data))

    def tail(self) -> int:
        return struct.unpack_from("<Q", self.map, 64)[0]

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


def parse(frame: bytes) -> tuple:
    if frame[1:2] == b"R":
        return ("R",) + struct.unpack("<II16sQQI", frame[2:])
    return (frame[1:2].decode(), frame[2:])


def post(body: bytes) -> bytes:
    return f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def next_frame(fake: FakeWorker) -> tuple:
    return parse(fake.transport_frames.get(timeout=10))


def test_a_hostile_worker_hurts_only_itself(bridge_factory, bus_url):
    if not bus_url.startswith("zmq://"):
        pytest.skip("the scripted worker speaks zmq:// only")
    b = bridge_factory(None, workers=0, gateway_args=["--dispatch-timeout", "10"])
    fake = FakeWorker(b.bus_url, capacity=1)
    ring = PyRing()
    try:
        # A real ring: accepted, and the gateway offers its own.
        fake.send_raw(ring.reference(0, 0))
        assert next_frame(fake) == ("A", ring.token)
        kind, gw_pid, gw_fd, gw_token, capacity, _, length = next_frame(fake)
        assert (kind, length, capacity) == ("R", 0, 1024 * 1024)
        with open(f"/proc/{gw_pid}/fd/{gw_fd}", "r+b") as f, mmap.mmap(f.fileno(), HEADER + capacity) as gw_ring:
            # The worker accepts the gateway's ring and reads a request from it
            # as the spec says; its answer's body goes through the worker's ring.
            fake.send_raw(b"\xc1A" + gw_token)
            wait_for_log(b.gateway, f"{fake.id} accepted our shared-memory ring")
            body = os.urandom(40000)
            posted = Background(raw_request, b.port, post(body), timeout=15)  # one write: one large chunk
            kind, *_, position, length = next_frame(fake)
            assert kind == "R" and length >= 16 * 1024, (kind, length)
            offset = HEADER + position % capacity
            msg = msgpack.unpackb(gw_ring[offset:offset + length], raw=False)
            gw_ring[64:72] = struct.pack("<Q", position + length)  # our tail, once the copy is done
            piece = msg["event"]["body"]
            assert msg["event"]["type"] == "http.request" and len(piece) >= 16000 and body.startswith(piece)
            conn = msg["c"]
            fake.reply(conn, start())
            answer = msgpack.packb({"v": 1, "k": "event", "g": fake.gateway_id, "w": fake.id, "c": conn, "s": 1,
                                    "event": {"type": "http.response.body", "body": body, "more_body": False}},
                                   use_bin_type=True)
            fake.send_raw(ring.put(0, answer))
            r = posted.result()
            assert (r.status, r.body) == (200, body)
            wait_until(lambda: ring.tail() == len(answer), 5, "the gateway to move our tail")
            # Then the worker corrupts the gateway's tail: the gateway stops
            # using its ring and sends over the socket.
            gw_ring[64:72] = struct.pack("<Q", 1 << 40)
        posted = Background(raw_request, b.port, post(body), timeout=15)
        received = b""
        while not received.endswith(body):  # over the socket, since the ring is broken
            msg = fake.next_event(type_="http.request")
            received += msg["event"]["body"]
        wait_for_log(b.gateway, "broke our shared-memory ring")
        fake.reply(msg["c"], start())
        fake.reply(msg["c"], {"type": "http.response.body", "body": b"ok", "more_body": False})
        assert posted.result().status == 200

        # No more work for the fake; a real worker joins and serves while the
        # fake attacks.
        fake.send({"v": 1, "k": "heartbeat", "w": fake.id, "capacity": 0, "active": 0})
        worker = start_cpp_worker(b, "echo")
        wait_for_log(b.gateway, "joined", more_than=1)
        load = [Background(echo, b.port, 64 * 1024) for _ in range(4)]
        c = len(answer)
        fake.send_raw(ring.reference(0, 10))                        # behind our position
        fake.send_raw(ring.reference(c + ring.capacity, 10))        # a ring or more ahead
        fake.send_raw(ring.reference(ring.capacity - 10, 100))      # across the end
        fake.send_raw(ring.reference(c, 0xFFFFFFFF))                # a huge length
        fake.send_raw(ring.reference(0, 100, fd=1_000_000, token=os.urandom(16)))  # an offer it cannot back
        wrong_token = os.urandom(16)
        fake.send_raw(ring.reference(0, 0, token=wrong_token))      # another ring's token
        fake.send_raw(b"\xc1R\x00", times=3)                        # malformed
        fake.send_raw(ring.reference(c, 0xFFFFFFFF), times=50)      # and a flood
        refused = {next_frame(fake), next_frame(fake)}
        assert ("X", wrong_token) in refused and all(f[0] == "X" for f in refused), refused
        for job in load:
            job.result()
        echo(b.port, 64 * 1024)
        warnings = [line for line in b.gateway.log().splitlines() if "shared-memory" in line and "warn" in line]
        for reason in ("behind ours", "ahead of ours", "cross the ring's end", "over the limit"):
            assert any(f"bad shared-memory reference from {fake.id} dropped: " in line and reason in line
                       for line in warnings), reason
        assert len(warnings) <= 7, warnings  # 5 per peer per 10 s, the tail's one, and a join's
        assert b.gateway.alive() and worker.alive()
    finally:
        fake.close()
        ring.close()
