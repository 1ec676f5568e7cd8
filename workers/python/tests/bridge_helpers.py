"""Helpers shared by the worker's tests (a plain module: conftest names can clash)."""

import asyncio

from asgi_bridge import codec


def run(coro, timeout=10):
    """Run a coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Link:
    def __init__(self, url):
        self.url = url


class FakeTransport:
    """The transport interface of asgi_bridge.transport, recording what is sent."""

    shared_queue = False

    def __init__(self, urls=("zmq://a",)):
        self.links = [Link(url) for url in urls]
        self.sent = []  # (link url, decoded message)
        self.free = []     # every free HTTP capacity the worker reported
        self.free_ws = []  # and the free WebSocket capacity with it
        self.closed = False

    def start(self, on_message):
        self.on_message = on_message

    def reply_link(self, link, gateway_id):
        return link

    def set_free_capacity(self, requests, websockets=0):
        self.free.append(requests)
        self.free_ws.append(websockets)

    async def send(self, link, data):
        self.sent.append((link.url, codec.decode(data)))

    def send_nowait(self, link, data):
        self.sent.append((link.url, codec.decode(data)))

    async def close(self):
        self.closed = True

    def publish_group(self, group, data):
        self.sent.append(("group", codec.decode(data)))

    def subscribe_group(self, group):
        pass

    async def group_subscribed(self, group, timeout):
        pass

    def unsubscribe_group(self, group):
        pass

    def deliver(self, envelope, link=0):
        self.on_message(self.links[link], codec.encode(envelope))

    def kinds(self):
        return [m["k"] for _, m in self.sent]

    def of_kind(self, kind):
        return [m for _, m in self.sent if m["k"] == kind]


class SharedQueueTransport(FakeTransport):
    """Like the Redis transport: no configured links, one link per gateway id."""

    shared_queue = True

    def __init__(self):
        super().__init__(urls=())
        self.inbox = Link("redis://inbox")

    def reply_link(self, link, gateway_id):
        return Link(f"redis://{gateway_id}")

    def deliver(self, envelope, link=None):
        self.on_message(self.inbox, codec.encode(envelope))
