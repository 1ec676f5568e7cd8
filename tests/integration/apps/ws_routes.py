"""WebSocket routes, one per behaviour the test_websocket*.py tests need (HTTP: basic_app).

``?id=NAME`` names the marker files a route writes into $IT_STATE_DIR:

- ``/scope``: records the scope (JSON) in ``scope-NAME``, accepts with the subprotocol
  ``?sub=`` names (if offered) and extra headers (``?ext=``: a Sec-WebSocket-Extensions
  header too), then echoes like ``/echo``.
- ``/echo``: accepts (the first offered subprotocol), echoes text and bytes; a text
  ``close:CODE:REASON`` makes it close with that code and reason. Every disconnect it
  sees is appended to ``ws-NAME`` as ``disconnect CODE REASON``.
- ``/refuse?code=&reason=``: closes before accepting (the client gets 403).
- ``/deny``: the denial response extension: status 418, own headers, a body in parts.
- ``/raise-before-accept``, ``/return-before-accept``: fail before accepting (500).
- ``/hold``: takes the connect, marks ``started-NAME`` with its pid (after ``?settle=``
  seconds), then records the next event it receives (the disconnect of a client or
  gateway that gave up) in ``ws-NAME`` without ever answering.
- ``/hang``: accepts, marks ``started-NAME`` with its pid, records the disconnect.
- ``/order?n=N``: accepts; sends ``s0``..``sN-1`` while it receives ``c0``..``cN-1``,
  then sends ``in-order N`` if those came in order (else what was wrong).
- ``/flood?total=&size=``: accepts and sends ``total`` bytes in ``size``-byte binary
  messages, recording in ``progress-NAME`` how many bytes its sends have returned for.
- ``/stall``: accepts, marks ``started-NAME``, then receives nothing until the file
  ``go-NAME`` exists; then counts the bytes it receives until the disconnect, in
  ``received-NAME``.
- ``/violate?case=``: breaks the ASGI state machine; records in ``violation-NAME`` the
  exception ``send`` raised (``send-before-accept``, ``accept-twice``,
  ``send-after-close``) and lets it propagate.
"""

import asyncio
import json
import os
import urllib.parse

from basic_app import app as http_app
from basic_app import append, jsonable, mark, wait_file


def query_of(scope):
    return {k: v[0] for k, v in urllib.parse.parse_qs(scope["query_string"].decode()).items()}


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        await http_app(scope, receive, send)
        return
    query = query_of(scope)
    ident = query.get("id", "x")
    message = await receive()
    assert message["type"] == "websocket.connect", message
    route = ROUTES.get(scope["path"])
    if route is None:
        await send({"type": "websocket.close", "code": 1008})
        return
    await route(scope, receive, send, query, ident)


async def echo_loop(receive, send, ident):
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            append(f"ws-{ident}", f"disconnect {message['code']} {message.get('reason', '')}")
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def scope_route(scope, receive, send, query, ident):
    mark(f"scope-{ident}", json.dumps(jsonable(dict(scope, state=None))))
    wanted = query.get("sub")
    headers = [(b"x-app", b"accepted"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    if "ext" in query:
        headers.append((b"sec-websocket-extensions", query["ext"].encode()))
    await send({"type": "websocket.accept",
                "subprotocol": wanted if wanted in scope["subprotocols"] else None,
                "headers": headers})
    await echo_loop(receive, send, ident)


async def echo_route(scope, receive, send, query, ident):
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept",
                "subprotocol": subprotocols[0] if subprotocols else None})
    await echo_loop(receive, send, ident)


async def refuse_route(scope, receive, send, query, ident):
    await send({"type": "websocket.close", "code": int(query.get("code", "1000")),
                "reason": query.get("reason", "")})


async def deny_route(scope, receive, send, query, ident):
    await send({"type": "websocket.http.response.start", "status": 418,
                "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"teapot"),
                            (b"x-denied", b"twice")]})
    for part in (b"short ", b"and ", b"stout"):
        await send({"type": "websocket.http.response.body", "body": part, "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b""})


async def raise_before_accept(scope, receive, send, query, ident):
    raise RuntimeError("the app failed before accepting, on purpose")


async def return_before_accept(scope, receive, send, query, ident):
    return


async def hold_route(scope, receive, send, query, ident):
    # ?settle=S: let the worker's own messages (a Redis claim) leave before the mark.
    await asyncio.sleep(float(query.get("settle", "0")))
    mark(f"started-{ident}", str(os.getpid()))
    message = await asyncio.wait_for(receive(), 60)
    append(f"ws-{ident}", f"{message['type']} {message.get('code')}")


async def hang_route(scope, receive, send, query, ident):
    await send({"type": "websocket.accept"})
    mark(f"started-{ident}", str(os.getpid()))
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            append(f"ws-{ident}", f"disconnect {message['code']} {message.get('reason', '')}")
            return


async def order_route(scope, receive, send, query, ident):
    n = int(query.get("n", "10000"))
    pad = int(query.get("pad", "0"))  # every odd message padded by this many bytes
    await send({"type": "websocket.accept"})

    async def produce():
        for i in range(n):
            await send({"type": "websocket.send", "text": f"s{i}" + "." * (pad if i % 2 else 0)})

    producer = asyncio.ensure_future(produce())
    problem = None
    for i in range(n):
        message = await receive()
        if message["type"] != "websocket.receive" or message.get("text") != f"c{i}":
            problem = f"expected c{i}, got {message!r}"
            break
    await producer
    await send({"type": "websocket.send", "text": problem or f"in-order {n}"})
    await echo_loop(receive, send, ident)


async def flood_route(scope, receive, send, query, ident):
    total = int(query.get("total", str(200 * 1024 * 1024)))
    size = int(query.get("size", str(64 * 1024)))
    chunk = b"f" * size
    await send({"type": "websocket.accept"})
    sent = 0
    try:
        while sent < total:
            await send({"type": "websocket.send", "bytes": chunk})
            sent += size
            if sent % (16 * size) == 0:
                mark(f"progress-{ident}", str(sent))
    finally:
        mark(f"progress-{ident}", str(sent))
    mark(f"flood-done-{ident}", str(sent))


async def stall_route(scope, receive, send, query, ident):
    await send({"type": "websocket.accept"})
    mark(f"started-{ident}", str(os.getpid()))
    await wait_file(f"go-{ident}", timeout=120)
    received = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            mark(f"received-{ident}", str(received))
            return
        received += len(message.get("bytes") or b"")


async def violate_route(scope, receive, send, query, ident):
    case = query["case"]
    if case in ("accept-twice", "send-after-close"):
        await send({"type": "websocket.accept"})
    if case == "send-after-close":
        await send({"type": "websocket.close", "code": 4000, "reason": "closed first"})
    try:
        if case == "accept-twice":
            await send({"type": "websocket.accept"})
        else:
            await send({"type": "websocket.send", "text": "not allowed now"})
    except Exception as e:  # the worker must raise here
        mark(f"violation-{ident}", f"{type(e).__name__}: {e}")
        raise
    mark(f"violation-{ident}", "no exception")


ROUTES = {
    "/scope": scope_route,
    "/echo": echo_route,
    "/refuse": refuse_route,
    "/deny": deny_route,
    "/raise-before-accept": raise_before_accept,
    "/return-before-accept": return_before_accept,
    "/hold": hold_route,
    "/hang": hang_route,
    "/order": order_route,
    "/flood": flood_route,
    "/stall": stall_route,
    "/violate": violate_route,
}
