"""The benchmark app, the same file for every Python server in bench/run
(asgi-bridge's Python worker, uvicorn, daphne): a plain ASGI 3 app.

    GET  (any path)  "Hello, world!"
    POST (any path)  the request body back, with its content type
    WebSocket        echo of every message, text as text, bytes as bytes
"""

HELLO = b"Hello, world!"
HELLO_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"),
                 (b"content-length", str(len(HELLO)).encode())]


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(receive, send)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def http(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    if scope["method"] == "POST":
        ctype = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})


async def websocket(receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
