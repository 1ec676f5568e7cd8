"""The per-connection ASGI state machine, driven without a gateway or a bus."""

import asyncio
import logging

import pytest

from asgi_bridge import codec, connection
from asgi_bridge.connection import HttpConnection, WebSocketConnection
from asgi_bridge.errors import ClientDisconnected, InvalidEvent, ProtocolError, UnexpectedMessage
from bridge_helpers import run

HTTP_SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": []}
WS_SCOPE = {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []}


class Gateway:
    """Captures what a connection sends, decoded (so it is also checked by the codec)."""

    def __init__(self):
        self.sent = []

    async def __call__(self, data):
        self.sent.append(codec.decode(data))

    @property
    def events(self):
        return [m["event"] for m in self.sent if m["k"] == "event"]

    @property
    def errors(self):
        return [m["message"] for m in self.sent if m["k"] == "error"]

    @property
    def credits(self):
        return [m["events"] for m in self.sent if m["k"] == "credit"]


def http(gateway, body=b"", more_body=False, window=None):
    return HttpConnection(dict(HTTP_SCOPE), "gw-1", 7, "wk-1", gateway, window=window,
                          first_event={"type": "http.request", "body": body,
                                       "more_body": more_body})


def websocket(gateway):
    return WebSocketConnection(dict(WS_SCOPE), "gw-1", 8, "wk-1", gateway,
                               first_event={"type": "websocket.connect"})


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"ok"}


def expect_raise(exc_type, *messages):
    """An app that sends `messages` in order, expecting the last one to raise."""
    caught = []

    async def app(scope, receive, send):
        for message in messages[:-1]:
            await send(message)
        with pytest.raises(exc_type) as info:
            await send(messages[-1])
        caught.append(info.value)
    return app, caught


# --- HTTP --------------------------------------------------------------------------------------

def test_http_response_with_sequence_numbers():
    async def main():
        gw = Gateway()
        conn = http(gw)

        async def app(scope, receive, send):
            assert await receive() == {"type": "http.request", "body": b"", "more_body": False}
            await send(START)
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            await send(BODY)

        await conn.run(app)
        assert [(m["k"], m.get("s"), m["g"], m["w"], m["c"]) for m in gw.sent] == [
            ("event", 0, "gw-1", "wk-1", 7), ("event", 1, "gw-1", "wk-1", 7),
            ("event", 2, "gw-1", "wk-1", 7)]
        assert gw.events[0] == {"type": "http.response.start", "status": 200,
                                "headers": [[b"content-type", b"text/plain"]], "trailers": False}
        assert gw.errors == []
    run(main())


@pytest.mark.parametrize("messages,exc_type,text", [
    ([BODY], UnexpectedMessage, "http.response.body before http.response.start"),
    ([START, START], UnexpectedMessage, "http.response.start sent twice"),
    ([START, BODY, BODY], ClientDisconnected, "after the response was completed"),
    ([START, BODY, START], ClientDisconnected, "after the response was completed"),
    ([{"type": "http.response.trailers"}], UnexpectedMessage, "only allowed after the final body"),
    ([START, {"type": "websocket.send", "text": "x"}], UnexpectedMessage,
     "websocket.send cannot be sent on an HTTP connection"),
    ([{"type": "http.response.zerocopysend"}], InvalidEvent, "unknown event type"),
    ([{"type": "http.response.start", "status": "200"}], InvalidEvent,
     "event.status: expected int, got str"),
    ([{"type": "http.response.start", "status": 200, "headers": [("x", b"1")]}], InvalidEvent,
     "header name must be bytes, got str"),
    ([START, {"type": "http.response.body", "body": "text"}], InvalidEvent,
     "event.body: expected bytes, got str"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_http_violations_raise_in_the_app(messages, exc_type, text):
    async def main():
        gw = Gateway()
        app, caught = expect_raise(exc_type, *messages)
        await http(gw).run(app)
        assert text in str(caught[0])
        # Nothing invalid reached the gateway: only the events sent before the violation.
        assert len(gw.events) == len(messages) - 1
    run(main())


def test_client_disconnected_is_an_oserror_and_receive_says_disconnect():
    async def main():
        gw = Gateway()
        conn = http(gw, more_body=True)
        conn.feed({"type": "http.disconnect"})
        app, caught = expect_raise(ClientDisconnected, START)

        async def wrapper(scope, receive, send):
            assert await receive() == {"type": "http.disconnect"}
            await app(scope, receive, send)
        await conn.run(wrapper)
        assert isinstance(caught[0], OSError)
        assert gw.sent == []  # no error either: the client is gone
    run(main())


def test_propagated_client_disconnected_is_not_an_error():
    async def main():
        gw = Gateway()
        conn = http(gw)

        async def app(scope, receive, send):
            await send(START)
            conn.feed({"type": "http.disconnect"})
            await send(BODY)  # raises ClientDisconnected out of the app
        await conn.run(app)
        assert gw.errors == []
    run(main())


def test_trailers_complete_the_response():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "trailers": True})
            await send(BODY)
            with pytest.raises(UnexpectedMessage):
                await send(BODY)
            await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})
            assert await receive() == {"type": "http.disconnect"}
        await http(gw).run(app)
        assert [e["type"] for e in gw.events] == [
            "http.response.start", "http.response.body", "http.response.trailers"]
        assert gw.errors == []
    run(main())


def test_app_exception_is_logged_and_reported(caplog):
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            raise ZeroDivisionError("division by zero")
        with caplog.at_level(logging.ERROR):
            await http(gw).run(app)
        assert gw.errors == ["ZeroDivisionError: division by zero"]
        assert "Traceback" in caplog.text and "ZeroDivisionError" in caplog.text
    run(main())


def test_state_machine_violation_propagating_becomes_an_error():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await send(BODY)
        await http(gw).run(app)
        assert gw.errors == ["UnexpectedMessage: http.response.body before http.response.start"]
    run(main())


@pytest.mark.parametrize("messages", [[], [START], [START, dict(BODY, more_body=True)]])
def test_returning_without_completing_the_response(messages):
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            for message in messages:
                await send(message)
        await http(gw).run(app)
        assert gw.errors == ["application returned without completing the response"]
    run(main())


def test_exception_after_completion_is_logged_not_reported():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await send(START)
            await send(BODY)
            raise RuntimeError("late")
        await http(gw).run(app)
        assert gw.errors == [] and len(gw.events) == 2
    run(main())


def test_pending_receive_wakes_with_disconnect_when_response_completes():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await receive()  # the first request event

            async def listen():
                return await receive()
            listener = asyncio.ensure_future(listen())
            await asyncio.sleep(0.01)
            assert not listener.done()
            await send(START)
            await send(BODY)
            assert await asyncio.wait_for(listener, 1) == {"type": "http.disconnect"}
        await http(gw, more_body=True).run(app)
        assert gw.errors == []
    run(main())


def test_events_arrive_in_order_and_are_credited_by_eight():
    async def main():
        gw = Gateway()
        conn = http(gw, body=b"0", more_body=True)
        for i in range(1, 20):
            conn.feed({"type": "http.request", "body": str(i).encode(), "more_body": i < 19})
        bodies = []

        async def app(scope, receive, send):
            while True:
                event = await receive()
                bodies.append(event["body"])
                if not event["more_body"]:
                    break
            await send(START)
            await send(BODY)
        await conn.run(app)
        assert bodies == [str(i).encode() for i in range(20)]
        assert gw.credits == [8, 8]  # 20 consumed: two full batches
        credit = [m for m in gw.sent if m["k"] == "credit"][0]
        assert credit == {"v": 1, "k": "credit", "g": "gw-1", "w": "wk-1", "c": 7, "events": 8}
    run(main())


def test_send_waits_while_more_than_the_window_is_unacknowledged():
    async def main():
        gw = Gateway()
        conn = http(gw, window=10)
        progress = []

        async def app(scope, receive, send):
            await send(START)
            for i in range(3):
                await send({"type": "http.response.body", "body": b"x" * 8, "more_body": True})
                progress.append(i)
            await send(BODY)
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.05)
        assert progress == [0, 1]  # 16 bytes unacknowledged > 10: the third send waits
        conn.add_credit(8)
        await asyncio.sleep(0.05)
        assert progress == [0, 1, 2]
        conn.add_credit(100)
        await asyncio.wait_for(task, 1)
        assert gw.errors == [] and len(gw.events) == 5
    run(main())


def test_window_wait_is_idle_while_request_events_arrive():
    async def main():
        import time
        gw = Gateway()
        conn = http(gw, window=1, more_body=True)
        done = []

        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": b"xx", "more_body": True})
            await send({"type": "http.response.body", "body": b"yy"})  # waits for credit
            done.append(True)
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.01)
        conn.feed({"type": "http.request", "body": b"more", "more_body": True})
        cpu = time.process_time()
        await asyncio.sleep(0.2)
        assert time.process_time() - cpu < 0.1, "the waiting send spins"
        assert done == []
        conn.add_credit(2)
        await asyncio.wait_for(task, 1)
        assert done == [True] and gw.errors == []
    run(main())


def test_window_wait_ends_on_disconnect():
    async def main():
        gw = Gateway()
        conn = http(gw, window=1)
        caught = []

        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": b"xx", "more_body": True})
            try:
                await send({"type": "http.response.body", "body": b"yy", "more_body": True})
            except ClientDisconnected as exc:
                caught.append(exc)
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.05)
        conn.gateway_lost()
        await asyncio.wait_for(task, 1)
        assert len(caught) == 1 and gw.errors == []
    run(main())


def test_large_body_goes_as_pieces_within_the_window():
    # The gateway refuses a bus message much over its limits: one 3 MiB send must
    # go as body events of at most BODY_PIECE bytes, in order, each within the window.
    async def main():
        gw = Gateway()
        window = 256 * 1024
        conn = http(gw, window=window)
        body = bytes(range(256)) * (3 * 1024 * 4)  # 3 MiB, not one repeated byte
        done = []

        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": body})
            done.append(True)
        task = asyncio.ensure_future(conn.run(app))
        for _ in range(10000):  # the gateway writes what it gets and gives credit
            if done or task.done():
                break
            await asyncio.sleep(0)
            assert conn._unacked <= window + connection.BODY_PIECE
            if conn._unacked:
                conn.add_credit(conn._unacked)
        await asyncio.wait_for(task, 1)
        pieces = gw.events[1:]
        assert len(pieces) == -(-len(body) // connection.BODY_PIECE) > 1
        assert all(len(p["body"]) <= connection.BODY_PIECE for p in pieces)
        assert b"".join(p["body"] for p in pieces) == body
        assert [p["more_body"] for p in pieces] == [True] * (len(pieces) - 1) + [False]
        assert [m["s"] for m in gw.sent if m["k"] == "event"] == list(range(len(pieces) + 1))
        assert gw.errors == []
    run(main())


def test_large_body_waits_for_credit_between_pieces():
    async def main():
        gw = Gateway()
        conn = http(gw, window=1)
        body = b"x" * (3 * connection.BODY_PIECE)
        task = asyncio.ensure_future(conn.run(_send_then_finish(body)))
        await asyncio.sleep(0.05)
        assert len(gw.events) == 2  # start and the first piece: then over the window
        conn.add_credit(connection.BODY_PIECE)
        await asyncio.sleep(0.05)
        assert len(gw.events) == 3
        for _ in range(2):
            conn.add_credit(connection.BODY_PIECE)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(task, 1)
        assert [e["more_body"] for e in gw.events[1:]] == [True, True, True, False]
        assert gw.events[-1]["body"] == b"end"
    run(main())


def _send_then_finish(body):
    async def app(scope, receive, send):
        await send(START)
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})
    return app


def test_large_body_stops_between_pieces_when_the_client_leaves():
    async def main():
        gw = Gateway()
        conn = http(gw, window=1)
        caught = []

        async def app(scope, receive, send):
            await send(START)
            try:
                await send({"type": "http.response.body", "body": b"x" * (4 * connection.BODY_PIECE)})
            except ClientDisconnected as exc:
                caught.append(exc)
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.05)
        conn.feed({"type": "http.disconnect"})
        await asyncio.wait_for(task, 1)
        assert len(caught) == 1 and len(gw.events) == 2 and gw.errors == []
    run(main())


def test_gateway_lost_gives_http_disconnect():
    async def main():
        gw = Gateway()
        conn = http(gw, more_body=True)
        got = []

        async def app(scope, receive, send):
            got.append(await receive())
            got.append(await receive())
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.01)
        conn.gateway_lost()
        await asyncio.wait_for(task, 1)
        assert got[1] == {"type": "http.disconnect"} and gw.sent == []
    run(main())


def test_cancelled_instance_reports_an_error():
    async def main():
        gw = Gateway()
        conn = http(gw)

        async def app(scope, receive, send):
            await asyncio.sleep(10)
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait_for(task, 1)
        assert gw.errors == ["worker shut down before the application finished"]
    run(main())


def test_cancelled_open_websocket_closes_1012_and_one_not_accepted_reports_an_error():
    """The graceful timeout: an open WebSocket gets 1012 "service restart" (as the C++
    worker), not the `error` that the gateway turns into 1011."""
    async def main():
        for accept, expected_events, expected_errors in (
                (True, [{"type": "websocket.close", "code": 1012, "reason": ""}], []),
                (False, [], ["worker shut down before the application finished"])):
            gw = Gateway()
            conn = websocket(gw)

            async def app(scope, receive, send):
                await receive()
                if accept:
                    await send({"type": "websocket.accept"})
                await asyncio.sleep(10)
            task = asyncio.ensure_future(conn.run(app))
            await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.wait_for(task, 1)
            events = [e for e in gw.events if e["type"] != "websocket.accept"]
            assert [{k: e[k] for k in ("type", "code", "reason")} for e in events] == expected_events
            assert gw.errors == expected_errors
    run(main())


def test_gateway_event_of_the_wrong_protocol_is_refused():
    async def main():
        conn = http(Gateway())
        with pytest.raises(ProtocolError, match="not expected on a http connection"):
            conn.feed({"type": "websocket.receive", "text": "x"})
    run(main())


# --- WebSocket -------------------------------------------------------------------------------

ACCEPT = {"type": "websocket.accept"}
CLOSE = {"type": "websocket.close"}
TEXT = {"type": "websocket.send", "text": "hi"}


def test_websocket_echo_session():
    async def main():
        gw = Gateway()
        conn = websocket(gw)
        conn.feed({"type": "websocket.receive", "text": "hello"})
        conn.feed({"type": "websocket.receive", "bytes": b"\x00"})

        async def app(scope, receive, send):
            assert await receive() == {"type": "websocket.connect"}
            await send({"type": "websocket.accept", "subprotocol": None})
            for _ in range(2):
                message = await receive()
                await send({"type": "websocket.send", "text": message.get("text"),
                            "bytes": message.get("bytes")})
            await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        await conn.run(app)
        assert [(m.get("s"), m["event"]) for m in gw.sent] == [
            (0, {"type": "websocket.accept", "subprotocol": None, "headers": []}),
            (1, {"type": "websocket.send", "text": "hello"}),
            (2, {"type": "websocket.send", "bytes": b"\x00"}),
            (3, {"type": "websocket.close", "code": 4000, "reason": "done"})]
    run(main())


@pytest.mark.parametrize("messages,exc_type,text", [
    ([TEXT], UnexpectedMessage, "websocket.send before websocket.accept"),
    ([ACCEPT, ACCEPT], UnexpectedMessage, "websocket.accept sent twice"),
    ([ACCEPT, CLOSE, TEXT], ClientDisconnected, "after the WebSocket was closed"),
    ([CLOSE, ACCEPT], ClientDisconnected, "after the WebSocket was closed"),
    ([ACCEPT, {"type": "websocket.http.response.start", "status": 403}], UnexpectedMessage,
     "only allowed before websocket.accept"),
    ([{"type": "websocket.http.response.body"}], UnexpectedMessage,
     "before websocket.http.response.start"),
    ([ACCEPT, START], UnexpectedMessage, "http.response.start cannot be sent on a WebSocket"),
    ([ACCEPT, {"type": "websocket.send", "text": "a", "bytes": b"a"}], InvalidEvent,
     "exactly one of 'bytes' and 'text'"),
    ([ACCEPT, {"type": "websocket.close", "code": 1006}], InvalidEvent,
     "1006 is not a valid close code"),
    ([{"type": "websocket.accept", "headers": [(b"x", "y")]}], InvalidEvent,
     "header value must be bytes, got str"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_websocket_violations_raise_in_the_app(messages, exc_type, text):
    async def main():
        gw = Gateway()
        app, caught = expect_raise(exc_type, *messages)
        await websocket(gw).run(app)
        assert text in str(caught[0])
        assert len(gw.events) >= len(messages) - 1
    run(main())


def test_websocket_disconnect_then_send_raises_and_receive_repeats():
    async def main():
        gw = Gateway()
        conn = websocket(gw)

        async def app(scope, receive, send):
            await receive()
            await send(ACCEPT)
            conn.feed({"type": "websocket.receive", "text": "last words"})
            conn.feed({"type": "websocket.disconnect", "code": 1001, "reason": "bye"})
            with pytest.raises(ClientDisconnected):
                await send(TEXT)
            assert (await receive())["text"] == "last words"  # queued messages still come
            gone = {"type": "websocket.disconnect", "code": 1001, "reason": "bye"}
            assert await receive() == gone
            assert await receive() == gone
        await conn.run(app)
        assert len(gw.events) == 1 and gw.errors == []  # no close on its behalf: client gone
    run(main())


def test_websocket_return_before_accept_is_an_error():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await receive()
        await websocket(gw).run(app)
        assert gw.errors == ["application returned without accepting or closing the WebSocket"]
    run(main())


def test_websocket_return_after_accept_closes_with_1000():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await send(ACCEPT)
        await websocket(gw).run(app)
        assert gw.events[-1] == {"type": "websocket.close", "code": 1000, "reason": ""}
        assert gw.sent[-1]["s"] == 1 and gw.errors == []
    run(main())


def test_websocket_exception_after_accept_is_reported():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await send(ACCEPT)
            raise KeyError("x")
        await websocket(gw).run(app)
        assert gw.errors == ["KeyError: 'x'"]
    run(main())


def test_websocket_gateway_lost_gives_1006():
    async def main():
        gw = Gateway()
        conn = websocket(gw)
        got = []

        async def app(scope, receive, send):
            await receive()
            await send(ACCEPT)
            got.append(await receive())
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.01)
        conn.gateway_lost()
        await asyncio.wait_for(task, 1)
        assert got == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
    run(main())


def test_websocket_denial_response():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await send({"type": "websocket.http.response.start", "status": 403})
            await send({"type": "websocket.http.response.body", "body": b"no"})
            assert (await receive())["type"] == "websocket.connect"
            assert (await receive())["type"] == "websocket.disconnect"  # not hanging
        await websocket(gw).run(app)
        assert [e["type"] for e in gw.events] == ["websocket.http.response.start",
                                                 "websocket.http.response.body"]
        assert gw.errors == []
    run(main())


def test_websocket_unfinished_denial_is_an_error():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await send({"type": "websocket.http.response.start", "status": 403})
        await websocket(gw).run(app)
        assert gw.errors == ["application returned without completing the denial response"]
    run(main())


def test_websocket_close_before_accept_then_receive_does_not_hang():
    async def main():
        gw = Gateway()

        async def app(scope, receive, send):
            await receive()
            await send(CLOSE)
            assert (await receive())["type"] == "websocket.disconnect"
        await websocket(gw).run(app)
        assert gw.errors == [] and gw.events == [{"type": "websocket.close", "code": 1000,
                                                  "reason": ""}]
    run(main())


def test_websocket_send_counts_text_bytes_against_the_window():
    async def main():
        gw = Gateway()
        conn = WebSocketConnection(dict(WS_SCOPE), "gw-1", 8, "wk-1", gw, window=3,
                                   first_event={"type": "websocket.connect"})
        sent = []

        async def app(scope, receive, send):
            await send(ACCEPT)
            await send({"type": "websocket.send", "text": "éé"})  # 4 bytes > 3
            sent.append(1)
            await send({"type": "websocket.send", "text": "x"})
            sent.append(2)
            await send(CLOSE)
        task = asyncio.ensure_future(conn.run(app))
        await asyncio.sleep(0.05)
        assert sent == [1]
        conn.add_credit(4)
        await asyncio.wait_for(task, 1)
        assert sent == [1, 2]
    run(main())
