"""A plain ASGI 3 app with one route per behaviour the integration tests need.

Marker files go to the folder named by IT_STATE_DIR, so that a test can see
what the app saw (a disconnect, an exception) and can steer it (a "go" file).
Routes taking ``?id=NAME`` write files named after NAME.
"""

import asyncio
import json
import os
import urllib.parse
from pathlib import Path

STATE = Path(os.environ.get("IT_STATE_DIR", "/tmp"))


def mark(name, text=""):
    # A temporary name of our own: two worker processes may mark the same name at once
    # (pids_serving's concurrent requests), and a shared one is then renamed away under
    # the other's feet (FileNotFoundError, a 500).
    tmp = STATE / f"{name}.{os.getpid()}.tmp"
    tmp.write_text(text)
    tmp.rename(STATE / name)


def append(name, text):
    with open(STATE / name, "a") as f:
        f.write(text + "\n")


def jsonable(value):
    """Scope to JSON, keeping bytes apart from str."""
    if isinstance(value, bytes):
        return {"$bytes": value.decode("latin-1")}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return {"$repr": repr(value)}


async def read_body(receive):
    """The whole body, and the (length, more_body) of every chunk."""
    chunks = []
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, chunks
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        chunks.append([len(chunk), more])
        body += chunk
        if not more:
            return body, chunks


async def respond(send, status, body=b"", headers=(), content_type=b"text/plain"):
    hdrs = [(b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-worker-pid", str(os.getpid()).encode())]
    hdrs += list(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def wait_file(name, timeout=30.0):
    path = STATE / name
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if loop.time() > deadline:
            raise TimeoutError(f"no {name}")
        await asyncio.sleep(0.02)


async def watch_disconnect(receive, name):
    """Waits (bounded) for http.disconnect and records it in file name."""
    try:
        message = await asyncio.wait_for(receive(), 30)
        mark(name, message["type"])
    except asyncio.TimeoutError:
        mark(name, "timeout")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return

    path = scope["path"]
    query = urllib.parse.parse_qs(scope["query_string"].decode("latin-1"))
    ident = query.get("id", ["x"])[0]

    if path == "/__ready":
        await respond(send, 200, b"ready")
        return

    append("requests.log", f"{scope['method']} {path}")

    if path == "/":
        await respond(send, 200, b"hello")
    elif path.startswith("/scope"):
        await read_body(receive)
        body = json.dumps(jsonable(dict(scope, state=None))).encode()
        await respond(send, 200, body, content_type=b"application/json")
    elif path == "/pid":
        await respond(send, 200, str(os.getpid()).encode())
    elif path == "/echo":
        body, chunks = await read_body(receive)
        if body is None:
            mark(f"echo-{ident}", "http.disconnect")
            return
        ctype = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
        await respond(send, 200, body, content_type=ctype,
                      headers=[(b"x-chunks", json.dumps(chunks).encode())])
    elif path == "/record-body":
        # Writes a line per chunk as it arrives, so a test can see the body
        # reach the app piece by piece before it sends the next piece.
        total = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                append(f"body-{ident}", "http.disconnect")
                return
            chunk = message.get("body", b"")
            total += chunk
            append(f"body-{ident}", f"{len(chunk)} {int(message.get('more_body', False))}")
            if not message.get("more_body", False):
                break
        await respond(send, 200, total)
    elif path == "/slow-reader":
        # Consumes the body slowly, so that the gateway's event window fills
        # and only the worker's credits let the rest through.
        total, events = 0, 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            events += 1
            await asyncio.sleep(0.005)
            if not message.get("more_body", False):
                break
        await respond(send, 200, f"{total} {events}".encode())
    elif path == "/big":
        # ?size=N bytes in one send (the worker splits what the bus would refuse);
        # &length=0 leaves out content-length (chunked).
        size = int(query.get("size", ["0"])[0])
        body = bytes(range(256)) * (size // 256) + bytes(size % 256)
        headers = [(b"content-type", b"application/octet-stream")]
        if query.get("length", ["1"])[0] != "0":
            headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        # No content-length: the gateway must send it chunked (HTTP/1.1).
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream-cl":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"13")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part,
                        "more_body": part != b"three"})
    elif path == "/stream-wait":
        # First chunk, then waits for the test's go-file before the rest.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await wait_file(f"go-{ident}")
        await send({"type": "http.response.body", "body": b"second"})
    elif path == "/start-then-wait":
        # The head alone, then the test's go-file before the body (an SSE stream
        # waiting for its first event): the start must not wait with the app.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        mark(f"started-{ident}", str(os.getpid()))
        await wait_file(f"go-{ident}")
        await send({"type": "http.response.body", "body": b"after the wait"})
    elif path == "/cookies":
        await respond(send, 200, b"cookies", headers=[
            (b"set-cookie", b"a=1; Path=/"), (b"x-multi", b"one"),
            (b"set-cookie", b"b=2; Path=/"), (b"x-multi", b"two")])
    elif path == "/app-closes":
        await respond(send, 200, b"closing", headers=[(b"connection", b"Close")])
    elif path == "/status":
        code = int(query.get("code", ["200"])[0])
        await respond(send, code, f"status {code}".encode())
    elif path == "/raise":
        raise RuntimeError("the app failed on purpose")
    elif path == "/noreply":
        return
    elif path == "/half-reply":
        # Starts the response and returns without the body: the worker
        # must fail the connection (abort), not leave it hanging.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        return
    elif path == "/body-before-start":
        try:
            await send({"type": "http.response.body", "body": b"too early"})
        except Exception as e:  # the worker must raise here
            mark(f"violation-{ident}", type(e).__name__ + ": " + str(e))
            raise
        mark(f"violation-{ident}", "no exception")
    elif path == "/double-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except Exception as e:
            mark(f"violation-{ident}", type(e).__name__ + ": " + str(e))
            await send({"type": "http.response.body", "body": b"after violation"})
            return
        mark(f"violation-{ident}", "no exception")
        await send({"type": "http.response.body", "body": b"no violation"})
    elif path == "/slow":
        # Reads the body, says it started, sleeps, answers.
        await read_body(receive)
        mark(f"started-{ident}", str(os.getpid()))
        await asyncio.sleep(float(query.get("t", ["1"])[0]))
        await respond(send, 200, b"slow done")
    elif path == "/wait-disconnect":
        # Never answers; records the event that ends the wait.
        await read_body(receive)
        mark(f"started-{ident}", str(os.getpid()))
        await watch_disconnect(receive, f"disconnect-{ident}")
    elif path == "/hang":
        # Records its pid and never answers (the test kills the worker).
        await read_body(receive)
        mark(f"started-{ident}", str(os.getpid()))
        await asyncio.sleep(120)
    elif path == "/start-then-hang":
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        mark(f"started-{ident}", str(os.getpid()))
        await asyncio.sleep(120)
    else:
        await respond(send, 404, b"not found")
