"""Unmodified framework apps (Starlette, Django, Channels) through the worker, in-process."""

import asyncio
import contextlib
import json

import pytest

from asgi_bridge.lifespan import Lifespan
from asgi_bridge.worker import Worker
from bridge_helpers import FakeTransport, run


async def serve(app, mode="auto"):
    """Lifespan startup, then a worker on a fake bus; returns (worker, bus, lifespan)."""
    lifespan = Lifespan(app, mode)
    assert await lifespan.startup()
    state = lifespan.state if lifespan.supported else None
    bus = FakeTransport()
    worker = Worker(app, bus, "wk-fw", state=state)
    worker.start()
    return worker, bus, lifespan


def http_request(conn, path, method="GET", body=b"", headers=()):
    return {"k": "event", "g": "gw-1", "c": conn, "s": 0,
            "scope": {"type": "http", "method": method, "path": path,
                      "headers": [[b"host", b"testserver"], *headers],
                      "client": ["127.0.0.1", 5000], "server": ["testserver", 80]},
            "event": {"type": "http.request", "body": body}}


def websocket_connect(conn, path):
    return {"k": "event", "g": "gw-1", "c": conn, "s": 0,
            "scope": {"type": "websocket", "path": path,
                      "headers": [[b"host", b"testserver"]],
                      "client": ["127.0.0.1", 5000], "server": ["testserver", 80]},
            "event": {"type": "websocket.connect"}}


def response_of(bus, conn):
    """(status, headers dict, body) of connection `conn`, or the error message."""
    errors = [m["message"] for m in bus.of_kind("error") if m["c"] == conn]
    if errors:
        return errors[0]
    events = [m["event"] for m in bus.of_kind("event") if m["c"] == conn]
    start = events[0]
    body = b"".join(e.get("body", b"") for e in events[1:])
    return start["status"], dict(start["headers"]), body


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


# --- Starlette -------------------------------------------------------------------------

def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield {"db": "ready"}

    async def home(request):
        return PlainTextResponse("hello")

    async def state(request):
        return JSONResponse({"db": request.state.db, "client": request.client.host})

    async def echo(request):
        return PlainTextResponse(await request.body())

    async def stream(request):
        async def chunks():
            for i in range(3):
                yield f"chunk{i};"
        return StreamingResponse(chunks())

    async def fail(request):
        raise RuntimeError("starlette view failed")

    async def ws(websocket):
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close(code=4001)

    return Starlette(routes=[Route("/", home), Route("/state", state),
                             Route("/echo", echo, methods=["POST"]), Route("/stream", stream),
                             Route("/fail", fail), WebSocketRoute("/ws", ws)],
                     lifespan=lifespan)


def test_starlette():
    async def main():
        worker, bus, lifespan = await serve(starlette_app())
        assert lifespan.supported and lifespan.state == {"db": "ready"}
        bus.deliver(http_request(1, "/"))
        bus.deliver(http_request(2, "/state"))
        bus.deliver(http_request(3, "/echo", "POST", b"posted"))
        bus.deliver(http_request(4, "/stream"))
        bus.deliver(http_request(5, "/nowhere"))
        bus.deliver(http_request(6, "/fail"))
        await until(lambda: not worker.conns)
        assert response_of(bus, 1)[::2] == (200, b"hello")
        assert json.loads(response_of(bus, 2)[2]) == {"db": "ready", "client": "127.0.0.1"}
        assert response_of(bus, 3)[2] == b"posted"
        assert response_of(bus, 4)[2] == b"chunk0;chunk1;chunk2;"
        assert response_of(bus, 5)[0] == 404
        # Starlette's ServerErrorMiddleware answers 500 itself, then re-raises: the
        # response is complete, so the worker logs the exception and reports no error.
        assert response_of(bus, 6)[0] == 500

        bus.deliver(websocket_connect(7, "/ws"))
        await until(lambda: bus.of_kind("event")[-1]["event"]["type"] == "websocket.accept")
        bus.deliver({"k": "event", "g": "gw-1", "c": 7, "s": 1,
                     "event": {"type": "websocket.receive", "text": "shout"}})
        await until(lambda: not worker.conns)
        events = [m["event"] for m in bus.of_kind("event") if m["c"] == 7]
        assert events[1:] == [{"type": "websocket.send", "text": "SHOUT"},
                              {"type": "websocket.close", "code": 4001, "reason": ""}]
        assert await lifespan.shutdown(1)
    run(main())


# --- Django and Channels ------------------------------------------------------------------

def django_apps():
    import django
    from django.conf import settings
    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["*"],
                           ROOT_URLCONF=__name__, INSTALLED_APPS=["channels"],
                           MIDDLEWARE=[])
        django.setup()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.asgi import get_asgi_application
    from django.urls import path

    class Echo(AsyncWebsocketConsumer):
        async def connect(self):
            await self.accept()

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=f"echo:{text_data}")

    django_app = get_asgi_application()
    channels_app = ProtocolTypeRouter({
        "http": django_app,
        "websocket": URLRouter([path("ws/", Echo.as_asgi())]),
    })
    return django_app, channels_app


def django_view(request):
    from django.http import HttpResponse
    return HttpResponse(f"django {request.method} {request.body.decode()}",
                        content_type="text/plain")


urlpatterns = []


def _urls():
    from django.urls import path
    urlpatterns[:] = [path("hello/", django_view)]


def test_django_and_channels():
    pytest.importorskip("django")
    pytest.importorskip("channels")
    django_app, channels_app = django_apps()
    _urls()

    async def main():
        # Django's handler refuses the lifespan scope: auto mode goes on without it.
        worker, bus, lifespan = await serve(channels_app)
        assert not lifespan.supported
        bus.deliver(http_request(1, "/hello/", "POST", b"data",
                                 headers=[[b"content-length", b"4"]]))
        bus.deliver(http_request(2, "/missing/"))
        await until(lambda: not worker.conns)
        status, headers, body = response_of(bus, 1)
        assert (status, body) == (200, b"django POST data")
        # Django 3.2 sends "Content-Type": names are passed on as the app wrote them.
        assert headers[b"Content-Type"] == b"text/plain"
        assert response_of(bus, 2)[0] == 404

        bus.deliver(websocket_connect(3, "/ws/"))
        await until(lambda: bus.of_kind("event") and
                    bus.of_kind("event")[-1]["event"]["type"] == "websocket.accept")
        bus.deliver({"k": "event", "g": "gw-1", "c": 3, "s": 1,
                     "event": {"type": "websocket.receive", "text": "hi"}})
        await until(lambda: bus.of_kind("event")[-1]["event"].get("text") == "echo:hi")
        bus.deliver({"k": "event", "g": "gw-1", "c": 3, "s": 2,
                     "event": {"type": "websocket.disconnect", "code": 1000}})
        await until(lambda: not worker.conns)
        assert bus.of_kind("error") == []
    run(main(), timeout=20)
