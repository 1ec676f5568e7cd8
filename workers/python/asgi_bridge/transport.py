"""Bus transports, behind one small interface the worker uses:

* ``start(on_message)`` — connect; then ``on_message(link, data)`` is called (on the event
  loop, synchronously) for every message received;
* ``links`` — one per configured bus endpoint: ``ready``/``heartbeat``/``drain``/``bye`` go
  to each of them;
* ``await send(link, data)`` — send one message in order; waits when the bus pushes back;
* ``send_nowait(link, data)`` — for control messages that must never block (heartbeats);
* ``await close(linger)``.

A *link* is how replies reach a gateway: the worker remembers, for each gateway id, the
link its messages arrived on. ZeroMQ (docs/protocol.md §1): one DEALER per gateway URL,
its routing id set to the worker id, one frame per message. Redis will implement the
same interface later.
"""

import asyncio
import logging
from urllib.parse import urlsplit

import zmq
import zmq.asyncio

logger = logging.getLogger("asgi_bridge.transport")


def split_bus_urls(values):
    """``--bus`` may be repeated and comma-separated: return the flat list of URLs."""
    urls = [url.strip() for value in values for url in value.split(",")]
    return [url for url in urls if url]


def zmq_endpoint(url):
    """``zmq://HOST:PORT`` → ``tcp://HOST:PORT``; ``zmq+ipc://PATH`` → ``ipc://PATH``."""
    parts = urlsplit(url)
    if parts.scheme == "zmq":
        if not parts.hostname or parts.port is None:
            raise ValueError(f"bus URL {url!r}: expected zmq://HOST:PORT")
        return f"tcp://{parts.netloc}"
    if parts.scheme == "zmq+ipc":
        path = url[len("zmq+ipc://"):]
        if not path:
            raise ValueError(f"bus URL {url!r}: expected zmq+ipc://PATH")
        return f"ipc://{path}"
    if parts.scheme == "redis":
        raise ValueError(f"bus URL {url!r}: the Redis bus is not supported by the "
                         "Python worker yet")
    raise ValueError(f"bus URL {url!r}: unknown scheme (expected zmq:// or zmq+ipc://)")


def make_transport(urls, worker_id):
    endpoints = [zmq_endpoint(url) for url in urls]  # ValueError before anything connects
    return ZmqTransport(list(zip(urls, endpoints)), worker_id)


class Link:
    """One bus endpoint (here: one DEALER socket connected to one gateway URL)."""

    __slots__ = ("url", "socket")

    def __init__(self, url, socket):
        self.url = url
        self.socket = socket

    def __repr__(self):
        return f"<Link {self.url}>"


def _retrieve(future):
    # A dropped heartbeat is fine; an unretrieved exception would be logged as a bug.
    if not future.cancelled():
        future.exception()


class ZmqTransport:
    def __init__(self, url_endpoints, worker_id):
        self._url_endpoints = url_endpoints
        self._worker_id = worker_id
        self._context = None
        self._readers = []
        self.links = []

    def start(self, on_message):
        self._context = zmq.asyncio.Context()
        for url, endpoint in self._url_endpoints:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.ROUTING_ID, self._worker_id.encode())
            sock.setsockopt(zmq.LINGER, 0)  # close() sets the real linger
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)  # find a restarted gateway soon
            if endpoint.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            sock.connect(endpoint)
            link = Link(url, sock)
            self.links.append(link)
            reader = asyncio.get_running_loop().create_task(self._read(link, on_message))
            self._readers.append(reader)
            logger.info("bus: connecting to %s (%s)", url, endpoint)

    async def _read(self, link, on_message):
        sock = link.socket
        while True:
            try:
                frames = await sock.recv_multipart()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as exc:
                logger.error("bus %s: receive failed: %s", link.url, exc)
                return
            if len(frames) != 1:
                logger.warning("bus %s: dropped a message of %d frames (expected 1)",
                               link.url, len(frames))
                continue
            try:
                on_message(link, frames[0])
            except Exception:
                logger.exception("bus %s: error while handling a message", link.url)

    async def send(self, link, data):
        await link.socket.send(data)

    def send_nowait(self, link, data):
        link.socket.send(data, flags=zmq.DONTWAIT).add_done_callback(_retrieve)

    async def close(self, linger=1.0):
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for link in self.links:
            link.socket.close(linger=int(linger * 1000))
        if self._context is not None:
            # term() waits (at most the linger) for queued messages, e.g. our `bye`.
            await asyncio.get_running_loop().run_in_executor(None, self._context.term)
            self._context = None
