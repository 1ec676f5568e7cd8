"""Gateway-side broadcast (docs/broadcast.md).

A WebSocket app subscribes its own connection to channels with the
``asgi-bridge.broadcast`` scope extension::

    await send({"type": "asgi-bridge.subscribe", "channel": "prices"})

and any code running in the worker publishes to a channel, with no connection::

    from asgi_bridge import publish
    await publish("prices", text="EUR/USD 1.0842")

Every gateway writes the message to each socket subscribed to the channel: the
worker sends one bus message per gateway (ZeroMQ) or one Redis PUBLISH, whatever
the number of subscribers.
"""

from . import codec

_worker = None  # the running Worker of this process (set by Worker.start)


def attach(worker):
    global _worker
    _worker = worker


async def publish(channel, *, text=None, bytes=None):
    """Publish one message (exactly one of ``text`` and ``bytes``) to ``channel``.

    Raises ``InvalidEvent`` for a bad channel name or message, ``RuntimeError`` outside
    a running worker. Delivery is best effort: at most once per subscribed socket, in
    publish order per socket.
    """
    codec.check_channel(channel)
    event = codec.canonical_event({"type": "websocket.send", "text": text, "bytes": bytes})
    if _worker is None:
        raise RuntimeError("asgi_bridge.publish: no asgi_bridge worker runs in this process")
    await _worker.publish(channel, event)
