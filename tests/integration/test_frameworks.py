"""Real frameworks served unmodified: Starlette and Django (ASGI)."""

import json

from .harness import RawConnection, request


def test_starlette_app(bridge_factory):
    b = bridge_factory("starlette_app:app", ready_path="/")
    r = request(b.port, "GET", "/")
    assert (r.status, r.body) == (200, b"hello from starlette")
    assert r.header("content-type").startswith("text/plain")

    r = request(b.port, "GET", "/items/42?q=caf%C3%A9")
    assert r.status == 200
    assert json.loads(r.body) == {"id": 42, "q": "café", "started": True}

    r = request(b.port, "POST", "/echo", body=b"posted body")
    assert (r.status, r.body) == (201, b"posted body")
    assert r.header("x-length") == "11"

    r = request(b.port, "GET", "/cookies")
    assert [c.split(";")[0] for c in r.all("set-cookie")] == ["a=1", "b=2"]

    r = request(b.port, "GET", "/nowhere")
    assert r.status == 404

    r = request(b.port, "GET", "/boom")
    assert r.status == 500


def test_starlette_streaming_response_is_chunked(bridge_factory):
    b = bridge_factory("starlette_app:app", ready_path="/")
    with RawConnection(b.port) as c:
        c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    assert r.chunked and r.complete
    assert r.body == b"part0;part1;part2;"


def test_django_app(bridge_factory):
    b = bridge_factory("django_asgi:application", ready_path="/")
    r = request(b.port, "GET", "/")
    assert (r.status, r.body) == (200, b"hello from django")

    r = request(b.port, "GET", "/items/7?q=x%20y")
    assert r.status == 200
    assert json.loads(r.body) == {"id": 7, "q": "x y", "method": "GET",
                                  "path": "/items/7", "host": f"127.0.0.1:{b.port}"}

    r = request(b.port, "POST", "/echo", body=b'{"a": 1}',
                headers={"Content-Type": "application/json"})
    assert (r.status, r.body) == (201, b'{"a": 1}')
    assert r.header("content-type").startswith("application/json")

    r = request(b.port, "GET", "/async")
    assert (r.status, json.loads(r.body)) == (200, {"async": True})

    r = request(b.port, "GET", "/nowhere")
    assert r.status == 404

    r = request(b.port, "GET", "/boom")
    assert r.status == 500

    # ALLOWED_HOSTS is enforced from the Host header the gateway passed on.
    r = request(b.port, "GET", "/", headers={"Host": "evil.example"})
    assert r.status == 400
