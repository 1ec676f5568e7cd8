"""basic_app plus a route that holds a request body back, for the
minimum-body-rate tests: a client that is slow only because the app is slow
must not be cut.

``/held-body?id=NAME`` takes the first chunk, marks ``held-NAME``, and reads
nothing more until the test's ``go-NAME`` file: meanwhile the gateway's event
window fills and it stops reading the client (credits). Then it reads the
rest and answers with the body's length.
"""

import urllib.parse

import basic_app
from basic_app import mark, respond, wait_file


async def app(scope, receive, send):
    if scope["type"] != "http" or scope["path"] != "/held-body":
        return await basic_app.app(scope, receive, send)
    query = urllib.parse.parse_qs(scope["query_string"].decode("latin-1"))
    ident = query.get("id", ["x"])[0]
    message = await receive()
    mark(f"held-{ident}", "held")
    await wait_file(f"go-{ident}")
    total = 0
    while message["type"] == "http.request":
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            await respond(send, 200, str(total).encode())
            return
        message = await receive()
    mark(f"result-{ident}", message["type"])  # http.disconnect: the gateway cut the client
