"""basic_app's HTTP routes plus WebSocket routes, for tests that need both (test_redis.py).

WebSocket routes (``?id=NAME`` names the marker files):

- ``/ws``: accepts (with the first offered subprotocol), echoes every text and bytes
  message; a text ``close:CODE`` makes it close with that code. The disconnect it sees
  is appended to ``ws-NAME`` as ``disconnect CODE``.
- ``/ws-refuse``: closes before accepting (the client gets 403).
- ``/ws-hang``: accepts, marks ``started-NAME`` with its pid, then only waits for the
  disconnect (appended to ``ws-NAME``).
"""

import os

from basic_app import app as http_app
from basic_app import append, mark


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        await http_app(scope, receive, send)
        return
    query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&")
                 if "=" in part)
    ident = query.get("id", "x")
    path = scope["path"]
    message = await receive()
    assert message["type"] == "websocket.connect", message
    if path == "/ws-refuse":
        await send({"type": "websocket.close", "code": 1000})
        return
    subprotocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept",
                "subprotocol": subprotocols[0] if subprotocols else None})
    if path == "/ws-hang":
        mark(f"started-{ident}", str(os.getpid()))
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            append(f"ws-{ident}", f"disconnect {message.get('code')}")
            return
        if path != "/ws":
            continue
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            await send({"type": "websocket.close", "code": int(text[6:])})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes")})
