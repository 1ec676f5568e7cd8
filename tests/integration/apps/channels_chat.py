"""A Django Channels chat on asgi_bridge.channels_layer.BusChannelLayer
(channels_chat_settings), the way the Channels tutorial writes it:

- ``ws/chat/ROOM/``: ``AsyncWebsocketConsumer``; ``group_add`` on connect, then says
  ``me CHANNEL_NAME``. A text ``to CHANNEL TEXT`` sends ``TEXT`` to that channel
  (``chat.direct``), ``fill CHANNEL N`` sends N messages to it and answers ``sent K`` or
  ``full at K`` (ChannelFull), ``leave`` ``group_discard``s (answers ``left``), ``flush``
  flushes the layer (answers ``flushed``), anything
  else goes to the room with ``group_send`` (``chat.message``). Every message it gets is
  sent to the client as its text.
- ``ws/sync/ROOM/``: the same chat with a sync ``WebsocketConsumer`` (``async_to_sync``).
- ``ws/named/NAME/``: accepts, says ``listening``, then forwards every message of the
  named channel NAME (``receive`` in a loop) to the client.
"""

import asyncio
import os

os.environ["DJANGO_SETTINGS_MODULE"] = "channels_chat_settings"

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from channels.exceptions import ChannelFull  # noqa: E402
from channels.generic.websocket import (AsyncWebsocketConsumer,  # noqa: E402
                                        WebsocketConsumer)
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402


class Chat(AsyncWebsocketConsumer):
    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()
        await self.send(text_data=f"me {self.channel_name}")

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        words = text_data.split(" ", 2)
        if words[0] == "to":
            await self.channel_layer.send(words[1], {"type": "chat.direct", "text": words[2]})
        elif words[0] == "fill":
            await self.send(text_data=await self.fill(words[1], int(words[2])))
        elif words[0] == "leave":
            await self.channel_layer.group_discard(self.room, self.channel_name)
            await self.send(text_data="left")
        elif words[0] == "flush":
            await self.channel_layer.flush()
            await self.send(text_data="flushed")
        else:
            await self.channel_layer.group_send(self.room, {"type": "chat.message",
                                                            "text": text_data})

    async def fill(self, channel, count):
        for n in range(count):
            try:
                await self.channel_layer.send(channel, {"type": "chat.direct", "text": str(n)})
            except ChannelFull:
                return f"full at {n}"
        return f"sent {count}"

    async def chat_message(self, event):
        await self.send(text_data=event["text"])

    chat_direct = chat_message


class SyncChat(WebsocketConsumer):
    def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        async_to_sync(self.channel_layer.group_add)(self.room, self.channel_name)
        self.accept()
        self.send(text_data=f"me {self.channel_name}")

    def disconnect(self, code):
        async_to_sync(self.channel_layer.group_discard)(self.room, self.channel_name)

    def receive(self, text_data=None, bytes_data=None):
        async_to_sync(self.channel_layer.group_send)(self.room, {"type": "chat.message",
                                                                 "text": text_data})

    def chat_message(self, event):
        self.send(text_data=event["text"])


async def named(scope, receive, send):
    """Plain ASGI: forwards the messages of a named channel."""
    layer = get_channel_layer()
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "listening"})
    name = scope["url_route"]["kwargs"]["name"]
    disconnected = asyncio.ensure_future(receive())
    while True:
        message = asyncio.ensure_future(layer.receive(name))
        await asyncio.wait({message, disconnected}, return_when=asyncio.FIRST_COMPLETED)
        if not message.done():
            message.cancel()
            return
        await send({"type": "websocket.send", "text": message.result()["text"]})


application = ProtocolTypeRouter({
    "http": get_asgi_application(),
    "websocket": URLRouter([
        path("ws/chat/<room>/", Chat.as_asgi()),
        path("ws/sync/<room>/", SyncChat.as_asgi()),
        path("ws/named/<name>/", named),
    ]),
})
