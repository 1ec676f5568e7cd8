"""The broadcast benchmark's asgi-bridge app (bench/run --workloads broadcast).

    WebSocket /bcast/sub   a subscriber: subscribes its socket to the channel "bench"
                           (the asgi-bridge.broadcast extension), says "ready", then idles
    WebSocket /bcast/pub   the publisher: each text it sends is asgi_bridge.publish'ed
                           to "bench" (one bus message per gateway, whatever the subscribers)
    WebSocket /groups/sub  a member of the group "bench" (asgi_bridge.groups), says "ready"
    WebSocket /groups/pub  each text it sends is groups.send_text to "bench": the worker
                           sends it on every member's connection (per-socket sends)
    HTTP (any path)        200 "ok" (readiness)

The Django Channels comparison (channels_redis under uvicorn) is bench/fanout_app.py.
"""

import asgi_bridge.groups
from asgi_bridge import publish

CHANNEL = "bench"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
    else:
        await websocket(scope, receive, send)


async def websocket(scope, receive, send):
    kind, role = scope["path"].strip("/").split("/", 1)
    groups = asgi_bridge.groups.of(scope)
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if role == "sub":
        if kind == "bcast":
            await send({"type": "asgi-bridge.subscribe", "channel": CHANNEL})
        else:
            groups.add(CHANNEL)
        await send({"type": "websocket.send", "text": "ready"})
    while (event := await receive())["type"] == "websocket.receive":
        if role != "pub":
            continue
        if kind == "bcast":
            await publish(CHANNEL, text=event["text"])
        else:
            groups.send_text(CHANNEL, event["text"])
