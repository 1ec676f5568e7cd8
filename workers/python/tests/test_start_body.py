"""A response's start and first body in one bus message (docs/protocol.md §4.2, the
gateway's `features` bit FEATURE_START_BODY), through the worker and a fake bus: the start
is held back until the body joins it, or until the app's task step ends."""

import asyncio

import pytest

from asgi_bridge.connection import BODY_PIECE
from asgi_bridge import codec, connection, runtime
from bridge_helpers import FakeTransport
from test_eager import LOOPS
from test_worker import first_http, make_worker, settle

START = {"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"text/plain"]]}


class PushTransport(FakeTransport):
    """With the ZeroMQ transport's try_send: a message the bus takes at once is recorded
    at once (no coroutine), as the real bus queues it."""

    def try_send(self, link, data):
        self.sent.append((link.url, codec.decode(data)))
        return True


# Both ways a message reaches the bus (try_send, or the send coroutine), and both ways an
# app instance starts: its first step run eagerly inside the worker's call (a batch from
# the bus, delivered by a loop callback), or scheduled as a task (delivered from a task).
WAYS = [(push, eager) for push in (True, False) for eager in (True, False)]
IDS = [f"{'push' if push else 'send'}-{'eager' if eager else 'task'}" for push, eager in WAYS]


def run(main, loop_name="auto"):
    """On the worker's own loop (runtime.choose_loop): where first steps run eagerly."""
    with asyncio.Runner(loop_factory=runtime.choose_loop(loop_name)[0]) as runner:
        return runner.run(asyncio.wait_for(main, 10))


def open_connection(app, push, eager, features=codec.FEATURE_START_BODY, window=None, **first):
    worker, bus = make_worker(app, transport=PushTransport() if push else FakeTransport())
    envelope = first_http(**first)
    if features:
        envelope["features"] = features
    if window is not None:
        envelope["window"] = window
    if eager:
        asyncio.get_running_loop().call_soon(bus.deliver, envelope)
    else:
        bus.deliver(envelope)
    return worker, bus


def events(bus):
    return [(m["s"], m["event"]) for m in bus.of_kind("event")]


def started(body, more_body=False):
    return dict(START, trailers=False, body=body, more_body=more_body)


async def start_and_body(scope, receive, send):
    await receive()
    await send(START)
    await send({"type": "http.response.body", "body": b"Hello, world!"})


@pytest.mark.parametrize("push,eager", WAYS, ids=IDS)
def test_start_and_body_go_as_one_message(push, eager):
    async def main():
        worker, bus = open_connection(start_and_body, push, eager)
        await settle()
        assert events(bus) == [(0, started(b"Hello, world!"))]
        assert worker.conns == {}
    run(main())


@pytest.mark.parametrize("features", [0, 2])
def test_without_the_feature_bit_start_and_body_go_apart(features):
    async def main():
        worker, bus = open_connection(start_and_body, True, True, features=features)
        await settle()
        assert events(bus) == [(0, dict(START, trailers=False)),
                               (1, {"type": "http.response.body", "body": b"Hello, world!",
                                    "more_body": False})]
    run(main())


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("push,eager", WAYS, ids=IDS)
@pytest.mark.parametrize("later_step", [False, True], ids=["first-step", "later-step"])
def test_a_start_is_on_the_bus_while_the_app_waits(push, eager, later_step, loop_name):
    """An SSE-like app: the start, then a wait. The start must not wait with it."""
    async def main():
        release, resumed = asyncio.Event(), []

        async def app(scope, receive, send):
            await receive()
            if later_step:  # the rest of the request's body: a step of its own
                await receive()
            await send(START)
            await release.wait()
            resumed.append(True)
            await send({"type": "http.response.body", "body": b"event"})

        worker, bus = open_connection(app, push, eager, more_body=later_step)
        await settle()
        if later_step:
            bus.deliver({"k": "event", "g": "gw-1", "c": 1, "s": 1,
                         "event": {"type": "http.request", "body": b"rest"}})
            await settle()
        assert not resumed
        assert events(bus) == [(0, dict(START, trailers=False))]  # alone, while waiting
        release.set()
        await settle()
        assert resumed
        assert events(bus)[1:] == [(1, {"type": "http.response.body", "body": b"event",
                                        "more_body": False})]
    run(main(), loop_name)


def test_a_start_sent_from_a_later_step_still_joins_its_body():
    async def main():
        async def app(scope, receive, send):
            await receive()
            await asyncio.sleep(0)  # a step of its own, as after a database query
            await send(START)
            await send({"type": "http.response.body", "body": b"late"})

        worker, bus = open_connection(app, True, True)
        await settle()
        assert events(bus) == [(0, started(b"late"))]
    run(main())


@pytest.mark.parametrize("push,eager", WAYS, ids=IDS)
def test_a_body_over_60_kib_goes_after_the_start_in_pieces(push, eager):
    async def main():
        body = bytes(range(256)) * (BODY_PIECE // 256 + 10)

        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": body})

        worker, bus = open_connection(app, push, eager)
        await settle()
        assert events(bus) == [
            (0, dict(START, trailers=False)),
            (1, {"type": "http.response.body", "body": body[:BODY_PIECE], "more_body": True}),
            (2, {"type": "http.response.body", "body": body[BODY_PIECE:], "more_body": False})]
    run(main())


LARGE = codec.FEATURE_START_BODY | codec.FEATURE_LARGE_PIECES


@pytest.mark.parametrize("push,eager", WAYS, ids=IDS)
def test_a_gateway_taking_large_pieces_gets_a_64_kib_body_in_the_start(push, eager):
    # §2.5 bit 2: a quarter of the window (1 MiB by default) per event.
    async def main():
        body = bytes(range(256)) * 256  # 64 KiB

        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": body})

        worker, bus = open_connection(app, push, eager, features=LARGE)
        await settle()
        assert events(bus) == [(0, started(body))]
    run(main())


def test_large_pieces_are_a_quarter_of_the_window():
    async def main():
        window = 512 * 1024
        body = bytes(range(256)) * (window // 256 + 4)  # the window and 1 KiB

        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": body})

        worker, bus = open_connection(app, True, True, features=LARGE, window=window)
        await settle()
        piece = window // 4  # 128 KiB: four fill the window, the fifth is 1 KiB
        assert events(bus) == [(0, dict(START, trailers=False))] + [
            (1 + i, {"type": "http.response.body", "body": body[i * piece:(i + 1) * piece],
                     "more_body": i < 4}) for i in range(5)]
    run(main())


def test_without_the_bit_or_with_a_small_window_pieces_stay_60_kib():
    assert connection.body_piece(codec.FEATURE_START_BODY, 1 << 30) == BODY_PIECE
    assert connection.body_piece(LARGE, 128 * 1024) == BODY_PIECE
    assert connection.body_piece(LARGE, 1024 * 1024) == 256 * 1024


def test_a_body_of_exactly_60_kib_joins_the_start():
    async def main():
        body = b"x" * BODY_PIECE

        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": body})

        worker, bus = open_connection(app, True, True)
        await settle()
        assert events(bus) == [(0, started(body))]
    run(main())


@pytest.mark.parametrize("push,eager", WAYS, ids=IDS)
def test_a_streamed_body_joins_its_first_piece_only(push, eager):
    async def main():
        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            await send({"type": "http.response.body", "body": b"b", "more_body": True})
            await send({"type": "http.response.body", "body": b"c"})

        worker, bus = open_connection(app, push, eager)
        await settle()
        assert events(bus) == [
            (0, started(b"a", more_body=True)),
            (1, {"type": "http.response.body", "body": b"b", "more_body": True}),
            (2, {"type": "http.response.body", "body": b"c", "more_body": False})]
    run(main())


def test_a_head_response_joins_its_empty_body():
    async def main():
        async def app(scope, receive, send):
            assert scope["method"] == "HEAD"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [[b"content-length", b"5"]]})
            await send({"type": "http.response.body"})

        worker, bus = make_worker(app, transport=PushTransport())
        envelope = first_http()
        envelope["scope"]["method"] = "HEAD"
        envelope["features"] = codec.FEATURE_START_BODY
        asyncio.get_running_loop().call_soon(bus.deliver, envelope)
        await settle()
        assert events(bus) == [(0, {"type": "http.response.start", "status": 200,
                                    "headers": [[b"content-length", b"5"]], "trailers": False,
                                    "body": b"", "more_body": False})]
    run(main())


@pytest.mark.parametrize("push,eager", WAYS, ids=IDS)
@pytest.mark.parametrize("how", ["raises", "returns"])
def test_an_app_that_stops_after_its_start_sends_the_start_then_an_error(push, eager, how):
    async def main():
        async def app(scope, receive, send):
            await send(START)
            if how == "raises":
                raise RuntimeError("boom")

        worker, bus = open_connection(app, push, eager)
        await settle()
        assert [k for k in bus.kinds() if k in ("event", "error")] == ["event", "error"]
        assert events(bus) == [(0, dict(START, trailers=False))]
        assert bus.of_kind("error")[0]["message"] == (
            "RuntimeError: boom" if how == "raises" else
            "application returned without completing the response")
    run(main())


def test_a_start_whose_send_waits_for_the_bus_goes_before_the_body():
    """The bus pushes back (try_send refuses) when the step ends: the start goes from a
    task, and the app's body waits for it."""
    class Refusing(FakeTransport):
        def try_send(self, link, data):
            return False

        async def send(self, link, data):
            await asyncio.sleep(0.01)  # the bus makes its sender wait
            await super().send(link, data)

    async def main():
        release = asyncio.Event()

        async def app(scope, receive, send):
            await send(START)
            await release.wait()
            await send({"type": "http.response.body", "body": b"x"})

        worker, bus = make_worker(app, transport=Refusing())
        envelope = dict(first_http(), features=codec.FEATURE_START_BODY)
        asyncio.get_running_loop().call_soon(bus.deliver, envelope)
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the first step ran, the start's send is on its way
        release.set()
        await settle(0.1)
        assert events(bus) == [(0, dict(START, trailers=False)),
                               (1, {"type": "http.response.body", "body": b"x",
                                    "more_body": False})]
    run(main())


def test_a_websocket_is_not_changed_by_the_feature_bit():
    async def main():
        async def app(scope, receive, send):
            await receive()
            await send({"type": "websocket.http.response.start", "status": 403})
            await send({"type": "websocket.http.response.body", "body": b"no"})

        worker, bus = make_worker(app, transport=PushTransport())
        asyncio.get_running_loop().call_soon(bus.deliver, {
            "k": "event", "g": "gw-1", "c": 2, "s": 0, "features": codec.FEATURE_START_BODY,
            "scope": {"type": "websocket", "path": "/ws"}, "event": {"type": "websocket.connect"}})
        await settle()
        assert [e["type"] for _, e in events(bus)] == ["websocket.http.response.start",
                                                       "websocket.http.response.body"]
    run(main())


def test_the_body_in_a_start_counts_against_the_window():
    async def main():
        async def app(scope, receive, send):
            await send(START)
            await send({"type": "http.response.body", "body": b"x" * 20, "more_body": True})
            await send({"type": "http.response.body", "body": b"y" * 10})

        worker, bus = make_worker(app, transport=PushTransport())
        envelope = dict(first_http(), window=15, features=codec.FEATURE_START_BODY)
        asyncio.get_running_loop().call_soon(bus.deliver, envelope)
        await settle()
        assert events(bus) == [(0, started(b"x" * 20, more_body=True))]  # 20 > 15: waits
        bus.deliver({"k": "credit", "g": "gw-1", "c": 1, "bytes": 20})
        await settle()
        assert events(bus)[1:] == [(1, {"type": "http.response.body", "body": b"y" * 10,
                                        "more_body": False})]
    run(main())


def test_every_later_step_start_is_flushed_one_request_after_another():
    async def main():
        release = asyncio.Event()

        async def app(scope, receive, send):
            await receive()
            await asyncio.sleep(0)  # a later step
            await send(START)
            await release.wait()
            await send({"type": "http.response.body", "body": b"x"})

        worker, bus = make_worker(app, transport=PushTransport())
        for conn in (1, 2, 3):
            envelope = dict(first_http(conn=conn), features=codec.FEATURE_START_BODY)
            asyncio.get_running_loop().call_soon(bus.deliver, envelope)
            await settle()
            assert [m["c"] for m in bus.of_kind("event")] == list(range(1, conn + 1))
        release.set()
        await settle()
        assert len(bus.of_kind("event")) == 6
    run(main())
