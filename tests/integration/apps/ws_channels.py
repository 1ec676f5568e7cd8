"""A Django Channels project's ASGI entry point (Channels 4, no channel layer), served
unmodified: HTTP goes to the Django test project (django_settings, django_urls), WebSocket
to consumers through a URLRouter, the way the Channels tutorial writes it.

- ``ws/echo/``: sync ``WebsocketConsumer``; accepts, echoes text and bytes; text
  ``close`` makes it close with 4001.
- ``ws/reject/``: sync consumer that closes in ``connect`` (the client gets 403).
- ``ws/deny/``: sync consumer that raises ``DenyConnection`` in ``connect`` (403).
- ``ws/async/<name>/``: ``AsyncWebsocketConsumer``; accepts with the first offered
  subprotocol, greets with the URL's ``name``, answers text with ``async:TEXT`` and bytes
  reversed; text ``close`` closes with 4002.
- ``ws/json/``: ``AsyncJsonWebsocketConsumer``; answers ``{"echo": CONTENT}``.

Every consumer appends ``disconnect CODE`` to ``channels-ID`` (``?id=ID``) when the
connection ends.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()  # sets Django up before the consumers import

from urllib.parse import parse_qs  # noqa: E402

from channels.exceptions import DenyConnection  # noqa: E402
from channels.generic.websocket import (AsyncJsonWebsocketConsumer,  # noqa: E402
                                        AsyncWebsocketConsumer, WebsocketConsumer)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from basic_app import append  # noqa: E402


def record_disconnect(scope, code):
    ident = parse_qs(scope["query_string"].decode()).get("id", ["x"])[0]
    append(f"channels-{ident}", f"disconnect {code}")


class EchoConsumer(WebsocketConsumer):
    def receive(self, text_data=None, bytes_data=None):
        if text_data == "close":
            self.close(code=4001)
        elif text_data is not None:
            self.send(text_data=text_data)
        else:
            self.send(bytes_data=bytes_data)

    def disconnect(self, code):
        record_disconnect(self.scope, code)


class RejectConsumer(WebsocketConsumer):
    def connect(self):
        self.close()


class DenyConsumer(WebsocketConsumer):
    def connect(self):
        raise DenyConnection()


class AsyncEchoConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        offered = self.scope["subprotocols"]
        await self.accept(subprotocol=offered[0] if offered else None)
        await self.send(text_data=f"hello {self.scope['url_route']['kwargs']['name']}")

    async def receive(self, text_data=None, bytes_data=None):
        if text_data == "close":
            await self.close(code=4002)
        elif text_data is not None:
            await self.send(text_data=f"async:{text_data}")
        else:
            await self.send(bytes_data=bytes_data[::-1])

    async def disconnect(self, code):
        record_disconnect(self.scope, code)


class JsonEchoConsumer(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content, **kwargs):
        await self.send_json({"echo": content})

    async def disconnect(self, code):
        record_disconnect(self.scope, code)


application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter([
        path("ws/echo/", EchoConsumer.as_asgi()),
        path("ws/reject/", RejectConsumer.as_asgi()),
        path("ws/deny/", DenyConsumer.as_asgi()),
        path("ws/async/<str:name>/", AsyncEchoConsumer.as_asgi()),
        path("ws/json/", JsonEchoConsumer.as_asgi()),
    ]),
})
