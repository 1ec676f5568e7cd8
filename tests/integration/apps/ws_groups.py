"""Chat rooms of a plain ASGI app with asgi_bridge's broadcast groups, the same as the
C++ example worker asgi-bridge-example-chat: a WebSocket to ``/chat/ROOM`` joins ROOM;
every text or bytes message sent on it goes to every socket of ROOM (the sender
included), whichever worker process and gateway serve it. A text ``leave`` leaves the
room (answered ``left`` on this socket only). HTTP: ``/__ready`` 200, anything else 404.
"""

import asgi_bridge.groups


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        ok = scope["path"] == "/__ready"
        await send({"type": "http.response.start", "status": 200 if ok else 404})
        await send({"type": "http.response.body", "body": b"ok" if ok else b""})
        return
    await receive()  # websocket.connect
    room = scope["path"][len("/chat/"):]
    if not scope["path"].startswith("/chat/") or not room:
        await send({"type": "websocket.close", "code": 1008})
        return
    groups = asgi_bridge.groups.of(scope)
    await send({"type": "websocket.accept"})
    # After accept (a message could not go out before it); the worker runs this before
    # the accept leaves the process, so the client can count on being in the room.
    groups.add(room)
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return  # the worker takes the socket out of its rooms
        if event.get("text") == "leave":
            groups.discard(room)
            await send({"type": "websocket.send", "text": "left"})
        elif event.get("text") is not None:
            groups.send_text(room, event["text"])
        else:
            groups.send_bytes(room, event["bytes"])
