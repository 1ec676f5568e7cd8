"""The demo app: a plain ASGI 3 app with no framework.

    GET  /      a greeting
    POST /echo  the request body, back with its content type
    /ws         WebSocket echo (text and bytes)

Run it through asgi-bridge with scripts/run-demo, or by hand:

    PYTHONPATH=workers/python:workers/python/examples \\
        /usr/bin/python3 -m asgi_bridge hello:app --bus zmq://127.0.0.1:5555
"""

import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)


async def http(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break

    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        status, ctype = 200, b"text/plain; charset=utf-8"
        text = f"Hello from asgi-bridge! (worker pid {os.getpid()})\n".encode()
    elif path == "/echo" and method == "POST":
        status = 200
        ctype = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
        text = body
    else:
        status, ctype, text = 404, b"text/plain; charset=utf-8", b"Not found\n"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


async def websocket(scope, receive, send):
    message = await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1000})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
