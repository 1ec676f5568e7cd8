"""The ZeroMQ transport against a plain ROUTER socket on 127.0.0.1."""

import asyncio
import os
import sys

import pytest
import zmq

from asgi_bridge import codec, wire
from asgi_bridge.transport import (ZmqTransport, check_bus_urls, make_transport, split_bus_urls,
                                  zmq_endpoint)
from bridge_helpers import run


@pytest.fixture
def router():
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"zmq://127.0.0.1:{port}"
    sock.close()
    context.term()


def test_bus_urls():
    assert split_bus_urls(["zmq://a:1,zmq://b:2", " zmq+ipc:///tmp/x "]) == [
        "zmq://a:1", "zmq://b:2", "zmq+ipc:///tmp/x"]
    assert zmq_endpoint("zmq://127.0.0.1:5555") == "tcp://127.0.0.1:5555"
    assert zmq_endpoint("zmq://[::1]:5555") == "tcp://[::1]:5555"
    assert zmq_endpoint("zmq+ipc:///run/gw.sock") == "ipc:///run/gw.sock"
    for bad, message in (("zmq://host", "expected zmq://HOST:PORT"),
                         ("tcp://x:1", "unknown scheme"),
                         ("zmq://host:-1", "bus URL 'zmq://host:-1': Port could not be cast"),
                         ("zmq://host:70000", "bus URL 'zmq://host:70000': Port out of range")):
        with pytest.raises(ValueError, match=message):
            zmq_endpoint(bad)
    check_bus_urls(["redis://localhost:6379/0"])
    check_bus_urls(["zmq://a:1", "zmq+ipc:///tmp/x"])
    for bad, message in ((["redis://localhost:6379/0", "zmq://a:1"], "the only --bus"),
                         (["redis://h:1/0", "redis://h:2/0"], "the only --bus"),
                         (["redis://h:x/0"], "bad port"),
                         (["redis://h:1/zero"], "bad database number"),
                         (["zmq://a:1", "tcp://x:1"], "unknown scheme")):
        with pytest.raises(ValueError, match=message):
            check_bus_urls(bad)


def test_messages_both_ways_with_the_worker_id_as_routing_id(router):
    router, url = router

    async def main():
        got = asyncio.Queue()
        transport = make_transport([url], "wk-route")
        transport.start(lambda link, data: got.put_nowait((link, data)))
        link = transport.links[0]
        await transport.send(link, b"hello gateway")
        loop = asyncio.get_running_loop()
        identity, data = await loop.run_in_executor(None, recv, router)
        assert (identity, data) == (b"wk-route", b"hello gateway")
        for i in range(200):  # more than one batch
            router.send_multipart([identity, b"m%d" % i])
        received = [await asyncio.wait_for(got.get(), 5) for _ in range(200)]
        assert [data for _, data in received] == [b"m%d" % i for i in range(200)]
        assert all(lnk is link for lnk, _ in received)
        await transport.close(0.1)
    run(main())


@pytest.mark.parametrize("native", [True, False], ids=["native", "pure"])
def test_a_multipart_message_is_dropped_and_logged(router, native, caplog):
    """Both receive loops (wire.bus's batches and pyzmq's calls) drop it whole and go on."""
    router, url = router
    previous = wire.active
    wire.select(native)

    async def main():
        got = asyncio.Queue()
        transport = make_transport([url], "wk-multi")
        transport.start(lambda link, data: got.put_nowait(data))
        await transport.send(transport.links[0], b"hello")
        identity, _ = await asyncio.get_running_loop().run_in_executor(None, recv, router)
        router.send_multipart([identity, b"a", b"b", b"c"])
        router.send_multipart([identity, b"after"])
        assert await asyncio.wait_for(got.get(), 5) == b"after"
        await transport.close(0.1)
    try:
        run(main())
    finally:
        wire.select(previous)
    assert "dropped a message of 3 frames (expected 1)" in caplog.text


def recv(sock, timeout=5000):
    """The next message, skipping the worker's shared-memory ring offer (a transport
    frame: tests/test_shared_ring.py is about those)."""
    while True:
        assert sock.poll(timeout), "nothing arrived"
        frames = sock.recv_multipart()
        if frames[-1][:1] != b"\xc1":
            return frames


class TinyBuffers(ZmqTransport):
    SNDHWM = 1


def test_backpressure_keeps_order_and_releases_senders(router):
    router, url = router

    async def main():
        transport = TinyBuffers([(url, zmq_endpoint(url))], "wk-slow")
        transport.start(lambda link, data: None)
        link = transport.links[0]
        big = [bytes([i]) * (512 * 1024) for i in range(40)]  # 20 MiB: more than TCP buffers
        sends = [asyncio.ensure_future(transport.send(link, data)) for data in big]
        await asyncio.sleep(0)  # each send task takes its place in order
        transport.send_nowait(link, b"heartbeat")
        await asyncio.sleep(0.3)
        assert link.backlog, "the router reads nothing: ZeroMQ must have pushed back"
        assert not all(s.done() for s in sends)
        loop = asyncio.get_running_loop()
        received = await loop.run_in_executor(
            None, lambda: [recv(router)[1] for _ in range(len(big) + 1)])
        assert received == big + [b"heartbeat"]
        await asyncio.wait_for(asyncio.gather(*sends), 5)
        assert not link.backlog
        await transport.close(0.1)
    run(main(), timeout=30)


@pytest.mark.skipif(wire._native is None, reason="asgi_bridge._native is not built")
def test_a_large_message_goes_by_reference_both_ways(router):
    """native/bus.cpp hands a message of 16 KiB or more to ZeroMQ without a copy; once
    sent, the next batch drops the reference it held (no leak per large response). A
    large message received is read where ZeroMQ holds it, decoded the same."""
    router, url = router
    previous = wire.active
    wire.select(True)

    async def main():
        transport = make_transport([url], "wk-big")
        transport.start(lambda link, data: None)
        link = transport.links[0]
        big = os.urandom(64 * 1024)
        baseline = sys.getrefcount(big)
        for _ in range(3):
            await transport.send(link, big)
        loop = asyncio.get_running_loop()
        received = await loop.run_in_executor(None, lambda: [recv(router)[1] for _ in range(3)])
        assert received == [big] * 3
        for _ in range(50):  # ZeroMQ lets go of it after the write; the next batch drops it
            await transport.send(link, b"small")
            await loop.run_in_executor(None, recv, router)
            if sys.getrefcount(big) == baseline:
                break
        assert sys.getrefcount(big) == baseline
        # and received over ZeroMQ's own buffer: what decode reads, the same bytes
        got = asyncio.Queue()
        transport._on_message = lambda link, data: got.put_nowait(data)
        message = codec.encode({"k": "event", "g": "gw-1", "c": 1, "s": 1,
                                "event": {"type": "http.request", "body": big}})
        router.send_multipart([b"wk-big", message])
        data = await asyncio.wait_for(got.get(), 5)
        assert type(data).__name__ == "Frame" and memoryview(data).readonly
        assert bytes(data) == message
        assert wire.decode(data) == codec.decode(message) == codec.decode(data)
        del data
        await transport.close(0.1)
    try:
        run(main())
    finally:
        wire.select(previous)


def io_thread_policies():
    """Scheduling policy of each ZeroMQ I/O thread of this process (Linux /proc)."""
    policies = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            if not f.read().startswith("ZMQbg/IO"):
                continue
        with open(f"/proc/self/task/{tid}/sched") as f:
            policies += [int(line.split(":")[1]) for line in f if line.startswith("policy")]
    return policies


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_zeromq_io_thread_runs_as_sched_batch(router):
    # Its wake-ups must not preempt the event loop for every message (transport.py).
    router, url = router

    async def main():
        before = io_thread_policies().count(os.SCHED_BATCH)  # (the router's is ordinary)
        transport = make_transport([url], "wk-batch")
        transport.start(lambda link, data: None)
        for _ in range(100):  # the thread names itself once it runs
            if io_thread_policies().count(os.SCHED_BATCH) > before:
                break
            await asyncio.sleep(0.02)
        assert io_thread_policies().count(os.SCHED_BATCH) == before + 1
        await transport.close(0.1)
    run(main())
