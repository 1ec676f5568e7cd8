"""The apps of the HTTP contract tests in one, for test_http2_contract.py:
basic_app's routes, bad_heads_app's ``/head/`` and ``/ok/``, slow_body_app's
``/held-body``, and ``/trailers`` (the http.response.trailers extension).

``/trailers?id=NAME`` records whether the scope offers the extension, then
answers a streamed body with ``trailers: True`` and two trailer messages
(``more_trailers`` true, then false); ``&length=1`` adds a content-length;
``&bad=1`` sends a trailer value the HTTP grammar forbids.
"""

import urllib.parse

import bad_heads_app
import slow_body_app
from basic_app import mark


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/trailers":
        return await trailers(scope, receive, send)
    if scope["type"] == "http" and scope["path"] == "/held-body":
        return await slow_body_app.app(scope, receive, send)
    return await bad_heads_app.app(scope, receive, send)


async def trailers(scope, receive, send):
    query = urllib.parse.parse_qs(scope["query_string"].decode("latin-1"))
    ident = query.get("id", ["x"])[0]
    mark(f"trailers-ext-{ident}", str("http.response.trailers" in scope.get("extensions", {})))
    headers = [(b"content-type", b"text/plain"), (b"trailer", b"x-checksum, x-count")]
    if query.get("length") == ["1"]:
        headers.append((b"content-length", b"7"))
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    await send({"type": "http.response.body", "body": b"one,", "more_body": True})
    await send({"type": "http.response.body", "body": b"two"})
    await send({"type": "http.response.trailers", "headers": [(b"X-Checksum", b"abc")], "more_trailers": True})
    value = b"a\x01b" if query.get("bad") == ["1"] else b"2"
    await send({"type": "http.response.trailers", "headers": [(b"x-count", value)]})
