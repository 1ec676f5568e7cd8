"""The fan-out benchmark's Django Channels app (bench/fanout), the same file for every server:

    WebSocket /fan/    a member: group_add("fan") on connect, then says "ready"; every
                       message of the group is sent to it
    WebSocket /send/   the sender: each text it sends is group_send to "fan"
    HTTP (any path)    200 "ok" (readiness)

FANOUT_LAYER picks the channel layer: "bus" (asgi_bridge's BusChannelLayer) or "redis"
(channels_redis on FANOUT_REDIS, e.g. redis://127.0.0.1:6379).
"""

import os

import django
from django.conf import settings

if os.environ.get("FANOUT_LAYER", "bus") == "bus":
    LAYER = {"BACKEND": "asgi_bridge.channels_layer.BusChannelLayer"}
else:
    LAYER = {"BACKEND": "channels_redis.core.RedisChannelLayer",
             "CONFIG": {"hosts": [os.environ["FANOUT_REDIS"]]}}
settings.configure(DEBUG=False, SECRET_KEY="bench", ALLOWED_HOSTS=["*"], INSTALLED_APPS=[],
                   CHANNEL_LAYERS={"default": LAYER})
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "fan"


class Member(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send(text_data="ready")

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def fan_message(self, event):
        await self.send(text_data=event["text"])


class Sender(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(GROUP, {"type": "fan.message", "text": text_data})


async def ready(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter({
    "http": ready,
    "websocket": URLRouter([path("fan/", Member.as_asgi()), path("send/", Sender.as_asgi())]),
})
