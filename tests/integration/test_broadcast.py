"""Gateway-side broadcast (docs/broadcast.md, issue 16) against real gateways and workers.

Two gateways share one bus (ZeroMQ: a worker connected to both; Redis: one server), each
with an admin listener. Sockets are subscribed by the app (``apps/broadcast_app.py``) and
publishes come from a worker (``asgi_bridge.publish``), from ``POST /publish`` (with and
without ``--publish-token``) and from a plain Redis ``PUBLISH``: every subscribed socket on
both gateways gets each message once, in publish order, and nothing else. Unsubscribing and
closing end subscriptions (the gauge says so); a subscriber that stops reading is closed
1013 while the others get everything; bad names, bodies and sizes get a clear error.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import threading
from pathlib import Path
from typing import Optional

import pytest

from .harness import (Gateway, Proc, StateDir, Worker, bus_args, free_port, request, wait_for_log,
                      wait_until)
from .test_cpp_workers import example_binary
from .wsraw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawWebSocket

pytestmark = pytest.mark.every_bus

APP = "broadcast_app:app"
TOKEN = "s3cret-token"


class Cluster:
    """Two gateways with admin listeners, on one bus, and workers serving both."""

    def __init__(self, bus_url: str, tmp_path: Path, args=(), token_on_first=False, workers=1,
                 cpp=False):
        self.logs = tmp_path / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.state = StateDir(tmp_path / "state")
        self.procs = []
        self.gateways = []
        try:
            self._start(bus_url, args, token_on_first, workers, cpp)
        except BaseException:  # a cluster that did not come up leaves no process behind
            self.close()
            raise

    def _start(self, bus_url: str, args, token_on_first: bool, workers: int, cpp: bool):
        redis = bus_url.startswith("redis")
        urls = [bus_url, bus_url if redis else f"zmq://127.0.0.1:{free_port()}"]
        self.admins = [free_port(), free_port()]
        for i, url in enumerate(urls):
            # --drain-timeout 0: the tests leave sockets open; stopping need not wait for them.
            extra = ["--admin", f"127.0.0.1:{self.admins[i]}", "--drain-timeout", "0", *args]
            if i == 0 and token_on_first:
                extra += ["--publish-token", TOKEN]
            gw = Gateway(url, self.logs, extra, name=f"gateway{i + 1}")
            self.gateways.append(gw)
            self.procs.append(gw)
        for gw in self.gateways:
            gw.wait_listening()
        worker_bus = bus_url if redis else ",".join(urls)
        for i in range(workers):
            if cpp:  # the C++ SDK's chat example: /live speaks the extension
                argv = [example_binary("chat"), "--log-level", "debug", *bus_args(bus_url, "worker")]
                for url in ([bus_url] if redis else urls):
                    argv += ["--bus", url]
                self.procs.append(Proc(f"cpp-chat{i + 1}", argv, self.logs / f"cpp-chat{i + 1}.log"))
            else:
                self.procs.append(Worker(APP, worker_bus, self.logs, self.state.path,
                                         bus_args(bus_url, "worker"), name=f"worker{i + 1}"))
        for gw in self.gateways:
            wait_until(lambda: request(gw.port, "GET", "/__ready").status != 503, 15,
                       f"{gw.name} to be served")

    def close(self):
        for proc in reversed(self.procs):
            proc.close()

    def port(self, i: int) -> int:
        return self.gateways[i].port


@pytest.fixture
def cluster(bus_url, tmp_path):
    made = []

    def start(**kwargs) -> Cluster:
        c = Cluster(bus_url, tmp_path / f"c{len(made)}", **kwargs)
        made.append(c)
        return c
    yield start
    for c in made:
        c.close()


def subscriber(port: int, channels: str, ident: str = "x", rcvbuf: Optional[int] = None) -> RawWebSocket:
    ws = RawWebSocket(port, f"/sub?channels={channels}&id={ident}", rcvbuf=rcvbuf)
    assert ws.read_handshake().status == 101
    assert ws.read_message() == (TEXT, b"subscribed ext=1")
    return ws


def command(ws: RawWebSocket, text: str) -> str:
    ws.send_frame(TEXT, text.encode())
    opcode, payload = ws.read_message()
    assert opcode == TEXT, (opcode, payload)
    return payload.decode()


def assert_nothing_more(ws: RawWebSocket):
    """No stray broadcast is queued before the answer to an echo."""
    assert command(ws, "echo:probe") == "probe"


def publish_from_worker(port: int, channel: str, n: int = 1, size: int = 0, binary=False):
    query = f"channel={channel}&n={n}&size={size}" + ("&bytes=1" if binary else "")
    return request(port, "POST", f"/publish?{query}", body=b"", timeout=60)


def admin_post(port: int, path: str, body: bytes, headers: Optional[dict] = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def metric(admin_port: int, name: str) -> float:
    text = request(admin_port, "GET", "/metrics").body.decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


# -- publishes reach every subscribed socket on both gateways ----------------------------


def test_worker_publish_reaches_every_subscriber_in_order_on_two_gateways(cluster):
    c = cluster()
    subs = [subscriber(c.port(i % 2), "room", f"s{i}") for i in range(4)]
    both = subscriber(c.port(0), "room,other", "both")
    other = subscriber(c.port(0), "other", "other")
    r = publish_from_worker(c.port(1), "room", n=200)
    assert (r.status, r.body) == (200, b"ok")
    for ws in subs + [both]:
        got = [ws.read_message() for _ in range(200)]
        assert got == [(TEXT, f"room-{i}".encode()) for i in range(200)]
    publish_from_worker(c.port(0), "other", n=1, binary=True)
    assert both.read_message() == (BINARY, b"other-0")
    assert other.read_message() == (BINARY, b"other-0")  # and no room message before it
    for ws in subs + [both, other]:
        assert_nothing_more(ws)
    assert metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 5
    assert metric(c.admins[1], "asgi_bridge_broadcast_subscriptions") == 2
    assert metric(c.admins[0], "asgi_bridge_broadcast_frames_total") == 3 * 200 + 2


def test_admin_publish_with_and_without_token(cluster):
    c = cluster(token_on_first=True)
    subs = [subscriber(c.port(0), "news"), subscriber(c.port(1), "news")]
    body = json.dumps({"channel": "news", "text": "hello"}).encode()
    assert admin_post(c.admins[0], "/publish", body)[0] == 401
    assert admin_post(c.admins[0], "/publish", body, {"Authorization": "Bearer wrong"})[0] == 401
    status, answer = admin_post(c.admins[0], "/publish", body, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 202, answer
    assert json.loads(answer) == {"channel": "news", "bytes": 5}
    # Read before publishing from the other gateway: order holds per source only (on ZeroMQ
    # this one reaches the second gateway through a worker's relay, the next ones directly).
    for ws in subs:
        assert ws.read_message() == (TEXT, b"hello")
    # The second gateway has no token: anyone reaching its admin listener may publish.
    raw = bytes(range(256))
    status, _ = admin_post(c.admins[1], "/publish",
                           json.dumps({"channel": "news", "bytes_b64": base64.b64encode(raw).decode()}).encode())
    assert status == 202
    status, _ = admin_post(c.admins[1], "/publish?channel=news", "plain ✓".encode(),
                           {"Content-Type": "text/plain; charset=utf-8"})
    assert status == 202
    status, _ = admin_post(c.admins[1], "/publish?channel=news", b"\x00\xff",
                           {"Content-Type": "application/octet-stream"})
    assert status == 202
    for ws in subs:
        assert ws.read_message() == (BINARY, raw)
        assert ws.read_message() == (TEXT, "plain ✓".encode())
        assert ws.read_message() == (BINARY, b"\x00\xff")
        assert_nothing_more(ws)


def test_plain_redis_publish(cluster, bus_url):
    if not bus_url.startswith("redis://"):
        pytest.skip("a Redis bus only")
    import redis
    c = cluster()
    subs = [subscriber(c.port(0), "ticks"), subscriber(c.port(1), "ticks")]
    port, db = re.match(r"redis://127.0.0.1:(\d+)/(\d+)", bus_url).groups()
    client = redis.Redis(port=int(port), db=int(db))
    assert client.publish("asgi:broadcast:ticks", "EUR 1.08") == 2  # one per gateway
    client.publish("asgi:broadcast-bin:ticks", b"\x01\x02")
    client.publish("asgi:broadcast:bad name!", "dropped")  # not a channel name: dropped
    client.publish("asgi:broadcast:ticks", b"\xff not utf-8")  # text that is not UTF-8: dropped
    client.publish("asgi:broadcast:ticks", "last")
    for ws in subs:
        assert ws.read_message() == (TEXT, b"EUR 1.08")
        assert ws.read_message() == (BINARY, b"\x01\x02")
        assert ws.read_message() == (TEXT, b"last")
        assert_nothing_more(ws)
    wait_for_log(c.gateways[0], "redis: publish dropped: channel must be")
    wait_for_log(c.gateways[0], "redis: publish dropped: text message is not valid UTF-8")
    assert metric(c.admins[0], 'asgi_bridge_broadcast_dropped_total{reason="invalid"}') == 2


def test_cpp_app_subscribes_and_publishes(cluster):
    c = cluster(cpp=True)
    subs = []
    for i in range(2):
        ws = RawWebSocket(c.port(i), "/live")
        assert ws.read_handshake().status == 101
        assert command(ws, "sub:room") == "ok sub:room"
        subs.append(ws)
    publisher = RawWebSocket(c.port(0), "/live")
    assert publisher.read_handshake().status == 101
    for i in range(50):
        assert command(publisher, f"pub:room:m{i}") == f"ok pub:room:m{i}"
    for ws in subs:
        assert [ws.read_message() for _ in range(50)] == [(TEXT, f"m{i}".encode()) for i in range(50)]
    # An admin publish reaches the other gateway through the C++ worker's relay (ZeroMQ).
    assert admin_post(c.admins[0], "/publish?channel=room", b"relayed", {"Content-Type": "text/plain"})[0] == 202
    for ws in subs:
        assert ws.read_message() == (TEXT, b"relayed")
    assert command(subs[1], "unsub:room") == "ok unsub:room"
    command(publisher, "pub:room:after")
    assert subs[0].read_message() == (TEXT, b"after")
    assert_nothing_more_cpp(subs[1])
    answer = command(subs[0], "sub:bad name")
    assert answer.startswith("error asgi-bridge.subscribe.channel:") and "not a channel name" in answer
    assert metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 1
    assert metric(c.admins[1], "asgi_bridge_broadcast_subscriptions") == 0


def assert_nothing_more_cpp(ws: RawWebSocket):
    assert command(ws, "nonsense") == "error unknown command"


# -- subscriptions end with unsubscribe and with the socket -------------------------------


def test_unsubscribe_and_close_end_subscriptions(cluster):
    c = cluster()
    a = subscriber(c.port(0), "a,b", "a")
    b = subscriber(c.port(0), "a", "b")
    assert metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 3
    assert command(a, "unsubscribe:a") == "ok unsubscribe:a"
    assert command(a, "unsubscribe:never") == "ok unsubscribe:never"  # not subscribed: nothing
    assert metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 2
    publish_from_worker(c.port(0), "a")
    publish_from_worker(c.port(0), "b")
    assert b.read_message() == (TEXT, b"a-0")
    assert a.read_message() == (TEXT, b"b-0")  # a-0 never came: unsubscribed
    assert command(a, "subscribe:a") == "ok subscribe:a"
    assert command(a, "subscribe:a") == "ok subscribe:a"  # twice is once
    assert metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 3
    b.close()  # no close frame: the socket just goes
    c.state.wait_for("ws-b", contains="disconnect 1006")
    wait_until(lambda: metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 2, 10,
               "the closed socket's subscription to end")
    publish_from_worker(c.port(0), "a")
    assert a.read_message() == (TEXT, b"a-0")
    a.send_frame(CLOSE, b"\x03\xe8")
    a.read_close()
    a.close()
    wait_until(lambda: metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 0, 10,
               "every subscription to end")


# -- a slow subscriber ------------------------------------------------------------------------


@pytest.mark.zmq_only("one gateway is enough; the policy does not depend on the bus")
def test_slow_subscriber_is_closed_1013_while_fast_ones_get_everything(cluster):
    c = cluster(args=["--broadcast-queue", "32"])
    slow = subscriber(c.port(0), "feed", "slow", rcvbuf=4096)
    fast = [subscriber(c.port(0), "feed", f"fast{i}") for i in range(2)]
    per_round, size = 16, 64 * 1024

    def publish_round(r):
        assert publish_from_worker(c.port(0), "feed", n=per_round, size=size).status == 200
        results = [None] * len(fast)

        def read(i):
            results[i] = [fast[i].read_message() for _ in range(per_round)]
        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(fast))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for got in results:
            assert [m[1][:12].rstrip(b".") for m in got] == \
                [f"feed-{i}".encode() for i in range(per_round)], r

    # In rounds smaller than the queue, each read whole by the fast sockets before the
    # next: they never fall behind by more than a round. The slow one never reads: it falls
    # behind by the socket buffers (a few MiB) plus the queue within some rounds.
    for r in range(60):
        publish_round(r)
        if "disconnect 1013" in (c.state.read("ws-slow") or ""):
            break
    c.state.wait_for("ws-slow", contains="disconnect 1013", timeout=10)
    publish_round("after")  # the others go on
    wait_for_log(c.gateways[0], "broadcast frames queued and not written: closing 1013")
    assert metric(c.admins[0], 'asgi_bridge_broadcast_dropped_total{reason="slow_subscriber"}') >= 1
    for ws in fast:
        assert_nothing_more(ws)
    # The slow socket's session is gone (the close deadline cut the TCP connection it never
    # read the close from), and with it its queue; the fast ones stay.
    wait_until(lambda: metric(c.admins[0], "asgi_bridge_open_connections") == 2, 15,
               "the slow socket's session to end")
    assert metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 2
    slow.close()


def test_stalled_subscriber_catches_up_with_every_frame_whole(cluster):
    """A subscriber that stops reading while publishes go on fills its socket: the gateway
    writes a frame in part and queues the next ones (the fan-out's direct writes, then
    Beast's); the client's pings meanwhile are answered by Beast. Once it reads again it gets
    every publish whole and in order, each pong a frame of its own between whole frames, and
    then the app's own message: no write ever cut into another."""
    c = cluster()
    ws = subscriber(c.port(0), "feed", "stalled")
    # 8 MiB: more than the socket buffers take from a client that does not read (its
    # receive window stays at its first size; the gateway's send buffer grows to 4 MiB).
    n, size = 64, 128 * 1024
    assert publish_from_worker(c.port(0), "feed", n=n, size=size).status == 200
    wait_until(lambda: metric(c.admins[0], "asgi_bridge_broadcast_publishes_total") == n, 15,
               "the gateway to fan every publish out")
    for i in range(3):
        ws.send_frame(PING, f"p{i}".encode())
    messages, pongs, parts = [], [], []
    while len(messages) < n:
        fin, opcode, payload = ws.read_frame()
        if opcode == PONG:
            pongs.append(payload)
            continue
        if opcode == PING:  # the gateway's keep-alive, on a slow machine
            ws.send_frame(PONG, payload)
            continue
        # A message is one text frame, or (Beast fragments large ones) a text frame and continuations.
        assert opcode == (CONTINUATION if parts else TEXT), (len(messages), opcode)
        parts.append(payload)
        if fin:
            messages.append(b"".join(parts))
            parts = []
    assert messages == [f"feed-{i}".ljust(size, ".").encode() for i in range(n)]
    ws.send_frame(TEXT, b"echo:after")
    while True:
        fin, opcode, payload = ws.read_frame()
        if opcode != PONG:
            break
        pongs.append(payload)
    assert (fin, opcode, payload) == (True, TEXT, b"after")
    assert pongs == [b"p0", b"p1", b"p2"]
    ws.close()


# -- bad input ------------------------------------------------------------------------------


def test_bad_publish_requests_get_clear_errors(cluster):
    c = cluster(args=["--max-message-size", "1000"])
    ws = subscriber(c.port(0), "ok")
    admin = c.admins[0]
    cases = [
        ("/publish?channel=bad%20name", b"x", {}, 400, "channel must be"),
        ("/publish?channel=", b"x", {}, 400, "channel must be"),
        ("/publish?channel=" + "c" * 129, b"x", {}, 400, "channel must be"),
        ("/publish?channel=ok", b"x" * 1001, {}, 413, "over --max-message-size"),
        ("/publish", b"{not json", {}, 400, "body must be a JSON object"),
        ("/publish", b"[1, 2]", {}, 400, "body must be a JSON object"),
        ("/publish", b'{"text": "x"}', {}, 400, '"channel"'),
        ("/publish", b'{"channel": "ok"}', {}, 400, "exactly one of"),
        ("/publish", b'{"channel": "ok", "text": "a", "bytes_b64": "YQ=="}', {}, 400, "exactly one of"),
        ("/publish", b'{"channel": "ok", "text": 5}', {}, 400, '"text" must be a string'),
        ("/publish", b'{"channel": "ok", "bytes_b64": "!!!"}', {}, 400, "base64"),
        ("/publish?channel=ok", b"\xff\xfe", {"Content-Type": "text/plain"}, 400, "not valid UTF-8"),
    ]
    for path, body, headers, status, words in cases:
        got = admin_post(admin, path, body, headers)
        assert got[0] == status and words in got[1], (path, body, got)
    r = request(admin, "GET", "/publish")
    assert r.status == 405
    # A body far over the limit is refused before it is read whole.
    assert admin_post(admin, "/publish?channel=ok", b"x" * 200_000)[0] == 413
    wait_for_log(c.gateways[0], r"admin: POST /publish: 400 channel must be")
    # The worker's publish function checks the same rules, in the app.
    r = publish_from_worker(c.port(0), "bad%20name")
    assert r.status == 400 and b"InvalidEvent" in r.body and b"not a channel name" in r.body, r.body
    assert_nothing_more(ws)


def test_bad_subscriptions_are_errors_in_the_app(cluster):
    c = cluster()
    ws = subscriber(c.port(0), "")
    answer = command(ws, "subscribe:no spaces")
    assert answer.startswith("error InvalidEvent") and "not a channel name" in answer, answer
    answer = command(ws, "many:65")
    assert answer.startswith("error InvalidEvent") and "64 channels" in answer, answer
    assert metric(c.admins[0], "asgi_bridge_broadcast_subscriptions") == 64
    # Before accept: the state machine refuses it.
    early = RawWebSocket(c.port(0), "/early")
    assert early.read_handshake().status == 403
    assert "before websocket.accept" in c.state.wait_for("early")
    assert_nothing_more(ws)
