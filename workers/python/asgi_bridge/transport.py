"""Bus transports, behind one small interface the worker uses:

* ``start(on_message)`` — connect; then ``on_message(link, data)`` is called (on the event
  loop, synchronously) for every message received (``data``: bytes, or, from the native
  ZeroMQ batches, a read-only buffer over a large message: for ``wire.decode`` only);
* ``links`` — one per configured bus endpoint: ``ready``/``heartbeat``/``drain``/``bye`` go
  to each of them (none on Redis, where no gateway is configured);
* ``reply_link(link, gateway_id)`` — the link that reaches gateway ``gateway_id``, whose
  message arrived on ``link``;
* ``await send(link, data)`` — send one message in order; waits when the bus pushes back;
* ``send_nowait(link, data)`` — for control messages that must never block (heartbeats);
* ``shared_queue`` — True when workers pull new connections from a shared queue (Redis):
  then there is no ``ready``, the worker claims every new connection at once, and tells
  the transport how many more HTTP requests and WebSockets it may take with
  ``set_free_capacity(requests, websockets)`` (a no-op on ZeroMQ, where the gateway
  routes by the announced capacities);
* ``await close(linger)`` — stop, after giving queued messages ``linger`` seconds.

A *link* is how replies reach a gateway: the worker remembers, for each gateway id, the
link ``reply_link`` gave it. ZeroMQ (docs/protocol.md §1): one DEALER per gateway URL,
its routing id set to the worker id, one frame per message; a reply goes back on the
link its connection arrived on. Redis (docs/redis.md, ``redis_transport.py``): one
server for every gateway; a reply goes to the gateway's own queue.

On ZeroMQ, a gateway on the same host and the worker move messages of 16 KiB or more
through shared-memory rings (docs/protocol.md §1.1, ``shared_ring.py``): the socket then
carries a short reference in the message's place. The transport offers its ring, answers
the gateway's offer and resolves references itself; the worker sees messages only.
"""

import asyncio
import collections
import functools
import logging
import os
from urllib.parse import urlsplit

import zmq

from . import shared_ring, wire
from .curve import HandshakeWatcher
from .loglimit import LogLimiter
from .redis_transport import BusError, RedisTransport, check_redis, parse_redis_url  # noqa: F401

logger = logging.getLogger("asgi_bridge.transport")


def split_bus_urls(values):
    """``--bus`` may be repeated and comma-separated: return the flat list of URLs."""
    urls = [url.strip() for value in values for url in value.split(",")]
    return [url for url in urls if url]


def zmq_endpoint(url):
    """``zmq://HOST:PORT`` → ``tcp://HOST:PORT``; ``zmq+ipc://PATH`` → ``ipc://PATH``."""
    parts = urlsplit(url)
    if parts.scheme == "zmq":
        try:
            port = parts.port
        except ValueError as exc:  # out of range, or not a number
            raise ValueError(f"bus URL {url!r}: {exc}") from None
        if not parts.hostname or port is None:
            raise ValueError(f"bus URL {url!r}: expected zmq://HOST:PORT")
        return f"tcp://{parts.netloc}"
    if parts.scheme == "zmq+ipc":
        path = url[len("zmq+ipc://"):]
        if not path:
            raise ValueError(f"bus URL {url!r}: expected zmq+ipc://PATH")
        return f"ipc://{path}"
    raise ValueError(f"bus URL {url!r}: unknown scheme "
                     "(expected zmq://, zmq+ipc:// or redis://)")


def check_bus_urls(urls):
    """ValueError naming the problem unless `urls` make one bus: ZeroMQ URLs (one per
    gateway), or exactly one redis:// URL (one server carries every gateway)."""
    redis_urls = [url for url in urls if url.startswith(("redis:", "rediss:"))]
    if redis_urls and len(urls) > 1:
        raise ValueError(f"bus URL {redis_urls[0]!r}: a Redis bus is the only --bus "
                         "(every gateway shares it)")
    if redis_urls:
        parse_redis_url(redis_urls[0])
    else:
        for url in urls:
            zmq_endpoint(url)


def make_transport(urls, worker_id, prefix="asgi", curve=None, redis_tls=None,
                   ring_capacity=shared_ring.DEFAULT_CAPACITY):
    """The transport for `urls`. ValueError for bad URLs; BusError when Redis refuses us
    (wrong password, unknown user, bad database) or cannot be reached at start. `curve`:
    ``curve.CurveKeys`` for ZeroMQ CURVE, or None; `redis_tls`: a RedisTls for rediss://;
    `ring_capacity`: of the shared-memory ring offered to each ZeroMQ gateway, 0: none."""
    check_bus_urls(urls)  # ValueError before anything connects
    if urls[0].startswith(("redis:", "rediss:")):
        url = parse_redis_url(urls[0])
        url.tls_options = redis_tls or url.tls_options
        check_redis(url)
        return RedisTransport(url, worker_id, prefix)
    return ZmqTransport([(url, zmq_endpoint(url)) for url in urls], worker_id, curve,
                        ring_capacity)


# Plain ints: pyzmq's enums cost an enum operation per use, on every message.
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_RCVMORE = int(zmq.RCVMORE)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_MARK = shared_ring.MARK  # a transport frame's first byte
_MARK_BYTES = bytes([_MARK])
_RING_MIN = shared_ring.MIN_MESSAGE


def _batch_io_thread(context):
    """Run ZeroMQ's I/O thread as SCHED_BATCH, so that its wake-ups do not preempt us.

    Otherwise, whenever it shares a CPU with the event loop (one core, or the benchmark's
    pinning), a message we hand to ZeroMQ can wake it and switch to it at once, so that a
    batch leaves one message per switch and TCP write. As SCHED_BATCH it runs when the
    loop waits and writes the batch together (fewer segments for the gateway to read
    too; measured: a few % of worker and 10 % of gateway CPU per request). Only from
    SCHED_OTHER, which we may always leave for SCHED_BATCH: libzmq aborts the process
    if the change fails.
    """
    try:
        ordinary = os.sched_getscheduler(0) == os.SCHED_OTHER
    except (AttributeError, OSError):  # not Linux, or not allowed to ask
        return
    if ordinary:
        context.set(zmq.THREAD_SCHED_POLICY, os.SCHED_BATCH)


def _log_multipart(link, frames):
    logger.warning("bus %s: dropped a message of %d frames (expected 1)", link.url, frames)


class Link:
    """One bus endpoint: one DEALER socket connected to one gateway URL."""

    __slots__ = ("url", "socket", "handle", "backlog", "queued", "scheduled", "watcher",
                 "ring", "ring_writer", "peer_ring")

    def __init__(self, url, socket):
        self.url = url
        self.socket = socket
        self.handle = socket.underlying  # libzmq's socket, for wire.bus's batches
        self.watcher = None  # logs refused handshakes, connects again
        # Messages not yet handed to ZeroMQ, in order: those sent during this loop
        # iteration, and those ZeroMQ refused (high-water mark).
        self.backlog = collections.deque()
        self.queued = 0         # bytes in the backlog
        self.scheduled = False  # a _service call is already on its way
        # Shared memory (docs/protocol.md §1.1): our ring for this gateway (None: none,
        # or no more); once the gateway accepted it, what writes a large message into it
        # (_through_ring for this link: wire.bus's send_batch calls it); the gateway's
        # ring we mapped (None: none yet).
        self.ring = None
        self.ring_writer = None
        self.peer_ring = None

    def __repr__(self):
        return f"<Link {self.url}>"


class ZmqTransport:
    """ZeroMQ DEALERs driven straight from the event loop.

    Not zmq.asyncio: it costs a future and several enum operations per message, about half
    the worker's CPU. Instead the loop watches each socket's FD and drains every message
    ZeroMQ has (in bounded batches). Sends are queued in the link's backlog and handed to
    ZeroMQ together once per loop iteration (``_service``), back to back, so that its I/O
    thread can take the iteration's replies in one go (see ``_batch_io_thread``) and the
    socket's EVENTS are checked once per batch, not once per message. A sender waits only
    while more than ``MAX_QUEUED`` bytes wait, i.e. when ZeroMQ pushes back. ZeroMQ's FD is edge-triggered and is consumed by any socket call, so after
    each service the socket's EVENTS are checked again (``_check``).
    """

    shared_queue = False      # the gateway routes new connections by announced capacity
    BATCH = 64               # messages handled per loop iteration and link (fairness)
    MAX_QUEUED = 1024 * 1024  # bytes queued on a link before senders wait
    MAX_NOWAIT_BACKLOG = 10000  # heartbeats to a gateway that never comes: bounded
    SNDHWM = 1000            # ZeroMQ's default; tests lower it to provoke backpressure

    def __init__(self, url_endpoints, worker_id, curve=None,
                 ring_capacity=shared_ring.DEFAULT_CAPACITY):
        self._url_endpoints = url_endpoints
        self._worker_id = worker_id
        self._curve = curve
        self._ring_capacity = ring_capacity  # 0: no ring of our own (we still map theirs)
        self._limiter = LogLimiter()  # a gateway's bad frames: a few lines per 10 s
        self._context = None
        self._loop = None
        self._on_message = None
        self.links = []

    @property
    def takes_parts(self):
        """Messages may come in pieces (wire.encode_event's parts): the native batch
        sends them, a large one copied piece by piece into the ring, else joined."""
        return wire.bus is not None

    def start(self, on_message):
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._context = zmq.Context()
        _batch_io_thread(self._context)
        for url, endpoint in self._url_endpoints:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.ROUTING_ID, self._worker_id.encode())
            sock.setsockopt(zmq.LINGER, 0)  # close() sets the real linger
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)  # find a restarted gateway soon
            sock.setsockopt(zmq.SNDHWM, self.SNDHWM)
            if endpoint.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            link = Link(url, sock)
            if self._curve is not None:
                self._curve.apply(sock)
            link.watcher = HandshakeWatcher(self._loop, sock, url, endpoint,
                                            curve=self._curve is not None)
            sock.connect(endpoint)
            self.links.append(link)
            self._offer_ring(link)  # queued: it leaves first, once connected
            self._loop.add_reader(sock.getsockopt(zmq.FD), self._on_readable, link)
            self._check(link)
            logger.info("bus: connecting to %s (%s)%s", url, endpoint,
                        " with CURVE" if self._curve is not None else "")

    def _on_readable(self, link):
        if not link.scheduled:
            self._service(link)

    def reply_link(self, link, gateway_id):
        return link  # a gateway's URL is its link

    def set_free_capacity(self, requests, websockets=0):
        pass  # the gateway knows our capacity from ready/heartbeat

    def _service(self, link):
        """Receive what is waiting and flush the backlog: the FD said something changed,
        or messages were queued during the last loop iteration."""
        link.scheduled = False
        sock = link.socket
        if sock.closed:
            return
        try:
            if wire.bus is not None:
                self._receive_batch(link)
            else:
                self._receive(link, sock)
        except zmq.Again:
            pass
        except (zmq.ZMQError, OSError) as exc:
            logger.error("bus %s: receive failed: %s", link.url, exc)
        if link.backlog:
            self._flush(link)
        self._check(link)

    def _receive(self, link, sock):
        recv, more = sock.recv, sock.get
        for _ in range(self.BATCH):
            data = recv(_NOBLOCK)
            if more(_RCVMORE):
                self._drop_multipart(link, sock)
            # One bytes compare for a message (msgpack maps start below 0xC1); then the
            # first byte itself (measured: 100 instructions per message less than it alone).
            elif data >= _MARK_BYTES and data[0] == _MARK:
                self._on_transport_frame(link, data)
            else:
                self._deliver(link, data)

    def _receive_batch(self, link):
        """The same in one native call (wire.bus): no pyzmq call per message, and
        _deliver inline (a Python frame per message less)."""
        on_message = self._on_message
        for data in wire.bus.recv_batch(link.handle, self.BATCH):
            if type(data) is tuple:  # not a message: (a transport frame,) or (frame count,)
                self._on_marked(link, data[0])
                continue
            try:
                on_message(link, data)
            except Exception:
                logger.exception("bus %s: error while handling a message", link.url)

    def _on_marked(self, link, item):
        """What recv_batch marked as not a message."""
        if type(item) is int:  # a multipart message, dropped: its frame count
            _log_multipart(link, item)
        else:
            self._on_transport_frame(link, item)

    def _drop_multipart(self, link, sock):
        frames = 1
        while sock.get(_RCVMORE):
            sock.recv(_NOBLOCK)
            frames += 1
        _log_multipart(link, frames)

    def _deliver(self, link, data):
        try:
            self._on_message(link, data)
        except Exception:
            logger.exception("bus %s: error while handling a message", link.url)

    def _check(self, link):
        """Schedule _service if the socket has input, or room for a waiting backlog."""
        if link.scheduled or link.socket.closed:
            return
        bus = wire.bus  # (pyzmq's getsockopt costs microseconds of Python calls)
        events = bus.events(link.handle) if bus is not None else link.socket.get(_EVENTS)
        if events & _POLLIN or (events & _POLLOUT and link.backlog):
            self._schedule(link)

    def _schedule(self, link):
        link.scheduled = True
        self._loop.call_soon(self._service, link)

    def _flush(self, link):
        """Hand the backlog to ZeroMQ, a large message through the ring when it can: at
        this point, and not when it was queued, so that a message never takes ring space
        while it waits behind others, and the check costs a small message nothing (the
        native batch tests the size anyway)."""
        if wire.bus is not None:  # one native call for the whole backlog
            sent, waiters = wire.bus.send_batch(link.handle, link.backlog, link.ring_writer)
            link.queued -= sent
            for waiter in waiters:  # (sent even if its sender was cancelled)
                if not waiter.done():
                    waiter.set_result(None)
            return
        sock, backlog = link.socket, link.backlog
        send = sock.send
        while backlog:
            data, waiter = backlog[0]
            size = len(data)
            try:
                if size >= _RING_MIN and link.ring_writer is not None and self._writable(sock):
                    send(self._through_ring(link, data), _NOBLOCK)
                else:
                    send(data, _NOBLOCK)
            except zmq.Again:
                return
            backlog.popleft()
            link.queued -= size
            # Sent even if its sender was cancelled meanwhile: its sequence number is taken.
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _queue(self, link, data, waiter=None):
        link.backlog.append((data, waiter))
        link.queued += len(data)
        if not link.scheduled:
            self._schedule(link)

    def try_send(self, link, data):
        """send() when it would not wait (True), with no coroutine; False: nothing was
        queued, the caller awaits send() instead."""
        if link.queued >= self.MAX_QUEUED:
            return False
        # _queue() inline (once per event an app sends): out with the others at the
        # next service.
        link.backlog.append((data, None))
        link.queued += len(data)
        if not link.scheduled:
            self._schedule(link)
        return True

    async def send(self, link, data):
        if self.try_send(link, data):
            return
        waiter = self._loop.create_future()
        self._queue(link, data, waiter)
        await waiter

    def send_nowait(self, link, data):
        if len(link.backlog) < self.MAX_NOWAIT_BACKLOG:
            self._queue(link, data)
        else:
            logger.debug("bus %s: backlog full, control message dropped", link.url)

    # Shared-memory rings (docs/protocol.md §1.1). A large message is written into the
    # ring as it is handed to ZeroMQ, and its reference goes in its place: the order of
    # the socket stays the order of delivery, whichever way each message travels.

    def _offer_ring(self, link):
        if not self._ring_capacity or not shared_ring.AVAILABLE:
            return
        try:
            link.ring = shared_ring.Ring(self._ring_capacity)
        except OSError as exc:  # no memfd (an old kernel, a sandbox): the socket alone
            logger.warning("bus %s: no shared-memory ring: %s", link.url, exc)
            return
        self._queue(link, link.ring.offer)

    @staticmethod
    def _writable(sock):
        """ZeroMQ takes a message now: then a reference written will be sent, not left
        waiting with a copy in the ring that the next try would write again."""
        return sock.get(_EVENTS) & _POLLOUT

    def _through_ring(self, link, data):
        """The reference of `data` written into the link's ring; `data` itself when
        the ring has no room for it now (the gateway has not read enough yet), or is
        no more (given up earlier in the same batch)."""
        if link.ring is None:
            return data
        try:
            frame = link.ring.write(data)
        except shared_ring.RingError as exc:
            logger.warning("bus %s: shared-memory ring given up: %s", link.url, exc)
            self._drop_ring(link)
            return data
        return data if frame is None else frame

    def _drop_ring(self, link):
        link.ring_writer = None
        link.ring.close()  # (the gateway's mapping, if any, keeps the memory it reads)
        link.ring = None

    def _on_transport_frame(self, link, frame):
        """A frame of docs/protocol.md §1.1 from the gateway: an offer or an answer is
        ours; the message a reference names goes on to the worker in place, decoded
        straight from the gateway's ring, and its bytes are then given back; a frame
        that is not valid is dropped with a log line."""
        kind = frame[1:2]
        try:
            if kind == b"R":
                peer, message = self._on_reference(link, frame)
                if message is not None:
                    try:
                        self._deliver(link, message)
                    finally:
                        message.release()
                        peer.give_back()
            elif kind == b"A" or kind == b"X":
                self._on_answer(link, kind, frame)
            else:
                raise shared_ring.RingError(f"unknown transport frame type {kind!r}")
        except shared_ring.RingError as exc:
            self._limiter.warn(logger, (link.url, "frame"),
                               "bus %s: transport frame dropped: %s", link.url, exc)
        except Exception:
            logger.exception("bus %s: error while handling a transport frame", link.url)

    def _on_reference(self, link, frame):
        pid, fd, token, capacity, position, length = shared_ring.parse_reference(frame)
        peer = link.peer_ring
        if peer is None or peer.token != token:  # an offer, or a new gateway's first message
            peer = self._map_peer_ring(link, pid, fd, token, capacity, length)
            if peer is None:
                return None, None
        if length == 0:
            return peer, None
        return peer, peer.lend(position, length)

    def _map_peer_ring(self, link, pid, fd, token, capacity, length):
        """The gateway's ring mapped and accepted (A); None when it cannot be (X)."""
        try:
            peer = shared_ring.PeerRing(pid, fd, token, capacity)
        except (shared_ring.RingError, OSError) as exc:
            self._limiter.warn(logger, (link.url, "map"),
                               "bus %s: cannot map the gateway's shared-memory ring%s: %s",
                               link.url, " (a message lost)" if length else "", exc)
            self._queue(link, shared_ring.refuse(token))
            return None
        if link.peer_ring is not None:
            link.peer_ring.close()  # at most one per gateway: the newest
        else:
            logger.info("bus %s: mapped the gateway's shared-memory ring", link.url)
        link.peer_ring = peer
        self._queue(link, shared_ring.accept(token))
        return peer

    def _on_answer(self, link, kind, frame):
        token = shared_ring.parse_answer(frame)
        if link.ring is None or token != link.ring.token:
            return  # about a ring we gave up (or never had): nothing to change
        if kind == b"X":
            logger.warning("bus %s: the gateway cannot map our shared-memory ring: every "
                           "message goes over the socket", link.url)
            self._drop_ring(link)
        elif link.ring_writer is None:
            logger.info("bus %s: the gateway maps our shared-memory ring (%d KiB)",
                        link.url, link.ring.capacity // 1024)
            link.ring_writer = functools.partial(self._through_ring, link)

    # Broadcast groups (groups.py): every gateway relays a group message to the other
    # workers it knows, who drop the groups they have no member in. Nothing to subscribe.

    def publish_group(self, group, data):
        # Half the backlog at most: a flood of group messages leaves room for heartbeats.
        for link in self.links:
            if len(link.backlog) < self.MAX_NOWAIT_BACKLOG // 2:
                self._queue(link, data)
            else:
                logger.debug("bus %s: backlog full, group %s message dropped", link.url, group)

    def subscribe_group(self, group):
        pass

    async def group_subscribed(self, group, timeout):
        pass  # gateways relay every group message to every worker

    def unsubscribe_group(self, group):
        pass

    async def close(self, linger=1.0):
        """Stop receiving; give queued messages (our bye) up to `linger` seconds to leave."""
        deadline = self._loop.time() + linger
        while any(link.backlog for link in self.links) and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        for link in self.links:
            if link.watcher is not None:
                link.watcher.close()
            self._loop.remove_reader(link.socket.getsockopt(zmq.FD))
            remaining = max(0.0, deadline - self._loop.time())
            link.socket.close(linger=int(remaining * 1000))
            if link.ring is not None:
                self._drop_ring(link)
            if link.peer_ring is not None:
                link.peer_ring.close()
                link.peer_ring = None
        if self._context is not None:
            # term() blocks until the sockets' linger ran out or their queues emptied.
            await self._loop.run_in_executor(None, self._context.term)
            self._context = None
