"""An app whose response heads break the HTTP grammar, one route per case,
for test_invalid_responses.py. ``/head/NAME`` sends the head CASES[NAME] and
a short body; ``/ok/NAME`` one of the unusual but valid heads of VALID.
The WebSocket route ``/ws/deny/NAME`` answers the handshake with the same
head as a denial response (websocket.http.response.start), ``/ws/accept-bad``
accepts with a forbidden header value.
"""

import basic_app

BODY = b"hello"

# name -> (status, headers): what the gateway itself must refuse.
CASES = {
    "cl-abc-chunked": (200, [(b"content-length", b"abc"), (b"transfer-encoding", b"chunked")]),
    "cl-two-values": (200, [(b"content-length", b"5"), (b"content-length", b"6")]),
    "cl-negative": (200, [(b"content-length", b"-1")]),
    "cl-overflow": (200, [(b"content-length", b"99999999999999999999")]),
    "status-101": (101, [(b"upgrade", b"websocket"), (b"connection", b"upgrade")]),
    "status-100": (100, []),
    "status-199": (199, []),
    "te-gzip": (200, [(b"transfer-encoding", b"gzip")]),
    "value-ctl": (200, [(b"x-bad", b"a\x01b")]),
    "value-del": (200, [(b"x-bad", b"a\x7fb")]),
}

# name -> (status, headers): what the Python worker's codec refuses before
# it reaches the bus (the app's send raises, the worker reports an error).
WORKER_CASES = {
    "name-space": (200, [(b"x bad", b"1")]),
    "name-colon": (200, [(b"x:bad", b"1")]),
    "value-crlf": (200, [(b"x-bad", b"a\r\nx-injected: 1")]),
    "value-nul": (200, [(b"x-bad", b"a\x00b")]),
}

# name -> (status, headers): unusual heads that are valid and must pass.
VALID = {
    "cl-repeated-same": (200, [(b"content-length", b"5"), (b"Content-Length", b"5")]),
    "cl-leading-zeros": (200, [(b"content-length", b"005")]),
    "te-chunked-from-app": (200, [(b"transfer-encoding", b"chunked")]),
    "status-599": (599, [(b"content-length", b"5")]),
    "status-299": (299, []),
    "odd-but-valid": (200, [(b"x-tchars!#$%&'*+-.^_`|~", b"tab\there, obs-text \xe9\xff"),
                            (b"x-empty", b"")]),
}


async def app(scope, receive, send):
    path = scope.get("path", "")
    if scope["type"] == "websocket" and path.startswith("/ws/"):
        return await websocket(scope, receive, send, path)
    if scope["type"] != "http" or not path.startswith(("/head/", "/ok/")):
        return await basic_app.app(scope, receive, send)
    name = path.split("/", 2)[2]
    status, headers = {**CASES, **WORKER_CASES, **VALID}[name]
    await basic_app.read_body(receive)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def websocket(scope, receive, send, path):
    await receive()  # websocket.connect
    if path == "/ws/accept-bad":
        await send({"type": "websocket.accept", "headers": [(b"x-bad", b"a\x01b")]})
    elif path == "/ws/accept-ok":
        await send({"type": "websocket.accept", "headers": [(b"x-fine", b"tab\tok")]})
        await send({"type": "websocket.close", "code": 1000})
    elif path.startswith("/ws/deny/"):
        status, headers = {**CASES, **VALID}[path.split("/", 3)[3]]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": BODY})
