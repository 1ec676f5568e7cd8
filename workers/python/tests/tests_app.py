"""The ASGI app the subprocess tests run: ``python -m asgi_bridge tests_app:app``.

Routes: ``/`` hello, ``/echo`` echoes the request body, ``/slow?SECONDS`` answers after a
sleep (to test draining), ``/state`` returns what lifespan put in the state, ``/pid``
the worker's pid; WebSocket: echo. Lifespan fails on purpose when the environment
variable TESTS_APP_FAIL_STARTUP is set.
"""

import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    else:
        await websocket(scope, receive, send)


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("TESTS_APP_FAIL_STARTUP"):
                await send({"type": "lifespan.startup.failed", "message": "no database today"})
                return
            scope["state"]["greeting"] = "hello from lifespan"
            await send({"type": "lifespan.startup.complete"})
        else:
            print("tests_app: lifespan shutdown", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/echo":
        answer = body
    elif path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or 1))
        answer = b"slow done"
    elif path == "/state":
        answer = scope.get("state", {}).get("greeting", "no state").encode()
    elif path == "/pid":
        answer = str(os.getpid()).encode()
    elif path == "/raise":
        raise RuntimeError("boom")
    else:
        answer = b"hello"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


async def websocket(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"),
                    "bytes": message.get("bytes")})
