"""Same-host shared-memory rings (docs/protocol.md §1.1): the ring and its frames
(shared_ring.py), then the ZeroMQ transport against a fake gateway in this test, a raw
ROUTER whose own ring is built here step by step from the spec (not with shared_ring's
code) and which checks every frame the worker sends."""

import asyncio
import fcntl
import mmap
import os
import struct
import subprocess
import sys
import time

import pytest
import zmq

from asgi_bridge import codec, shared_ring, wire
from asgi_bridge.shared_ring import HEADER, MIN_CAPACITY, PeerRing, Ring, RingError
from asgi_bridge.transport import make_transport
from bridge_helpers import run

pytestmark = pytest.mark.skipif(not shared_ring.AVAILABLE, reason="needs Linux memfd seals")

KIB = 1024
TAIL = struct.Struct("<Q")


def tail_of(ring):
    return TAIL.unpack_from(ring.map, 64)[0]


def set_tail(ring, value):
    TAIL.pack_into(ring.map, 64, value)


def mapped(ring):
    """Our own ring mapped as its consumer would (through /proc/self/fd)."""
    return PeerRing(os.getpid(), ring.fd, ring.token, ring.capacity)


def take(peer, frame):
    """The message `frame` names, copied, and its bytes given back."""
    _, _, _, _, position, length = shared_ring.parse_reference(frame)
    with peer.lend(position, length) as message:
        data = bytes(message)
    peer.give_back()
    return data


# --- the ring and its frames -----------------------------------------------------------

def test_frames_have_the_sizes_and_fields_of_the_spec():
    ring = Ring(MIN_CAPACITY)
    try:
        assert len(ring.offer) == 46 and ring.offer[:2] == b"\xc1R"
        assert shared_ring.parse_reference(ring.offer) == (os.getpid(), ring.fd, ring.token,
                                                           MIN_CAPACITY, 0, 0)
        assert ring.map[:8] == b"ABRING1\0" and ring.map[8:24] == ring.token
        assert struct.unpack_from("<Q", ring.map, 24)[0] == MIN_CAPACITY
        assert os.fstat(ring.fd).st_size == HEADER + MIN_CAPACITY
        assert os.fstat(ring.fd).st_mode & 0o777 == 0o600
        seals = fcntl.fcntl(ring.fd, fcntl.F_GET_SEALS)
        assert seals == fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        assert shared_ring.accept(ring.token) == b"\xc1A" + ring.token
        assert shared_ring.refuse(ring.token) == b"\xc1X" + ring.token
        assert shared_ring.parse_answer(b"\xc1X" + ring.token) == ring.token
        for bad in (ring.offer[:-1], ring.offer + b"\0"):
            with pytest.raises(RingError, match="reference frame of"):
                shared_ring.parse_reference(bad)
        with pytest.raises(RingError, match="answer frame of 17 bytes"):
            shared_ring.parse_answer(b"\xc1A" + ring.token[:-1])
    finally:
        ring.close()


def test_capacity_bounds():
    for good in (0, 65536, 1 << 20, 64 << 20):
        assert shared_ring.check_capacity(str(good)) == good
    for bad in ("1", "4096", "65535", "69632", "98304", "134217728", "1e6", ""):
        with pytest.raises(ValueError, match="power of two from 65536 to 67108864"):
            shared_ring.check_capacity(bad)


def test_the_option_and_its_environment_variable(monkeypatch, capsys):
    from asgi_bridge.__main__ import parse_args
    base = ["app:app", "--bus", "zmq://127.0.0.1:1"]
    assert parse_args(base).bus_shared_memory == 1048576
    assert parse_args([*base, "--bus-shared-memory", "0"]).bus_shared_memory == 0
    monkeypatch.setenv("ASGI_BRIDGE_BUS_SHARED_MEMORY", "65536")
    assert parse_args(base).bus_shared_memory == 65536
    for bad in ("1000", "-1", "lots", "134217728"):
        monkeypatch.setenv("ASGI_BRIDGE_BUS_SHARED_MEMORY", bad)
        with pytest.raises(SystemExit) as info:
            parse_args(base)
        assert info.value.code == 2 and "--bus-shared-memory" in capsys.readouterr().err
        monkeypatch.delenv("ASGI_BRIDGE_BUS_SHARED_MEMORY")
        with pytest.raises(SystemExit) as info:
            parse_args([*base, "--bus-shared-memory", bad])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "--bus-shared-memory" in err
        assert f"must be 0 or a power of two from 65536 to 67108864, got {bad}" in err


def test_round_trip_and_wrap_without_straddling_the_end():
    ring = Ring(MIN_CAPACITY)
    peer = mapped(ring)
    try:
        messages = [os.urandom(size) for size in (20 * KIB, 30 * KIB, 20 * KIB, 16 * KIB)]
        positions = []
        for data in messages:
            frame = ring.write(data)
            positions.append(shared_ring.parse_reference(frame)[4])
            assert take(peer, frame) == data  # byte-exact, and the tail follows
            assert tail_of(ring) == peer.position
        # The third (20 KiB from 50 KiB) would cross the end: it starts the next lap.
        assert positions == [0, 20 * KIB, 64 * KIB, 84 * KIB]
        assert ring.head == peer.position == 100 * KIB
    finally:
        peer.close()
        ring.close()


def test_a_lent_message_is_read_in_place_and_its_room_kept_until_given_back():
    ring = Ring(MIN_CAPACITY)
    peer = mapped(ring)
    try:
        frame = ring.write(b"a" * (40 * KIB))
        _, _, _, _, position, length = shared_ring.parse_reference(frame)
        message = peer.lend(position, length)
        assert peer.position == 40 * KIB and tail_of(ring) == 0  # lent, not given back
        assert ring.write(b"b" * (40 * KIB)) is None  # its bytes are not overwritten meanwhile
        ring.map[HEADER] = ord("z")  # in place: what the producer writes there shows through
        assert message[:2] == b"za"
        message.release()
        peer.give_back()
        assert tail_of(ring) == 40 * KIB
        assert take(peer, ring.write(b"b" * (40 * KIB))) == b"b" * (40 * KIB)
    finally:
        peer.close()
        ring.close()


def test_a_full_ring_answers_none_until_the_consumer_moves_on():
    ring = Ring(MIN_CAPACITY)
    peer = mapped(ring)
    try:
        first = ring.write(b"a" * (40 * KIB))
        assert ring.write(b"b" * (40 * KIB)) is None  # the socket takes it
        assert ring.write(b"c" * (24 * KIB)) is not None  # exactly what is left
        assert ring.write(b"d" * (16 * KIB)) is None
        assert ring.write(b"e" * (MIN_CAPACITY + 1)) is None  # never fits
        assert take(peer, first) == b"a" * (40 * KIB)
        assert ring.write(b"f" * (40 * KIB)) is not None
    finally:
        peer.close()
        ring.close()


@pytest.mark.parametrize("tail", ["ahead of the head", "behind by more than the capacity"])
def test_a_hostile_tail_stops_the_producer(tail):
    ring = Ring(MIN_CAPACITY)
    try:
        for _ in range(5):  # head at 80 KiB
            assert ring.write(b"x" * (16 * KIB)) is not None
            set_tail(ring, ring.head)
        set_tail(ring, ring.head + 1 if tail == "ahead of the head" else 8 * KIB)
        with pytest.raises(RingError, match="outside the ring"):
            ring.write(b"y" * (16 * KIB))
    finally:
        ring.close()


def test_the_consumer_checks_references_against_its_own_position():
    ring = Ring(MIN_CAPACITY)
    peer = mapped(ring)
    try:
        assert take(peer, ring.write(b"1" * (16 * KIB))) == b"1" * (16 * KIB)
        ours = peer.position
        set_tail(ring, 0)  # the shared tail is never what the checks read
        bad = [(0, 16 * KIB),                      # behind our position
               (ours - 1, 16 * KIB),
               (ours + MIN_CAPACITY, 16 * KIB),     # a whole lap ahead
               (ours, MIN_CAPACITY),                # would straddle the end
               (MIN_CAPACITY - 8 * KIB, 16 * KIB),  # the same from elsewhere
               (ours, 0),                            # nothing
               ((1 << 64) - 1, 1)]                   # past what a position can hold
        for position, length in bad:
            with pytest.raises(RingError, match="bad reference"):
                peer.lend(position, length)
        assert peer.position == ours and tail_of(ring) == 0  # nothing moved
        assert take(peer, ring.write(b"2" * (16 * KIB))) == b"2" * (16 * KIB)
    finally:
        peer.close()
        ring.close()


# Another process watching the tail as a producer does (an aligned 8-byte load each
# time), counting each time it goes back.
WATCHER = """
import mmap, os, sys
pid, fd, reads = map(int, sys.argv[1:])
handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY)
ring = mmap.mmap(handle, 4096 + 65536, prot=mmap.PROT_READ)
tail = memoryview(ring)[64:72].cast("Q")
print("watching", flush=True)
last = backwards = 0
for _ in range(reads):
    now = tail[0]
    backwards += now < last
    last = now
print(backwards, flush=True)
"""


def test_the_tail_never_goes_back_while_the_consumer_stores_it():
    """Each store is one 8-byte write: struct.pack_into zeroed the field first, and a
    producer reading in between saw 0 and gave up its ring as broken."""
    ring = Ring(MIN_CAPACITY)
    peer = mapped(ring)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(os.getpid()), str(ring.fd),
                                "2000000"], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline() == "watching\n"
        takes = 0
        while watcher.poll() is None and takes < 2_000_000:
            for _ in range(1000):
                take(peer, ring.write(b"x"))
            takes += 1000
        assert watcher.wait(10) == 0 and watcher.stdout.read() == "0\n"
    finally:
        watcher.kill()
        watcher.wait()
        peer.close()
        ring.close()


def memfd(size, seal=True, header=None):
    fd = os.memfd_create("test-ring", os.MFD_ALLOW_SEALING if seal else 0)
    os.ftruncate(fd, size)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    if header is not None:
        os.pwrite(fd, header, 0)
    return fd


def test_every_mapping_refusal_says_why():
    token = os.urandom(16)
    good_header = b"ABRING1\0" + token + struct.pack("<Q", MIN_CAPACITY)
    size = HEADER + MIN_CAPACITY
    read_end, write_end = os.pipe()
    device = os.open("/dev/null", os.O_RDONLY)
    fds = {
        "wrong size": memfd(size + 4096, header=good_header),
        "not sealed": memfd(size, seal=False, header=good_header),
        "bad magic": memfd(size, header=b"ABRING2\0" + good_header[8:]),
        "other token": memfd(size, header=good_header[:8] + os.urandom(16) + good_header[24:]),
        "header capacity": memfd(size, header=good_header[:24] + struct.pack("<Q", 1 << 17)),
        "good": memfd(size, header=good_header),
    }
    pid = os.getpid()
    try:
        cases = [((pid, fds["good"], token, MIN_CAPACITY + 1), "not a power of two"),
                 ((pid, fds["good"], token, MIN_CAPACITY // 2), "not a power of two"),
                 ((pid, fds["good"], token, 128 << 20), "not a power of two"),
                 ((pid, 1 << 30, token, MIN_CAPACITY), "cannot open /proc/"),
                 ((0x7FFFFFF0, fds["good"], token, MIN_CAPACITY), "cannot open /proc/"),
                 ((pid, read_end, token, MIN_CAPACITY), "is not a regular file"),  # a FIFO
                 ((pid, device, token, MIN_CAPACITY), "is not a regular file"),  # never opened
                 ((pid, fds["wrong size"], token, MIN_CAPACITY), "has 73728 bytes"),
                 ((pid, fds["not sealed"], token, MIN_CAPACITY), "not sealed against shrinking"),
                 ((pid, fds["bad magic"], token, MIN_CAPACITY), "is not a ring"),
                 ((pid, fds["other token"], token, MIN_CAPACITY), "holds another ring"),
                 ((pid, fds["header capacity"], token, MIN_CAPACITY), "capacity 131072 in its")]
        for args, reason in cases:
            with pytest.raises(RingError, match=reason):
                PeerRing(*args)
        PeerRing(pid, fds["good"], token, MIN_CAPACITY).close()
    finally:
        for fd in (*fds.values(), read_end, write_end, device):
            os.close(fd)


def test_a_file_on_disk_is_refused(tmp_path):
    path = tmp_path / "ring"
    path.write_bytes(b"ABRING1\0" + bytes(HEADER + MIN_CAPACITY - 8))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(RingError, match="sealed|no seals"):
            PeerRing(os.getpid(), fd, bytes(16), MIN_CAPACITY)
    finally:
        os.close(fd)


# --- the transport against a fake gateway ------------------------------------------------

R_FRAME = struct.Struct("<BcII16sQQI")  # the spec's R, written out here on purpose


class FakeGateway:
    """A ROUTER with a ring of its own (the spec's steps, by hand) that maps the
    worker's ring from its offer and reads the messages its references name."""

    def __init__(self, capacity=MIN_CAPACITY):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.url = f"zmq://127.0.0.1:{self.socket.bind_to_random_port('tcp://127.0.0.1')}"
        self.identity = None
        self.worker_ring = None  # (mmap, token, capacity)
        self.fd = os.memfd_create("fake-gateway-ring", os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, HEADER + capacity)
        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.ring = mmap.mmap(self.fd, HEADER + capacity)
        self.token = os.urandom(16)
        self.ring[:32] = b"ABRING1\0" + self.token + struct.pack("<Q", capacity)
        self.capacity = capacity
        self.head = 0

    def frame(self, timeout=5.0):
        assert self.socket.poll(int(timeout * 1000)), "nothing from the worker"
        identity, frame = self.socket.recv_multipart()
        self.identity = identity
        return frame

    def offer(self, worker_pid=None):
        """The worker's first frame: its offer; mapped and checked here."""
        frame = self.frame()
        marker, kind, pid, fd, token, capacity, position, length = R_FRAME.unpack(frame)
        worker_pid = os.getpid() if worker_pid is None else worker_pid
        assert (marker, kind, pid, position, length) == (0xC1, b"R", worker_pid, 0, 0)
        handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
        try:
            assert os.fstat(handle).st_size == HEADER + capacity
            assert fcntl.fcntl(handle, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK
            ring = mmap.mmap(handle, HEADER + capacity)
        finally:
            os.close(handle)
        assert ring[:8] == b"ABRING1\0" and ring[8:24] == token
        self.worker_ring = (ring, token, capacity)
        return token

    def message(self, timeout=5.0):
        """("ring" or "socket", the bytes) of the worker's next message, or
        ("answer", the frame) of an A or an X."""
        frame = self.frame(timeout)
        if frame[:1] != b"\xc1":
            return "socket", frame
        if frame[1:2] != b"R":
            return "answer", frame
        _, kind, _, _, token, _, position, length = R_FRAME.unpack(frame)
        ring, ring_token, capacity = self.worker_ring
        assert kind == b"R" and token == ring_token and length > 0
        start = HEADER + position % capacity
        assert start + length <= HEADER + capacity  # never across the end
        data = ring[start:start + length]
        TAIL.pack_into(ring, 64, position + length)
        return "ring", data

    def send(self, frame):
        self.socket.send_multipart([self.identity, frame])

    def reference(self, position, length, pid=None, fd=None, capacity=None):
        return R_FRAME.pack(0xC1, b"R", os.getpid() if pid is None else pid,
                            self.fd if fd is None else fd, self.token,
                            self.capacity if capacity is None else capacity, position, length)

    def send_through_ring(self, data):
        offset = self.head % self.capacity
        if offset + len(data) > self.capacity:
            self.head += self.capacity - offset
            offset = 0
        self.ring[HEADER + offset:HEADER + offset + len(data)] = data
        self.send(self.reference(self.head, len(data)))
        self.head += len(data)

    def tail(self):
        return TAIL.unpack_from(self.ring, 64)[0]

    def close(self):
        if self.worker_ring is not None:
            self.worker_ring[0].close()
        self.ring.close()
        os.close(self.fd)
        self.socket.close()
        self.context.term()


@pytest.fixture(params=[True, False], ids=["native", "pure"])
def path(request):
    """Both receive and send paths: wire.bus's batches and pyzmq's own calls."""
    previous = wire.active
    wire.select(request.param)
    yield
    wire.select(previous)


@pytest.fixture
def gateway():
    gw = FakeGateway()
    yield gw
    # A transport a failed test did not close: its context terminated by the garbage
    # collector during a later test would wait for its sockets forever.
    while _started:
        context = _started.pop()._context
        if context is not None and not context.closed:
            context.destroy(linger=0)
    gw.close()


async def blocking(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


_started = []  # transports a failed test may have left open (closed by `gateway`)


def started(gateway, capacity=shared_ring.DEFAULT_CAPACITY):
    got = asyncio.Queue()
    transport = make_transport([gateway.url], "wk-ring", ring_capacity=capacity)
    transport.start(lambda link, data: got.put_nowait(bytes(data)))
    _started.append(transport)
    return transport, transport.links[0], got


async def until(predicate, what, timeout=5.0):
    """Polls (the transport takes a gateway's frames in on its own loop turns)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_accepted_ring_carries_large_messages_in_order(path, gateway):
    async def main():
        transport, link, _ = started(gateway, MIN_CAPACITY)
        token = await blocking(gateway.offer)
        await transport.send(link, b"before the answer" * 2000)  # 34 KiB: not yet accepted
        assert await blocking(gateway.message) == ("socket", b"before the answer" * 2000)
        gateway.send(b"\xc1A" + token)
        await until(lambda: link.ring_writer is not None, "the gateway's A taken in")
        sizes = [16 * KIB - 1, 16 * KIB, 100, 40 * KIB, 16 * KIB]
        messages = [os.urandom(size) for size in sizes]
        for data in messages:  # written before the fake reads any: 56 KiB of 64 used
            await transport.send(link, data)
        received = [await blocking(gateway.message) for _ in messages]
        assert [data for _, data in received] == messages  # byte-exact, in order
        # The last 16 KiB would straddle the end, and the next lap is not free yet.
        assert [how for how, _ in received] == ["socket", "ring", "socket", "ring", "socket"]
        again = os.urandom(48 * KIB)  # read up to 56 KiB now: from 64 KiB, the next lap
        await transport.send(link, again)
        assert await blocking(gateway.message) == ("ring", again)
        await transport.close(0.1)
    run(main())


def test_a_refused_or_unanswered_offer_keeps_everything_on_the_socket(path, gateway, caplog):
    async def main():
        transport, link, _ = started(gateway)
        token = await blocking(gateway.offer)
        big = os.urandom(64 * KIB)
        await transport.send(link, big)  # no answer yet
        assert await blocking(gateway.message) == ("socket", big)
        gateway.send(b"\xc1X" + token)
        gateway.send(b"\xc1A" + token)  # too late: an X is final
        await until(lambda: link.ring is None, "the gateway's X taken in")
        await transport.send(link, big)
        assert await blocking(gateway.message) == ("socket", big)
        assert link.ring is None
        await transport.close(0.1)
    run(main())
    assert "the gateway cannot map our shared-memory ring" in caplog.text


def test_no_ring_of_our_own_with_capacity_zero(path, gateway):
    async def main():
        transport, link, _ = started(gateway, 0)
        await transport.send(link, b"z" * (64 * KIB))
        assert await blocking(gateway.message) == ("socket", b"z" * (64 * KIB))  # no offer
        await transport.close(0.1)
    run(main())


def test_the_gateways_ring_is_mapped_and_read(path, gateway, caplog):
    """The worker maps the fake gateway's ring, replies A, hands every referenced message
    on byte-exact, stores its tail, and drops a bad reference (and a bad frame) with a
    log line, then goes on."""
    async def main():
        transport, link, got = started(gateway, 0)
        await transport.send(link, b"\x80")  # so that the fake learns our routing id
        await blocking(gateway.message)
        gateway.send(gateway.reference(0, 0))  # the offer
        assert await blocking(gateway.frame) == b"\xc1A" + gateway.token
        big = [os.urandom(size) for size in (16 * KIB, 60 * KIB, 40 * KIB, 30 * KIB)]
        for data in big[:3]:  # (the fake checks no room: one at a time)
            gateway.send_through_ring(data)
            assert await asyncio.wait_for(got.get(), 5) == data
            assert gateway.tail() == gateway.head  # stored once copied out
        assert gateway.head == 168 * KIB  # the 60 and the 40 each went to a lap's start
        gateway.socket.send_multipart([gateway.identity, b"\x81\xa1k\xa1x"])  # the socket too
        assert await asyncio.wait_for(got.get(), 5) == b"\x81\xa1k\xa1x"
        gateway.send(gateway.reference(0, 16 * KIB))  # behind the worker's position
        gateway.send(b"\xc1R" + bytes(10))  # too short
        gateway.send(b"\xc1Q" + gateway.token)  # no such type
        gateway.send_through_ring(big[3])
        assert await asyncio.wait_for(got.get(), 5) == big[3]
        assert got.empty()
        await transport.close(0.1)
    run(main())
    assert "transport frame dropped: bad reference: 16384 bytes at 0" in caplog.text
    assert "transport frame dropped: reference frame of 12 bytes" in caplog.text
    assert "transport frame dropped: unknown transport frame type b'Q'" in caplog.text


def test_an_unmappable_gateway_ring_is_refused(path, gateway, caplog):
    async def main():
        transport, link, got = started(gateway, 0)
        await transport.send(link, b"\x80")
        await blocking(gateway.message)
        gateway.send(gateway.reference(0, 16 * KIB, fd=1 << 30))  # a message, lost
        assert await blocking(gateway.frame) == b"\xc1X" + gateway.token
        gateway.send(gateway.reference(0, 0, capacity=3 * MIN_CAPACITY))
        assert await blocking(gateway.frame) == b"\xc1X" + gateway.token
        gateway.socket.send_multipart([gateway.identity, b"\x81\xa1k\xa1y"])
        assert await asyncio.wait_for(got.get(), 5) == b"\x81\xa1k\xa1y"
        assert got.empty() and link.peer_ring is None
        await transport.close(0.1)
    run(main())
    assert "cannot map the gateway's shared-memory ring (a message lost): cannot open" in caplog.text
    assert "capacity 196608 is not a power of two" in caplog.text


def test_a_warning_per_bad_frame_is_rate_limited(gateway, caplog):
    async def main():
        transport, link, got = started(gateway, 0)
        await transport.send(link, b"\x80")
        await blocking(gateway.message)
        for _ in range(50):
            gateway.send(b"\xc1?")
        gateway.socket.send_multipart([gateway.identity, b"\x80"])
        assert await asyncio.wait_for(got.get(), 5) == b"\x80"
        await transport.close(0.1)
    run(main())
    assert caplog.text.count("transport frame dropped") == 5


def test_a_worker_process_echoes_64_kib_through_both_rings(gateway):
    """The whole worker (tests_app's /echo): the request body through the fake gateway's
    ring, the response's start and body through the worker's."""
    from test_process import finish, spawn
    proc = spawn(gateway, "--bus-shared-memory", "131072")
    try:
        token = gateway.offer(proc.pid)
        gateway.send(b"\xc1A" + token)
        how, ready = gateway.message()
        assert how == "socket" and codec.decode(ready)["k"] == "ready"
        gateway.send(gateway.reference(0, 0))
        body = os.urandom(60 * KIB)
        event = codec.encode({"k": "event", "g": "gw-ring", "c": 1, "s": 0, "window": 1 << 20,
                              "scope": {"type": "http", "method": "POST", "path": "/echo",
                                        "headers": [[b"host", b"test"]]},
                              "event": {"type": "http.request", "body": body}})
        gateway.send_through_ring(event)
        while True:  # past the worker's answer to our offer, its ready to gw-ring, ...
            how, data = gateway.message()
            if how == "answer":
                assert data == b"\xc1A" + gateway.token
                continue
            message = codec.decode(data)
            if message["k"] == "event" and "body" in message["event"]:
                break
        assert how == "ring" and message["event"]["body"] == body
        assert gateway.tail() == gateway.head  # the worker read the request out of the ring
    finally:
        proc.terminate()
        finish(proc)


@pytest.mark.skipif(wire.bus is None, reason="pieces are the native module's")
def test_a_message_in_pieces_goes_whole_through_the_ring_or_the_socket(gateway):
    body = os.urandom(40 * KIB)
    event = {"type": "http.response.body", "body": body, "more_body": False}
    whole = codec.encode_event("gw", "wk-ring", 1, 0, event)

    def pieces():
        parts = wire.encode_event("gw", "wk-ring", 1, 0, event, True)
        assert type(parts).__name__ == "Parts"
        return parts

    async def main():
        transport, link, _ = started(gateway, MIN_CAPACITY)
        assert transport.takes_parts
        token = await blocking(gateway.offer)
        await transport.send(link, pieces())  # no ring yet: joined for the socket
        assert await blocking(gateway.message) == ("socket", whole)
        gateway.send(b"\xc1A" + token)
        await until(lambda: link.ring_writer is not None, "the gateway's A taken in")
        await transport.send(link, pieces())  # each piece copied into the ring
        assert await blocking(gateway.message) == ("ring", whole)
        await transport.close(0.1)
    run(main())


def test_the_ring_writes_a_message_given_in_pieces_as_one():
    ring = Ring(MIN_CAPACITY)
    peer = mapped(ring)

    class Pieces:  # the shape of the native module's Parts
        def __init__(self, *pieces):
            self.pieces = pieces

        def __len__(self):
            return sum(len(piece) for piece in self.pieces)

    try:
        body = os.urandom(30 * KIB)
        message = Pieces(b"head", memoryview(body)[5:], b"tail")
        assert take(peer, ring.write(message)) == b"head" + body[5:] + b"tail"
    finally:
        peer.close()
        ring.close()
