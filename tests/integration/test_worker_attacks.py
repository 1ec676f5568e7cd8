"""Issue 12, items 7, 9, 13 and 14: the gateway against workers that break the
rules on purpose (until the bus is authenticated, a worker is whoever connects).
A scripted worker (fakeworker.py) ignores its byte window, floods broadcast
groups or sends garbage; real workers are killed or restarted. Each test
asserts by status, close code, log line or a memory bound.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import time

import msgpack
import pytest

from .fakeworker import FakeWorker, body, start
from .harness import Background, free_port, request, wait_for_log, wait_until
from .wsraw import RawWebSocket

MiB = 1024 * 1024
FLOOD = 64 * MiB             # what the hostile worker pushes for one connection
RSS_GROWTH_BOUND = 200 * MiB  # before the fix: 2.1 GB for the same flood
# A client's receive buffer: small, so that a client who does not read holds the
# gateway up soon, but not so small that reading the rest afterwards crawls.
RCVBUF = 256 * 1024


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def not_reading_client(port: int) -> socket.socket:
    """A client with a small receive buffer, who reads nothing for now."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    return s


def error_for(fake, conn: int, timeout: float = 10.0) -> dict:
    """The gateway's `error` message to the fake about connection conn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = fake.inbox.get(timeout=0.2)
        except Exception:
            continue
        if msg.get("k") == "error" and msg.get("c") == conn:
            return msg
    raise AssertionError(f"no error for conn {conn}")


# -- item 7: the byte window is enforced ---------------------------------------------------------


def test_http_worker_past_its_byte_window_fails_the_connection(fake_bridge):
    fake = fake_bridge.add_fake()
    gateway = fake_bridge.gateway
    before = rss(gateway.pid)
    client = not_reading_client(fake_bridge.port)
    client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    conn = fake.next_event(type_="http.request")["c"]
    fake.reply(conn, start(200))
    chunk = b"x" * (256 * 1024)
    for _ in range(FLOOD // len(chunk)):  # never waits for a credit
        fake.reply(conn, body(chunk, more=True))
    fake.sent_all()
    assert error_for(fake, conn)["message"] == "byte window exceeded"
    wait_for_log(gateway, f"worker {fake.id} sent past its byte window")
    assert rss(gateway.pid) - before < RSS_GROWTH_BOUND
    # The client, reading at last, gets what the kernel's buffers took, a
    # window and a message of the body, then the connection ends without the
    # terminating chunk: aborted.
    client.settimeout(20)
    received = b""
    while True:
        data = client.recv(1 << 20)
        if not data:
            break
        received += data
    client.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert len(received) < FLOOD // 4
    assert not received.endswith(b"0\r\n\r\n")
    # Other connections are not harmed.
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=20)
    conn = fake.next_event(type_="http.request")["c"]
    fake.reply(conn, start(200))
    fake.reply(conn, body(b"fine"))
    assert (pending.result().status, pending.result().body) == (200, b"fine")


def test_websocket_worker_past_its_byte_window_closes_1011(fake_bridge):
    fake = fake_bridge.add_fake()
    gateway = fake_bridge.gateway
    before = rss(gateway.pid)
    c = RawWebSocket(fake_bridge.port, "/ws", timeout=30, rcvbuf=RCVBUF)
    with c:
        conn = fake.next_event(type_="websocket.connect")["c"]
        fake.reply(conn, {"type": "websocket.accept", "subprotocol": None, "headers": []})
        assert c.read_handshake().status == 101
        message = b"m" * (256 * 1024)
        for _ in range(FLOOD // len(message)):
            fake.reply(conn, {"type": "websocket.send", "bytes": message})
        fake.sent_all()
        assert error_for(fake, conn)["message"] == "byte window exceeded"
        wait_for_log(gateway, f"worker {fake.id} sent past its byte window")
        assert rss(gateway.pid) - before < RSS_GROWTH_BOUND
        delivered = 0
        while True:
            opcode, payload = c.read_message()
            if opcode == 0x8:
                break
            delivered += len(payload)
        assert int.from_bytes(payload[:2], "big") == 1011
        assert delivered < FLOOD // 4


def test_credit_for_events_never_sent_fails_the_connection(fake_bridge):
    """A worker that acknowledges more events than it got would have the
    gateway read the client without bound and queue it all towards itself."""
    fake = fake_bridge.add_fake()
    pending = Background(request, fake_bridge.port, "POST", "/", body=b"x", timeout=20)
    conn = fake.next_event(type_="http.request")["c"]
    fake.send({"v": 1, "k": "credit", "g": fake.gateway_id, "w": fake.id, "c": conn,
               "events": 1000})
    assert pending.result().status == 502
    wait_for_log(fake_bridge.gateway, "a credit for events never sent")


def fill_client(fake, conn: int, message: bytes) -> None:
    """Sends WebSocket messages as fast as the window allows until the client,
    who reads nothing, holds the gateway's writes up (credits stop)."""
    sent, credits, last, since = 0, 0, -1, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() - since < 1:
        assert time.monotonic() < deadline, "credits never settled"
        credits += fake.credited()
        while sent - credits <= MiB:
            fake.reply(conn, {"type": "websocket.send", "bytes": message})
            sent += len(message)
        if credits != last:
            last, since = credits, time.monotonic()
        time.sleep(0.05)


def test_empty_messages_past_the_inbox_bound_close_1011(fake_bridge):
    """Empty messages weigh nothing in the byte window: their number is bounded."""
    fake = fake_bridge.add_fake()
    c = RawWebSocket(fake_bridge.port, "/ws", timeout=30, rcvbuf=RCVBUF)
    with c:
        conn = fake.next_event(type_="websocket.connect")["c"]
        fake.reply(conn, {"type": "websocket.accept", "subprotocol": None, "headers": []})
        assert c.read_handshake().status == 101
        fill_client(fake, conn, b"f" * (64 * 1024))
        for _ in range(20_000):  # past the 16,384 an inbox holds
            fake.reply(conn, {"type": "websocket.send", "bytes": b""})
        fake.sent_all()
        wait_for_log(fake_bridge.gateway, f"worker {fake.id} sent 16384 messages the client has not taken")
        empties = 0
        while True:
            opcode, payload = c.read_message()
            if opcode == 0x8:
                break
            empties += payload == b""
        assert int.from_bytes(payload[:2], "big") == 1011
        assert empties < 16_384


def test_bus_message_over_the_size_limit_drops_that_worker(bridge_factory, bus_url):
    """libzmq refuses the frame (ZMQ_MAXMSGSIZE) before allocating it, and drops the
    sender's connection, which the gateway sees at once."""
    if not bus_url.startswith("zmq://"):
        pytest.skip("the scripted worker speaks ZeroMQ only")
    b = bridge_factory(None, workers=0, gateway_args=["--max-message-size", "1000",
                                                      "--max-body-size", "1000"])
    fake = FakeWorker(b.bus_url)
    try:
        wait_for_log(b.gateway, f"worker {fake.id} joined")
        before = rss(b.gateway.pid)
        fake.send({"v": 1, "k": "heartbeat", "w": fake.id, "capacity": 4, "active": 0,
                   "padding": b"p" * (64 * MiB)})  # 256 + 64 KiB is the limit
        wait_for_log(b.gateway, f"worker {fake.id} lost (disconnected)")
        assert rss(b.gateway.pid) - before < 32 * MiB
    finally:
        fake.close()


# -- item 7: group relays are bounded per worker -------------------------------------------------


def test_group_flood_is_bounded_and_others_are_served(bridge_factory, bus_url):
    if not bus_url.startswith("zmq://"):
        pytest.skip("group messages travel through the gateway on ZeroMQ only")
    admin = free_port()
    b = bridge_factory(gateway_args=["--admin", f"127.0.0.1:{admin}"])
    before = rss(b.gateway.pid)
    flooder = FakeWorker(b.bus_url, capacity=0)  # takes no requests: it only floods
    try:
        big = msgpack.packb({"v": 1, "k": "group", "w": flooder.id, "s": 0, "group": "room",
                             "event": {"type": "websocket.send", "bytes": b"g" * (8 * MiB)}},
                            use_bin_type=True)
        flooder.send_raw(big, times=150)  # 1.2 GB
        peak = 0
        answered = None
        deadline = time.monotonic() + 60
        while not flooder._outbox.empty() and time.monotonic() < deadline:
            peak = max(peak, rss(b.gateway.pid))
            if answered is None:
                answered = request(b.port, "GET", "/", timeout=20)
            time.sleep(0.05)
        flooder.sent_all()
        peak = max(peak, rss(b.gateway.pid))
        assert answered is not None and (answered.status, answered.body) == (200, b"hello")
        r = request(b.port, "GET", "/", timeout=20)
        assert (r.status, r.body) == (200, b"hello")
        assert peak - before < 400 * MiB, f"gateway grew by {(peak - before) // MiB} MiB"
        metrics = request(admin, "GET", "/metrics").body.decode()
        dropped = [line for line in metrics.splitlines()
                   if line.startswith("asgi_bridge_group_relay_dropped_total ")]
        assert dropped and int(dropped[0].split()[1]) > 0, metrics
        wait_for_log(b.gateway, f"worker {flooder.id}: group message not relayed")
    finally:
        flooder.close()


def group_messages(fake, timeout: float) -> list[dict]:
    """The group messages the fake worker receives within timeout seconds."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = fake.inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        if msg.get("k") == "group":
            got.append(msg)
    return got


def test_group_message_with_a_borrowed_origin_is_dropped(fake_bridge):
    """Receivers order group messages by (origin, sequence): a worker that names
    another as the origin could silence that worker's messages everywhere."""
    sender, receiver = fake_bridge.add_fake(), fake_bridge.add_fake()
    for fake in (sender, receiver):
        wait_for_log(fake_bridge.gateway, f"worker {fake.id} joined")

    def group(origin: str, text: str) -> dict:
        return {"v": 1, "k": "group", "w": origin, "s": 2**40, "group": "room",
                "event": {"type": "websocket.send", "text": text}}
    sender.send(group(receiver.id, "forged"))
    wait_for_log(fake_bridge.gateway, f"worker {sender.id}: group message claiming to be from "
                                      f"{receiver.id} dropped")
    sender.send(group(sender.id, "genuine"))
    texts = [m["event"]["text"] for m in group_messages(receiver, 2.0)]
    assert texts == ["genuine"], texts


# -- item 9: a flood of garbage gives a bounded log ----------------------------------------------


def test_malformed_flood_logs_a_bounded_number_of_lines(fake_bridge):
    fake = fake_bridge.add_fake()
    garbage = msgpack.packb({"v": 2, "k": "event"})  # wrong version: malformed
    fake.send_raw(garbage, times=100_000)
    fake.sent_all(timeout=120)
    marker = f"worker {fake.id}: malformed message dropped"
    wait_until(lambda: marker in fake_bridge.gateway.log(), 10, "a malformed line")
    # The gateway still serves (and has read the flood: the request queues behind it).
    pending = Background(request, fake_bridge.port, "GET", "/", timeout=30)
    conn = fake.next_event(type_="http.request", timeout=30)["c"]
    fake.reply(conn, start(200))
    fake.reply(conn, body(b"ok"))
    assert pending.result().status == 200
    assert fake_bridge.gateway.log().count(marker) <= 10
    # The next window's first line says how many were left out.
    time.sleep(10.5)
    fake.send_raw(garbage)
    wait_until(lambda: "more like it in the last 10 s" in fake_bridge.gateway.log(), 10,
               "the 'and N more' line")
    lines = [line for line in fake_bridge.gateway.log().splitlines() if marker in line]
    assert len(lines) <= 11
    suppressed = int(lines[-1].split("(and ")[1].split()[0])
    assert suppressed >= 90_000


# -- item 13: a killed worker is noticed at once ---------------------------------------------------


def test_killed_worker_is_noticed_by_its_disconnect_not_heartbeats(bridge_factory, bus_url):
    if not bus_url.startswith("zmq"):
        pytest.skip("Redis has no connection per worker; heartbeats find the dead")
    # Heartbeats every 10 s: a death found by silence would take 30 s.
    b = bridge_factory(gateway_args=["--heartbeat-interval", "10"])
    victim = Background(request, b.port, "POST", "/hang?id=victim", body=b"x", timeout=30)
    victim_pid = int(b.state.wait_for("started-victim"))
    killed_at = time.monotonic()
    os.kill(victim_pid, signal.SIGKILL)
    r = victim.result(timeout=30)
    assert r.status == 502
    log = b.gateway.log()
    assert "lost (disconnected): 1 connection failed" in log
    assert "silent for 3 heartbeat intervals" not in log
    # The 502 came from the disconnect: heartbeats could not have found it yet.
    assert victim.finished_at - killed_at < 10


def test_killed_worker_s_unacknowledged_get_is_re_dispatched(bridge_factory, bus_url):
    if not bus_url.startswith("zmq"):
        pytest.skip("Redis has no connection per worker; heartbeats find the dead")
    b = bridge_factory(workers=2, gateway_args=["--heartbeat-interval", "10"])
    # /slow answers nothing before its sleep: the GET stays unacknowledged.
    pending = Background(request, b.port, "GET", "/slow?id=again&t=2", timeout=30)
    first_pid = int(b.state.wait_for("started-again"))
    (b.state.file("started-again")).unlink()
    os.kill(first_pid, signal.SIGKILL)
    second_pid = int(b.state.wait_for("started-again", timeout=8))
    assert second_pid != first_pid
    r = pending.result(timeout=30)
    assert (r.status, r.body) == (200, b"slow done")
    assert "lost (disconnected): 1 connection re-dispatched" in b.gateway.log()


# -- item 14: a rolling restart logs what happened -------------------------------------------------


def test_rolling_restart_logs_no_failure(bridge_factory):
    b = bridge_factory()
    slow = Background(request, b.port, "GET", "/slow?id=roll&t=1", timeout=30)
    b.state.wait_for("started-roll")
    old = b.workers[0]
    b.start_worker()
    old.signal(signal.SIGTERM)
    assert slow.result().status == 200
    old.wait(15)
    wait_until(lambda: " left" in b.gateway.log(), 10, "the departure line")
    log = b.gateway.log()
    departure = [line for line in log.splitlines() if "worker" in line and " left" in line]
    assert departure and all("failed" not in line for line in departure), departure
    assert "connections failed" not in log and "connection failed" not in log
    assert "[warning]" not in "\n".join(departure)
    r = request(b.port, "GET", "/", timeout=20)
    assert (r.status, r.body) == (200, b"hello")
