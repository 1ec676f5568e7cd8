"""Same-host shared-memory rings (docs/protocol.md §1.1) between a real gateway and the
Python worker: large POST bodies echoed byte-exact, each direction's messages of 16 KiB
or more through the sender's ring, as the gateway's /metrics counts them."""

from __future__ import annotations

import os
import subprocess

import pytest

from .harness import Background, free_port, gateway_binary, request, wait_for_log
from .test_metrics import sample

KIB = 1024
RING_MESSAGES = "asgi_bridge_bus_shared_memory_messages_total"


@pytest.fixture(autouse=True)
def _gateway_with_rings():
    help_text = subprocess.run([str(gateway_binary()), "--help"], capture_output=True,
                               text=True, timeout=10).stdout
    if "--bus-shared-memory" not in help_text:
        pytest.skip("this gateway has no shared-memory rings")


def start(bridge_factory, bus_url, worker_args=()):
    if not bus_url.startswith("zmq"):
        pytest.skip("rings are ZeroMQ only")
    port = free_port()
    bridge = bridge_factory("basic_app:app", gateway_args=["--admin", f"127.0.0.1:{port}"],
                            worker_args=worker_args)
    return bridge, lambda **labels: sample(request(port, "GET", "/metrics").body.decode(),
                                           RING_MESSAGES, **labels)


def echo(bridge, body):
    response = request(bridge.port, "POST", "/echo", body=body,
                       headers={"Content-Type": "application/octet-stream"})
    assert response.status == 200 and response.body == body


def test_large_bodies_go_through_both_rings(bridge_factory, bus_url):
    bridge, ring_messages = start(bridge_factory, bus_url)
    worker = bridge.workers[0]
    wait_for_log(worker, "the gateway maps our shared-memory ring")
    wait_for_log(worker, "mapped the gateway's shared-memory ring")
    echo(bridge, b"small")  # a message each way, over the socket
    before = ring_messages(direction="sent"), ring_messages(direction="received")
    sizes = [16 * KIB, 60 * KIB, 64 * KIB, 1024 * KIB]
    for size in sizes:
        echo(bridge, os.urandom(size))
    sent, received = (ring_messages(direction=d) - b for d, b in zip(("sent", "received"),
                                                                     before))
    # At least a body event each way per echo (1 MiB: several of them each way).
    assert sent >= len(sizes) + 1 and received >= len(sizes) + 1, (sent, received)


def test_concurrent_echoes_keep_both_rings(bridge_factory, bus_url):
    """8 clients at once: the rings fill and empty while both sides write, and neither
    side gives a ring up (the worker's tail store is one 8-byte write: see
    workers/python/tests/test_shared_ring.py for the store that once passed through 0)."""
    bridge, ring_messages = start(bridge_factory, bus_url)
    wait_for_log(bridge.workers[0], "the gateway maps our shared-memory ring")
    bodies = [os.urandom(64 * KIB) for _ in range(8)]

    def client(body):
        for _ in range(30):
            echo(bridge, body)
    for task in [Background(client, body) for body in bodies]:
        task.result()
    before = ring_messages(direction="sent"), ring_messages(direction="received")
    echo(bridge, bodies[0])  # both rings still in use
    assert ring_messages(direction="sent") > before[0]
    assert ring_messages(direction="received") > before[1]
    assert "broke our shared-memory ring" not in bridge.gateway.log()
    assert "shared-memory ring given up" not in bridge.workers[0].log()


def test_a_worker_without_a_ring_gets_everything_over_the_socket(bridge_factory, bus_url):
    """--bus-shared-memory 0: no offer, so the gateway makes no ring for it either."""
    bridge, ring_messages = start(bridge_factory, bus_url, ["--bus-shared-memory", "0"])
    for size in (16 * KIB, 64 * KIB):
        echo(bridge, os.urandom(size))
    assert ring_messages(direction="sent") == ring_messages(direction="received") == 0
    assert "shared-memory ring" not in bridge.workers[0].log()


def test_a_restarted_gateway_maps_the_workers_ring_again(bridge_factory, bus_url):
    """The worker keeps its ring across a gateway's restart on the same bus: the new
    gateway maps it from its first reference, and offers a ring of its own."""
    bridge, _ = start(bridge_factory, bus_url)
    wait_for_log(bridge.workers[0], "the gateway maps our shared-memory ring")
    body = os.urandom(64 * KIB)
    echo(bridge, body)
    bridge.gateway.stop()
    admin = free_port()
    bridge.start_gateway(["--admin", f"127.0.0.1:{admin}"])
    bridge.wait_ready()
    for _ in range(3):
        echo(bridge, body)
    metrics = request(admin, "GET", "/metrics").body.decode()
    assert sample(metrics, RING_MESSAGES, direction="received") >= 3
    # Its ring comes once it mapped ours, from the first response: the first request
    # body went over the socket, the second may too (the worker's accept can arrive
    # after it), the third cannot: the worker sent its accept before the second response.
    assert sample(metrics, RING_MESSAGES, direction="sent") >= 1
    assert "shared-memory ring given up" not in bridge.workers[0].log()
    bridge.workers[0].stop()  # before the gateway: its bye leaves at once
