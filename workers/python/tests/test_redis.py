"""The Redis bus (docs/redis.md) against a real redis-server this test starts on a free port.

The gateway side is played by this process with the synchronous redis client: it pushes
first events to ``P:{new}``, later messages to ``P:{wk:ID}``, and pops ``P:{gw:ID}``.
"""

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis

from asgi_bridge import codec
from asgi_bridge.redis_transport import (BusError, RedisTransport, check_redis,
                                         parse_redis_url)
from asgi_bridge.worker import Worker
from bridge_helpers import SharedQueueTransport, run

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server: no persistence, its own port, stopped by the test."""

    def __init__(self, tmp_path, *args):
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed (scripts/install-deps installs it)")
        self.port = free_port()
        self.args = args
        self.dir = tmp_path
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("redis-server did not start")
                time.sleep(0.02)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def url(self, credentials="", db=0):
        return f"redis://{credentials}127.0.0.1:{self.port}/{db}"

    def client(self, **kwargs):
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)


@pytest.fixture
def server(tmp_path):
    srv = RedisServer(tmp_path)
    yield srv
    srv.stop()


async def until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def in_thread(fn, *args):
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


# --- URLs and the start-up check ---------------------------------------------------------


def test_urls_read_as_the_gateway_reads_them():
    u = parse_redis_url("redis://127.0.0.1:6380/2")
    assert (u.host, u.port, u.user, u.password, u.db) == ("127.0.0.1", 6380, "", "", 2)
    u = parse_redis_url("redis://:s3cret@redis.local:7000/0")
    assert (u.host, u.port, u.user, u.password, u.db) == ("redis.local", 7000, "", "s3cret", 0)
    u = parse_redis_url("redis://alice:p:w@d@h:1")  # password up to the last @
    assert (u.host, u.port, u.user, u.password, u.db) == ("h", 1, "alice", "p:w@d", 0)
    u = parse_redis_url("redis://pw@[::1]:6379/3")
    assert (u.host, u.port, u.user, u.password, u.db) == ("::1", 6379, "", "pw", 3)
    assert parse_redis_url("redis://").port == 6379 and parse_redis_url("redis://").host == "127.0.0.1"
    assert parse_redis_url("redis://u:pw@h:1/0").display == "redis://h:1/0"  # no secrets in logs
    for bad, message in (("redis://h:0/0", "bad port"), ("redis://h:70000", "bad port"),
                         ("redis://h:1/x", "bad database number"), ("zmq://h:1", "not a redis")):
        with pytest.raises(ValueError, match=message):
            parse_redis_url(bad)


def test_startup_check_names_the_failure(tmp_path):
    srv = RedisServer(tmp_path, "--requirepass", "right")
    try:
        check_redis(parse_redis_url(srv.url(":right@")))
        with pytest.raises(BusError, match=r"authentication failed: WRONGPASS"):
            check_redis(parse_redis_url(srv.url(":wrong@")))
        with pytest.raises(BusError, match=r"authentication failed: Authentication required"):
            check_redis(parse_redis_url(srv.url()))
        with pytest.raises(BusError, match=r"refused: .*DB index is out of range"):
            check_redis(parse_redis_url(srv.url(":right@", db=99999)))
    finally:
        srv.stop()
    with pytest.raises(BusError, match=r"cannot connect"):
        check_redis(parse_redis_url(srv.url()), timeout=1)


# --- the transport ----------------------------------------------------------------------------


def test_own_queue_both_ways_batched_and_expiring(server):
    db = server.client()

    async def main():
        got = []
        transport = RedisTransport(server.url(), "wk-a", prefix="t")
        transport.set_free_capacity(0)
        transport.start(lambda link, data: got.append((link, data)))
        await until(lambda: transport._available, what="connected")
        # Gateway -> worker: more than one BLMPOP batch, in order.
        await in_thread(db.rpush, "t:{wk:wk-a}", *[b"m%d" % i for i in range(300)])
        await until(lambda: len(got) == 300, what="300 messages")
        assert [data for _, data in got] == [b"m%d" % i for i in range(300)]
        assert all(link is transport.inbox for link, _ in got)
        # Worker -> gateways: one RPUSH per destination for a loop turn, plus PEXPIRE.
        await in_thread(db.config_resetstat)
        one = transport.reply_link(transport.inbox, "gw-1")
        two = transport.reply_link(transport.inbox, "gw-2")
        assert one.key == "t:{gw:gw-1}" and "gw-1" in one.url
        for i in range(100):
            transport.send_nowait(one, b"x%d" % i)
            await transport.send(two, b"y%d" % i) if i == 50 else transport.send_nowait(two, b"y%d" % i)
        await until(lambda: db.llen("t:{gw:gw-2}") == 100, what="the sends")
        assert db.lrange("t:{gw:gw-1}", 0, -1) == [b"x%d" % i for i in range(100)]
        assert 25000 < db.pttl("t:{gw:gw-1}") <= 30000
        stats = await in_thread(db.info, "commandstats")
        assert stats["cmdstat_rpush"]["calls"] <= 4, stats["cmdstat_rpush"]
        await transport.close(0.5)
    run(main())


def taking(transport, got):
    """An on_message that, like the worker, has one connection less free per first event."""
    def on_message(link, data):
        got.append(data)
        transport.set_free_capacity(transport._free - 1)
    return on_message


def test_new_connections_only_up_to_the_free_capacity(server):
    db = server.client()

    async def main():
        got = []
        transport = RedisTransport(server.url(), "wk-b")
        transport.start(taking(transport, got))
        await until(lambda: transport._available, what="connected")
        await in_thread(db.rpush, "asgi:{new}", *[b"n%d" % i for i in range(5)])
        await asyncio.sleep(0.3)
        assert got == [] and db.llen("asgi:{new}") == 5  # no capacity: nothing taken
        transport.set_free_capacity(2)
        await until(lambda: len(got) == 2, what="two new connections")
        transport.set_free_capacity(0)
        await asyncio.sleep(0.3)
        assert got == [b"n0", b"n1"] and db.llen("asgi:{new}") == 3
        transport.set_free_capacity(10)
        await until(lambda: len(got) == 5, what="the rest")
        assert got == [b"n%d" % i for i in range(5)]
        await transport.close(0.5)
    run(main())


def test_each_kind_of_connection_is_taken_while_it_has_room(server):
    """HTTP requests wait in P:{new}, WebSockets in P:{new}:ws: a worker whose HTTP slots
    are full still takes WebSockets and the reverse, and a pop waiting for one kind is
    cut short (CLIENT UNBLOCK) when the other frees, not left for POP_TIMEOUT."""
    db = server.client()

    async def main():
        got = []
        transport = RedisTransport(server.url(), "wk-k")
        transport.POP_TIMEOUT = 30  # only CLIENT UNBLOCK can end a pop in time
        transport.start(lambda link, data: got.append(data))
        await until(lambda: transport._available, what="connected")
        await in_thread(db.rpush, "asgi:{new}", b"h1", b"h2")
        await in_thread(db.rpush, "asgi:{new}:ws", b"w1", b"w2")
        transport.set_free_capacity(0, 5)  # HTTP full
        await until(lambda: got == [b"w1", b"w2"], what="the WebSockets")
        await until(lambda: blocked_pops(db) == 2, what="both pops blocked")
        assert db.llen("asgi:{new}") == 2
        transport.set_free_capacity(5, 3)  # HTTP slots free while the pop waits for WebSockets
        await until(lambda: got[2:] == [b"h1", b"h2"], what="the HTTP requests")
        transport.set_free_capacity(3, 0)  # WebSockets full
        await in_thread(db.rpush, "asgi:{new}:ws", b"w3")
        await in_thread(db.rpush, "asgi:{new}", b"h3")
        await until(lambda: got[4:] == [b"h3"], what="the next HTTP request")
        await asyncio.sleep(0.2)
        assert got[4:] == [b"h3"] and db.lrange("asgi:{new}:ws", 0, -1) == [b"w3"]
        await transport.close(0.5)
    run(main())


def blocked_pops(db):
    return sum(1 for c in db.client_list() if "b" in c["flags"])  # blocked now


def test_a_pop_under_way_is_cut_short_when_capacity_goes_to_0(server):
    db = server.client()

    async def main():
        got = []
        transport = RedisTransport(server.url(), "wk-u")
        transport.POP_TIMEOUT = 30  # only CLIENT UNBLOCK can end it in time
        transport.set_free_capacity(3)
        transport.start(taking(transport, got))
        await until(lambda: blocked_pops(db) == 2, what="both pops blocked")
        transport.set_free_capacity(0)  # a drain
        await until(lambda: blocked_pops(db) == 1, what="the pop of P:{new} unblocked")
        await in_thread(db.rpush, "asgi:{new}", b"a")
        await asyncio.sleep(0.2)
        assert got == [] and db.llen("asgi:{new}") == 1
        transport.set_free_capacity(1)
        await until(lambda: got == [b"a"], what="taken once capacity is back")
        transport.set_free_capacity(1)  # the connection ended
        await until(lambda: blocked_pops(db) == 2, what="both pops blocked")
        started = time.monotonic()
        await transport.close(0.5)
        assert time.monotonic() - started < 2
    run(main())


def test_connections_popped_after_capacity_went_away_are_given_back(server):
    """Without CLIENT UNBLOCK (an ACL user may lack it) a pop under way ends by itself."""
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", "noclient", "on", ">pw", "~*", "+@all", "-client")
    db = server.client(username="noclient", password="pw")

    async def main():
        got = []
        transport = RedisTransport(server.url("noclient:pw@"), "wk-c")
        transport.set_free_capacity(3)
        transport.start(taking(transport, got))
        await until(lambda: blocked_pops(admin) == 2, what="both pops blocked")
        transport.set_free_capacity(0)  # a drain while the pop of P:{new} waits
        await in_thread(db.rpush, "asgi:{new}", b"a", b"b")
        await until(lambda: db.llen("asgi:{new}") == 2, what="the connections given back")
        assert db.lrange("asgi:{new}", 0, -1) == [b"a", b"b"] and got == []
        # close() waits for a pop under way instead of losing what it brings.
        transport.set_free_capacity(5)
        await until(lambda: got == [b"a", b"b"], what="taken again")
        await until(lambda: blocked_pops(admin) == 2, what="both pops blocked")
        closing = asyncio.ensure_future(transport.close(0.5))
        await asyncio.sleep(0.05)
        await in_thread(db.rpush, "asgi:{new}", b"c")
        await closing
        assert got == [b"a", b"b"] and db.lrange("asgi:{new}", 0, -1) == [b"c"]
    run(main())


def test_reconnects_after_a_restart_logging_once_each_way(server, caplog):
    db = server.client()
    caplog.set_level(logging.INFO, logger="asgi_bridge.transport")

    async def main():
        got = []
        transport = RedisTransport(server.url(), "wk-d")
        transport.set_free_capacity(1)
        transport.start(lambda link, data: got.append(data))
        await until(lambda: transport._available, what="connected")
        server.stop()
        await until(lambda: transport._available is False, what="noticed")
        # Kept while the writer connects again; dropped once that failed.
        await until(lambda: transport._sender_up is False, what="a reconnection failed")
        gateway = transport.reply_link(transport.inbox, "gw-1")
        transport.send_nowait(gateway, b"lost")  # Redis is down: dropped, not kept
        await asyncio.sleep(1.0)  # several reconnection attempts
        server.start()
        await until(lambda: transport._available, timeout=10, what="reconnected")
        transport.send_nowait(gateway, b"after")
        await in_thread(db.rpush, "asgi:{wk:wk-d}", b"own")
        await in_thread(db.rpush, "asgi:{new}", b"new")
        await until(lambda: sorted(got) == [b"new", b"own"], what="both queues popped")
        await until(lambda: db.lrange("asgi:{gw:gw-1}", 0, -1) == [b"after"], what="sent")
        await transport.close(0.5)
    run(main(), timeout=30)
    lines = [r.getMessage() for r in caplog.records if r.name == "asgi_bridge.transport"]
    assert sum("unavailable" in line for line in lines) == 1, lines
    assert sum("available again" in line for line in lines) == 1, lines
    assert any("1 message(s) dropped" in line for line in lines), lines


def test_a_pause_of_the_process_loses_no_message_sent_after_it(server, caplog):
    """A process paused longer than the read timeout (SIGSTOP, a stalled VM; here the
    event loop blocked) finds its pops' reads timed out at once when it runs again. Their
    connections are made again; the writer's still works, and what the app sends then
    goes out (it used to be dropped while the writer was made again too)."""
    db = server.client()
    caplog.set_level(logging.INFO, logger="asgi_bridge.transport")

    async def main():
        transport = RedisTransport(server.url(), "wk-p")
        transport.READ_TIMEOUT = 2.0  # (the pops' BLMPOP blocks 1 s of it)
        transport.BACKOFF_MIN = 1.0   # a reconnection window long enough to send into
        transport.set_free_capacity(1)
        transport.start(lambda link, data: None)
        await until(lambda: transport._available, what="connected")
        await asyncio.sleep(0.2)  # both pops blocked in Redis
        time.sleep(2.5)  # the whole process stopped: every timer is due at once after
        await until(lambda: transport._losses > 0, what="the pops' reads timed out")
        gateway = transport.reply_link(transport.inbox, "gw-1")
        transport.send_nowait(gateway, b"after the pause")
        await until(lambda: db.lrange("asgi:{gw:gw-1}", 0, -1) == [b"after the pause"],
                    what="sent")
        await transport.close(0.5)
    run(main(), timeout=30)
    assert "dropped meanwhile" not in caplog.text or "(0 message(s) dropped" in caplog.text


def test_acl_user(tmp_path):
    srv = RedisServer(tmp_path)
    try:
        admin = srv.client()
        admin.execute_command("ACL", "SETUSER", "bridge", "on", ">pw", "~asgi:*",
                              "+@list", "+@keyspace", "+@connection")
        admin.execute_command("ACL", "SETUSER", "default", "off")
        url = parse_redis_url(srv.url("bridge:pw@"))
        check_redis(url)
        with pytest.raises(BusError, match="WRONGPASS"):
            check_redis(parse_redis_url(srv.url("bridge:nope@")))
        db = srv.client(username="bridge", password="pw")

        async def main():
            got = []
            transport = RedisTransport(url, "wk-e")
            transport.set_free_capacity(1)
            transport.start(lambda link, data: got.append(data))
            await in_thread(db.rpush, "asgi:{new}", b"first")
            await until(lambda: got == [b"first"], what="a new connection")
            transport.send_nowait(transport.reply_link(transport.inbox, "gw"), b"reply")
            await until(lambda: db.lrange("asgi:{gw:gw}", 0, -1) == [b"reply"], what="reply")
            await transport.close(0.5)
        run(main())
    finally:
        srv.stop()


def test_groups_publish_subscribe_and_confirm(server):
    db = server.client()
    channel = "t:group:0:{room}"  # P:group:DB:{NAME}

    async def main():
        got = []
        transport = RedisTransport(server.url(), "wk-g", prefix="t")
        transport.start(lambda link, data: got.append(data))
        await until(lambda: transport._available, what="connected")
        assert "groups" not in transport._tasks  # no subscription, no fourth connection
        transport.subscribe_group("room")
        await transport.group_subscribed("room", 5)
        assert dict(db.pubsub_numsub(channel))[channel.encode()] == 1  # confirmed: in place
        await in_thread(db.publish, channel, b"from another worker")
        await until(lambda: got == [b"from another worker"], what="the published message")
        transport.publish_group("room", b"ours")
        await until(lambda: got[-1] == b"ours", what="our own echo")
        transport.unsubscribe_group("room")
        await until(lambda: dict(db.pubsub_numsub(channel))[channel.encode()] == 0,
                    what="the unsubscription")
        await transport.close(0.5)
    run(main())


def test_a_refused_subscription_leaves_the_bus_serving(tmp_path, caplog):
    srv = RedisServer(tmp_path)
    try:
        admin = srv.client()
        # The queues' user of test_acl_user: no PUBLISH, no SUBSCRIBE.
        admin.execute_command("ACL", "SETUSER", "bridge", "on", ">pw", "~asgi:*",
                              "+@list", "+@keyspace", "+@connection")
        db = srv.client()

        async def main():
            transport = RedisTransport(parse_redis_url(srv.url("bridge:pw@")), "wk-r")
            transport.start(lambda link, data: None)
            await until(lambda: transport._available, what="connected")
            transport.subscribe_group("room")
            await transport.group_subscribed("room", 0.5)  # never confirmed: gives up
            await until(lambda: "subscription was refused" in caplog.text, what="the warning")
            transport.send_nowait(transport.reply_link(transport.inbox, "gw"), b"reply")
            await until(lambda: db.lrange("asgi:{gw:gw}", 0, -1) == [b"reply"], what="reply")
            assert transport._available
            await transport.close(0.5)
        run(main())
    finally:
        srv.stop()


# --- the worker on a shared queue ---------------------------------------------------------


def first_http(conn, gateway="gw-1"):
    return {"k": "event", "g": gateway, "c": conn, "s": 0, "window": 1 << 20,
            "scope": {"type": "http", "method": "GET", "path": "/", "headers": []},
            "event": {"type": "http.request", "body": b"", "more_body": False}}


def test_worker_claims_at_once_reports_capacity_and_sends_no_ready():
    release = None

    async def app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        nonlocal release
        release = asyncio.Event()
        bus = SharedQueueTransport()
        worker = Worker(app, bus, "wk-s", concurrency=3, heartbeat_interval=0.05)
        worker.start()
        assert bus.sent == [] and bus.free == [3]  # no ready on a shared queue
        bus.deliver(first_http(7))
        bus.deliver(first_http(8, gateway="gw-2"))
        assert bus.free == [3, 2, 1]
        # The claim is the first thing each gateway hears, before the app ran at all.
        assert bus.sent == [
            ("redis://gw-1", {"v": 1, "k": "credit", "g": "gw-1", "w": "wk-s", "c": 7,
                              "events": 0}),
            ("redis://gw-2", {"v": 1, "k": "credit", "g": "gw-2", "w": "wk-s", "c": 8,
                              "events": 0})]
        release.set()
        await until(lambda: not worker.conns, what="both served")
        assert bus.free[-2:] == [2, 3]
        assert [m["event"]["type"] for m in bus.of_kind("event")] == [
            "http.response.start", "http.response.body"] * 2
        assert "ready" not in bus.kinds()
        await worker.drain(1)
        assert bus.free[-1] == 0
        await worker.close()
    run(main())


def test_worker_heartbeats_only_gateways_it_serves_and_for_3_intervals_after():
    interval = 0.05

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    async def gateway_heartbeats(bus):
        while True:  # the gateway keeps speaking: only our own rule stops our heartbeats
            bus.deliver({"k": "heartbeat", "g": "gw-1"})
            await asyncio.sleep(interval / 2)

    async def main():
        bus = SharedQueueTransport()
        beats = []
        bus.send_nowait = lambda link, data: (
            beats.append((time.monotonic(), link.url)) if codec.decode(data)["k"] == "heartbeat"
            else SharedQueueTransport.send_nowait(bus, link, data))
        worker = Worker(app, bus, "wk-h", heartbeat_interval=interval)
        worker.start()
        await asyncio.sleep(4 * interval)
        assert beats == []  # nobody to tell yet
        bus.deliver(first_http(1))
        speaking = asyncio.ensure_future(gateway_heartbeats(bus))
        await until(lambda: not worker.conns, what="served")
        ended = time.monotonic()
        await asyncio.sleep(10 * interval)
        speaking.cancel()
        assert beats and all(url == "redis://gw-1" for _, url in beats)
        # Heartbeats go on for 3 intervals after the last connection ended, then stop.
        assert beats[-1][0] - ended < 4.5 * interval, [t - ended for t, _ in beats]
        assert len(beats) >= 2, [t - ended for t, _ in beats]
        await worker.drain(1)
        await worker.close()
        assert bus.of_kind("drain") == [] and bus.of_kind("bye") == []  # nobody to tell
    run(main())


# --- the worker as a process ----------------------------------------------------------------


def spawn(url, *args):
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "asgi_bridge", "tests_app:app", "--bus", url,
         "--heartbeat-interval", "0.2", "--log-level", "debug", *args],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)


def pop(db, key, timeout=5.0):
    reply = db.blpop([key], timeout=timeout)
    assert reply is not None, f"nothing on {key} within {timeout}s"
    return codec.decode(reply[1])


def expect(db, key, kind, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        msg = pop(db, key, max(0.1, deadline - time.monotonic()))
        if msg["k"] == kind:
            return msg
        assert msg["k"] in ("heartbeat", "credit"), msg


def test_worker_process_serves_a_gateway_over_redis_then_drains(server):
    db = server.client()
    proc = spawn(server.url(), "--bus-prefix", "p", "--concurrency", "4")
    try:
        request = first_http(1, gateway="gw-x")
        request["scope"]["path"] = "/echo"
        request["scope"]["method"] = "POST"
        request["event"]["body"] = b"ping"
        db.rpush("p:{new}", codec.encode(request))
        claim = pop(db, "p:{gw:gw-x}", timeout=10)
        assert claim["k"] == "credit" and claim["c"] == 1 and claim["events"] == 0
        worker_id = claim["w"]
        start = expect(db, "p:{gw:gw-x}", "event")
        body = expect(db, "p:{gw:gw-x}", "event")
        assert (start["s"], start["event"]["status"], body["s"], body["event"]["body"]) == (
            0, 200, 1, b"ping")
        heartbeat = expect(db, "p:{gw:gw-x}", "heartbeat")
        assert heartbeat == {"v": 1, "k": "heartbeat", "w": worker_id, "capacity": 4,
                             "active": 0, "ws_capacity": 10000}
        # A later event for an unknown connection, on the worker's own queue.
        db.rpush(f"p:{{wk:{worker_id}}}", codec.encode(
            {"k": "event", "g": "gw-x", "c": 99, "s": 1, "event": {"type": "http.disconnect"}}))
        error = expect(db, "p:{gw:gw-x}", "error")
        assert (error["c"], error["message"]) == (99, "unknown connection")
        proc.send_signal(signal.SIGTERM)
        expect(db, "p:{gw:gw-x}", "drain")
        expect(db, "p:{gw:gw-x}", "bye")
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=5)


def test_worker_process_with_a_wrong_password_exits_1_naming_the_failure(tmp_path):
    srv = RedisServer(tmp_path, "--requirepass", "right")
    try:
        proc = spawn(srv.url(":wrong@"))
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 1, err.decode()
        assert "authentication failed: WRONGPASS" in err.decode()
        assert "right" not in err.decode() and "wrong@" not in err.decode()
        assert "startup complete" not in err.decode()  # checked before lifespan
    finally:
        srv.stop()


def test_try_send_queues_only_what_send_would_queue_without_waiting():
    # No server needed: nothing is written before start(). try_send() is the worker's
    # send without a coroutine; past the high water mark it queues nothing and the
    # caller awaits send(), which queues and waits.
    transport = RedisTransport("redis://127.0.0.1:1/0", "wk-t")
    transport.HIGH_WATER = 10
    link = transport.inbox
    assert transport.try_send(link, b"12345") and transport.try_send(link, b"12345")
    assert not transport.try_send(link, b"x")  # 11 > 10: send() would wait
    assert transport._outbox[link.key] == [b"12345", b"12345"] and transport._queued_bytes == 10
