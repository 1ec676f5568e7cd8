"""basic_app's HTTP routes plus gateway broadcast (docs/broadcast.md), for test_broadcast.py.

- WebSocket ``/sub?channels=a,b&id=NAME``: accepts, subscribes to each channel, then sends
  ``subscribed ext=0|1`` (1: the scope advertises ``asgi-bridge.broadcast``). Once the
  client has that message every subscription is in place at the gateway: the app's events
  reach it in order. Then each client text is a command answered with one message:
  ``subscribe:CH`` / ``unsubscribe:CH`` (``ok <command>`` or ``error <exception>``),
  ``many:N`` (subscribes to N channels ``many-0``... : ``ok`` or ``error ...``),
  ``echo:X`` (``X``). The disconnect the app sees is appended to ``ws-NAME``.
- WebSocket ``/early``: subscribes before accepting, marks ``early`` with the exception
  that gets, and refuses the connection.
- HTTP ``POST /publish?channel=CH&n=N&size=S[&bytes=1]``: the worker publishes N messages
  ``CH-i`` (padded to S bytes) with ``asgi_bridge.publish``; ``200 ok``, or ``400`` and the
  exception's text.
"""

import urllib.parse

import asgi_bridge
from basic_app import app as http_app
from basic_app import append, mark, respond


def _query(scope):
    return dict(urllib.parse.parse_qsl(scope["query_string"].decode()))


async def _publish_route(scope, send):
    query = _query(scope)
    channel, count, size = query.get("channel", ""), int(query.get("n", "1")), int(query.get("size", "0"))
    try:
        for i in range(count):
            text = f"{channel}-{i}".ljust(size, ".")
            if query.get("bytes"):
                await asgi_bridge.publish(channel, bytes=text.encode())
            else:
                await asgi_bridge.publish(channel, text=text)
    except Exception as exc:  # the app's error, for the test to read
        await respond(send, 400, f"{type(exc).__name__}: {exc}".encode())
        return
    await respond(send, 200, b"ok")


async def _command(send, text):
    verb, _, arg = text.partition(":")
    if verb == "echo":
        return arg
    if verb == "many":
        for i in range(int(arg)):
            await send({"type": "asgi-bridge.subscribe", "channel": f"many-{i}"})
        return "ok"
    await send({"type": f"asgi-bridge.{verb}", "channel": arg})
    return f"ok {text}"


async def _subscriber(scope, receive, send):
    query = _query(scope)
    ident = query.get("id", "x")
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    for channel in filter(None, query.get("channels", "").split(",")):
        await send({"type": "asgi-bridge.subscribe", "channel": channel})
    extension = "asgi-bridge.broadcast" in scope.get("extensions", {})
    await send({"type": "websocket.send", "text": f"subscribed ext={int(extension)}"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            append(f"ws-{ident}", f"disconnect {message.get('code')}")
            return
        try:
            answer = await _command(send, message.get("text") or "")
        except Exception as exc:
            answer = f"error {type(exc).__name__}: {exc}"
        await send({"type": "websocket.send", "text": answer})


async def _early(receive, send):
    await receive()
    try:
        await send({"type": "asgi-bridge.subscribe", "channel": "early"})
    except Exception as exc:
        mark("early", f"{type(exc).__name__}: {exc}")
    await send({"type": "websocket.close", "code": 1000})


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        if scope["path"] == "/early":
            await _early(receive, send)
        else:
            await _subscriber(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] == "/publish":
        await _publish_route(scope, send)
    else:
        await http_app(scope, receive, send)
