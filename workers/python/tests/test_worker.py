"""The worker's demultiplexing, capacity, liveness and drain, over an in-process bus."""

import asyncio
import copy

import msgpack

from asgi_bridge import groups
from asgi_bridge.worker import Worker
from bridge_helpers import FakeTransport, SharedQueueTransport, run


def first_http(conn=1, gateway="gw-1", body=b"", more_body=False):
    return {"k": "event", "g": gateway, "c": conn, "s": 0, "window": 1 << 20,
            "scope": {"type": "http", "method": "GET", "path": "/", "headers": []},
            "event": {"type": "http.request", "body": body, "more_body": more_body}}


def first_ws(conn=2, gateway="gw-1"):
    return {"k": "event", "g": gateway, "c": conn, "s": 0,
            "scope": {"type": "websocket", "path": "/ws"},
            "event": {"type": "websocket.connect"}}


async def hello_app(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"hello"})


def make_worker(app=hello_app, transport=None, **kwargs):
    transport = transport or FakeTransport()
    worker = Worker(app, transport, "wk-test", **kwargs)
    worker.start()
    return worker, transport


async def settle(seconds=0.02):
    await asyncio.sleep(seconds)


def test_ready_at_start_on_every_link_then_to_each_new_gateway():
    async def main():
        worker, bus = make_worker(transport=FakeTransport(["zmq://a", "zmq://b"]),
                                  concurrency=7)
        assert bus.sent == [
            ("zmq://a", {"v": 1, "k": "ready", "w": "wk-test", "capacity": 7, "active": 0,
                          "ws_capacity": 10000}),
            ("zmq://b", {"v": 1, "k": "ready", "w": "wk-test", "capacity": 7, "active": 0,
                          "ws_capacity": 10000})]
        bus.deliver({"k": "heartbeat", "g": "gw-b"}, link=1)
        bus.deliver({"k": "heartbeat", "g": "gw-b"}, link=1)  # known now: no second ready
        assert bus.sent[2:] == [("zmq://b", bus.sent[1][1])]
        assert worker.gateways["gw-b"].link is bus.links[1]
    run(main())


def test_first_event_runs_the_app_and_replies_to_that_gateway():
    async def main():
        worker, bus = make_worker()
        bus.deliver(first_http(conn=5))
        assert worker.conns  # registered at once
        await settle()
        events = bus.of_kind("event")
        assert [(m["g"], m["w"], m["c"], m["s"], m["event"]["type"]) for m in events] == [
            ("gw-1", "wk-test", 5, 0, "http.response.start"),
            ("gw-1", "wk-test", 5, 1, "http.response.body")]
        assert worker.conns == {}
    run(main())


def test_unknown_connection_gets_an_error_but_late_events_of_finished_ones_do_not():
    async def main():
        worker, bus = make_worker()
        bus.deliver({"k": "event", "g": "gw-1", "c": 99, "s": 3, "event": {"type": "http.disconnect"}})
        assert bus.of_kind("error") == [{"v": 1, "k": "error", "g": "gw-1", "w": "wk-test",
                                         "c": 99, "message": "unknown connection"}]
        bus.deliver(first_http(conn=5))
        await settle()
        bus.deliver({"k": "event", "g": "gw-1", "c": 5, "s": 1, "event": {"type": "http.disconnect"}})
        bus.deliver({"k": "credit", "g": "gw-1", "c": 5, "bytes": 5})
        assert len(bus.of_kind("error")) == 1
        bus.deliver({"k": "error", "g": "gw-1", "c": 1234, "message": "unknown connection"})
        assert len(bus.of_kind("error")) == 1  # never answer an error with an error
    run(main())


def test_events_are_routed_by_gateway_and_connection():
    async def main():
        received = {}

        async def app(scope, receive, send):
            first = await receive()
            second = await receive()
            received[first["body"]] = second["body"]
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})
        worker, bus = make_worker(app)
        bus.deliver(first_http(conn=1, gateway="gw-1", body=b"a", more_body=True))
        bus.deliver(first_http(conn=1, gateway="gw-2", body=b"b", more_body=True))
        bus.deliver({"k": "event", "g": "gw-2", "c": 1, "s": 1,
                     "event": {"type": "http.request", "body": b"b2"}})
        bus.deliver({"k": "event", "g": "gw-1", "c": 1, "s": 1,
                     "event": {"type": "http.request", "body": b"a2"}})
        await settle()
        assert received == {b"a": b"a2", b"b": b"b2"}
        assert sorted(m["g"] for m in bus.of_kind("event")) == ["gw-1"] * 2 + ["gw-2"] * 2
    run(main())


def test_out_of_order_event_fails_the_connection():
    async def main():
        seen = []

        async def app(scope, receive, send):
            await receive()
            seen.append(await receive())
        worker, bus = make_worker(app)
        bus.deliver(first_http(more_body=True))
        await settle()
        bus.deliver({"k": "event", "g": "gw-1", "c": 1, "s": 2, "event": {"type": "http.request"}})
        await settle()
        assert bus.of_kind("error")[0]["message"] == "event s=2 out of order (expected 1)"
        assert seen == [{"type": "http.disconnect"}]
    run(main())


def test_malformed_event_of_a_connection_is_answered_with_an_error():
    async def main():
        worker, bus = make_worker()
        data = msgpack.packb({"v": 1, "k": "event", "g": "gw-1", "c": 4, "s": 0,
                              "event": {"type": "http.request", "body": "not bytes"}},
                             use_bin_type=True)
        bus.on_message(bus.links[0], data)
        bus.on_message(bus.links[0], b"\x93garbage")
        errors = bus.of_kind("error")
        assert len(errors) == 1 and errors[0]["c"] == 4
        assert "malformed event: event.body: expected bytes, got str" in errors[0]["message"]
    run(main())


def test_wrong_first_event_and_unknown_kinds():
    async def main():
        worker, bus = make_worker()
        bad = first_http()
        bad["event"] = {"type": "http.disconnect"}
        bus.deliver(bad)
        bus.deliver({"k": "gossip", "g": "gw-1"})
        assert bus.of_kind("error")[0]["message"] == \
            "first event of a http connection must be http.request"
        assert worker.conns == {}
    run(main())


def test_heartbeats_and_silent_gateway_is_forgotten():
    async def main():
        seen = []

        async def app(scope, receive, send):
            await receive()
            await send({"type": "websocket.accept"})
            seen.append(await receive())
        worker, bus = make_worker(app, heartbeat_interval=0.05, concurrency=3)
        bus.deliver(first_ws())
        await settle(0.08)
        heartbeat = bus.of_kind("heartbeat")[0]
        assert heartbeat == {"v": 1, "k": "heartbeat", "w": "wk-test", "capacity": 3, "active": 1,
                             "ws_capacity": 10000}
        await settle(0.2)  # > 3 intervals without a word from gw-1
        assert seen == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
        assert "gw-1" not in worker.gateways and worker.conns == {}
        # It comes back: announced again, and its old connection is now unknown.
        bus.deliver({"k": "event", "g": "gw-1", "c": 2, "s": 1,
                     "event": {"type": "websocket.receive", "text": "x"}})
        assert bus.kinds().count("ready") == 3  # start, first meeting, meeting again
        assert bus.of_kind("error")[-1]["message"] == "unknown connection"
    run(main())


def test_bye_ends_the_gateway_connections():
    async def main():
        seen = []

        async def app(scope, receive, send):
            await receive()
            await send({"type": "websocket.accept"})
            seen.append(await receive())
        worker, bus = make_worker(app)
        bus.deliver(first_ws())
        await settle()
        bus.deliver({"k": "bye", "g": "gw-1"})
        await settle()
        assert seen == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
        bus.deliver({"k": "heartbeat", "g": "gw-1"})  # a straggler: ignored
        assert "gw-1" not in worker.gateways and bus.kinds().count("ready") == 2  # start, meet
    run(main())


def test_gateway_error_disconnects_the_instance():
    async def main():
        seen = []

        async def app(scope, receive, send):
            await receive()
            seen.append(await receive())
        worker, bus = make_worker(app)
        bus.deliver(first_http(more_body=True))
        await settle()
        bus.deliver({"k": "error", "g": "gw-1", "c": 1, "message": "unknown connection"})
        await settle()
        assert seen == [{"type": "http.disconnect"}]
        assert bus.of_kind("error") == []
    run(main())


def test_credit_from_the_gateway_reopens_the_window():
    async def main():
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200})
            for _ in range(3):
                await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
            await send({"type": "http.response.body"})
        worker, bus = make_worker(app)
        first = first_http()
        first["window"] = 15
        bus.deliver(first)
        await settle()
        assert len(bus.of_kind("event")) == 3  # start + 2 bodies, 20 bytes > 15
        bus.deliver({"k": "credit", "g": "gw-1", "c": 1, "bytes": 10})
        await settle()
        assert len(bus.of_kind("event")) == 5
    run(main())


def test_connection_gone_while_queued_never_runs():
    async def main():
        ran = []

        async def app(scope, receive, send):
            ran.append(scope["path"])
        worker, bus = make_worker(app)
        bus.deliver(first_http(more_body=True))
        bus.deliver({"k": "event", "g": "gw-1", "c": 1, "s": 1, "event": {"type": "http.disconnect"}})
        await settle()
        assert ran == [] and worker.conns == {} and bus.of_kind("error") == []
    run(main())


def test_concurrency_queues_extra_connections():
    async def main():
        release = asyncio.Event()
        running = []

        async def app(scope, receive, send):
            running.append(scope["path"])
            await release.wait()
            await hello_app(scope, receive, send)
        worker, bus = make_worker(app, concurrency=1)
        bus.deliver(first_http(conn=1))
        second = first_http(conn=2)
        second["scope"]["path"] = "/second"
        bus.deliver(second)
        await settle()
        assert running == ["/"] and len(worker.conns) == 2
        release.set()
        await settle()
        assert running == ["/", "/second"] and worker.conns == {}
    run(main())


def test_websockets_are_counted_apart_from_http_requests():
    """Open WebSockets hold no HTTP slot: with --concurrency 1 and room for 2 WebSockets,
    two idle WebSockets leave the HTTP request running; a third WebSocket waits for its
    own slot. The free capacity told to a shared queue's transport follows each kind."""
    async def main():
        running = []

        async def app(scope, receive, send):
            running.append((scope["type"], scope["path"]))
            if scope["type"] == "http":
                await hello_app(scope, receive, send)
                return
            await receive()
            await send({"type": "websocket.accept"})
            await receive()  # idle until the disconnect
        worker, bus = make_worker(app, SharedQueueTransport(), concurrency=1,
                                  websocket_capacity=2)
        bus.deliver(first_ws(conn=1))
        bus.deliver(first_ws(conn=2))
        await settle()
        assert (bus.free[-1], bus.free_ws[-1]) == (1, 0)
        bus.deliver(first_http(conn=3))
        third = first_ws(conn=4)
        third["scope"]["path"] = "/third"
        bus.deliver(third)
        await settle()
        assert ("http", "/") in running and ("websocket", "/third") not in running
        bus.deliver({"k": "event", "g": "gw-1", "c": 1, "s": 1,
                     "event": {"type": "websocket.disconnect", "code": 1000}})
        await settle()
        assert running[-1] == ("websocket", "/third")
        assert (bus.free[-1], bus.free_ws[-1]) == (1, 0)
    run(main())


def test_state_is_a_shallow_copy_per_connection():
    async def main():
        states = []

        async def app(scope, receive, send):
            scope["state"]["mine"] = scope["path"]
            states.append(scope["state"])
            await hello_app(scope, receive, send)
        shared = {"pool": object()}
        worker, bus = make_worker(app, state=shared)
        bus.deliver(first_http(conn=1))
        bus.deliver(first_http(conn=2))
        await settle()
        assert states[0] is not states[1] and states[0]["pool"] is shared["pool"]
        assert "mine" not in shared
    run(main())


def test_drain_waits_for_in_flight_then_cancels_at_the_timeout():
    async def main():
        async def slow(scope, receive, send):
            await receive()
            await asyncio.sleep(0.1 if scope["path"] == "/" else 10)
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body"})
        worker, bus = make_worker(slow)
        bus.deliver(first_http(conn=1))
        stuck = first_http(conn=2)
        stuck["scope"]["path"] = "/stuck"
        bus.deliver(stuck)
        await worker.drain(0.3)
        assert bus.of_kind("drain") == [{"v": 1, "k": "drain", "w": "wk-test"}]
        assert [m["c"] for m in bus.of_kind("event")] == [1, 1]  # the quick one finished
        assert bus.of_kind("error") == [{
            "v": 1, "k": "error", "g": "gw-1", "w": "wk-test", "c": 2,
            "message": "worker shut down before the application finished"}]
        bus.deliver({"k": "heartbeat", "g": "gw-new"})  # a new gateway hears ready, drain
        assert bus.kinds()[-2:] == ["ready", "drain"]
        await worker.close()
        assert bus.kinds()[-1] == "bye" and bus.closed
    run(main())


def test_group_messages_reach_local_members_once(caplog):
    # On ZeroMQ a gateway relays every worker's group messages to every worker, through
    # each gateway they share: members get each once; without a member, nothing
    # happens, and nothing is answered or warned about.
    async def joins_lobby(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        groups.of(scope).add("lobby")
        await receive()

    async def main():
        worker, bus = make_worker(joins_lobby)
        caplog.set_level("DEBUG", logger="asgi_bridge")
        bus.deliver(first_ws(conn=2))
        await settle()
        for group, s in (("lobby", 3), ("lobby", 3), ("elsewhere", 4), ("lobby", 2)):
            bus.deliver({"k": "group", "w": "wk-cpp", "s": s, "group": group,
                         "event": {"type": "websocket.send", "text": f"{group} {s}"}})
        await settle()
        sent = [m["event"] for m in bus.of_kind("event")]
        assert sent == [{"type": "websocket.accept", "subprotocol": None, "headers": []},
                        {"type": "websocket.send", "text": "lobby 3"}]
        assert set(bus.kinds()) == {"ready", "event"}
        assert worker.gateways.keys() == {"gw-1"}
    run(main())
    assert all(r.levelname == "DEBUG" for r in caplog.records if "group" in r.getMessage())


def test_a_copied_scope_keeps_its_connection_handle():
    handle = groups.GroupHandle(hub=object(), member=object())
    scope = {"type": "websocket", "asgi_bridge.groups": handle}
    assert copy.deepcopy(scope)["asgi_bridge.groups"] is handle
    assert copy.copy(handle) is handle
