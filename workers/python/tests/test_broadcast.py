"""The asgi-bridge.broadcast extension on the worker side (docs/broadcast.md): the
subscribe/unsubscribe events in the WebSocket state machine, the `publish` message in the
codec, and ``asgi_bridge.publish`` outside and inside a worker."""

import pytest

from asgi_bridge import broadcast, codec, publish
from asgi_bridge.connection import MAX_SUBSCRIPTIONS
from asgi_bridge.errors import InvalidEvent, ProtocolError, UnexpectedMessage
from bridge_helpers import run
from test_connection import Gateway, expect_raise, websocket

ACCEPT = {"type": "websocket.accept"}


def sub(channel):
    return {"type": "asgi-bridge.subscribe", "channel": channel}


def test_subscriptions_go_to_the_gateway_in_order_after_accept():
    async def main():
        gw = Gateway()
        conn = websocket(gw)

        async def app(scope, receive, send):
            await receive()
            await send(ACCEPT)
            await send(sub("prices/EUR-USD"))
            await send({"type": "asgi-bridge.unsubscribe", "channel": "prices/EUR-USD", "x": 1})
            await send({"type": "websocket.close"})
        await conn.run(app)
        assert gw.events[1:3] == [sub("prices/EUR-USD"),
                                  {"type": "asgi-bridge.unsubscribe", "channel": "prices/EUR-USD"}]
        assert [m["s"] for m in gw.sent] == [0, 1, 2, 3]
    run(main())


@pytest.mark.parametrize("channel", ["", "a b", "x" * 129, "caf\u00e9", "a\x00b", None, 5])
def test_bad_channel_names_raise_in_the_app(channel):
    async def main():
        gw = Gateway()
        app, caught = expect_raise(InvalidEvent, ACCEPT, sub(channel))
        await websocket(gw).run(app)
        assert caught and "channel" in str(caught[0])
        assert sub(channel) not in gw.events
    run(main())


def test_subscribe_before_accept_is_a_state_machine_error():
    async def main():
        app, caught = expect_raise(UnexpectedMessage, sub("early"))
        await websocket(Gateway()).run(app)
        assert "before websocket.accept" in str(caught[0])
    run(main())


def test_at_most_64_channels_and_resubscribing_is_free():
    async def main():
        gw = Gateway()
        messages = [ACCEPT] + [sub(f"c{i}") for i in range(MAX_SUBSCRIPTIONS)] + [sub("c0")]
        messages += [{"type": "asgi-bridge.unsubscribe", "channel": "c1"}, sub("new"), sub("one-too-many")]
        app, caught = expect_raise(InvalidEvent, *messages)
        await websocket(gw).run(app)
        assert "64 channels" in str(caught[0])
    run(main())


def test_publish_message_is_checked_by_the_codec():
    msg = {"k": "publish", "w": "wk-1", "channel": "news", "event": {"type": "websocket.send", "text": "hi"}}
    assert codec.decode(codec.encode(msg)) == {"v": 1, **msg}
    for bad, words in [({**msg, "channel": "a b"}, "not a channel name"),
                       ({k: v for k, v in msg.items() if k != "channel"}, "channel: missing"),
                       ({**msg, "event": {"type": "websocket.close"}}, "carries one websocket.send")]:
        data = codec._pack({"v": 1, **bad})
        with pytest.raises(ProtocolError, match=words):
            codec.decode(data)


def test_publish_needs_a_worker_and_a_good_channel():
    async def main():
        with pytest.raises(InvalidEvent):
            await publish("bad name", text="x")
        with pytest.raises(InvalidEvent):
            await publish("ok", text="x", bytes=b"y")
        with pytest.raises(RuntimeError, match="no asgi_bridge worker"):
            await publish("ok", text="x")
    broadcast.attach(None)
    run(main())
