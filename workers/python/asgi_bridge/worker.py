"""The worker: gateways, connections and capacity (docs/protocol.md §§2–7).

Messages from the bus arrive in ``on_message`` and are demultiplexed by
``(gateway id, connection id)``. A first event creates a connection and a task that runs
one app instance: at most ``concurrency`` HTTP requests and, counted apart,
``websocket_capacity`` WebSockets at a time (an idle WebSocket costs a coroutine, not a
request slot; more are queued locally: the gateway routes by announced capacity, so they
are rare). The worker announces itself (``ready``)
at start and to every gateway id it hears for the first time, sends heartbeats, and
forgets a gateway that said bye or went silent, ending its connections.

On a shared queue (Redis, docs/redis.md) there is no ``ready``: the worker keeps the
transport told of its free capacity, claims each new connection at once, and sends
heartbeats to the gateways whose connections it serves (and for 3 intervals after).
"""

import asyncio
import collections
import contextvars
import functools
import logging
import os

from . import broadcast, codec, wire
from .connection import EAGER_STEP, HttpConnection, WebSocketConnection
from .errors import ProtocolError
from .groups import SCOPE_KEY, GroupHandle, GroupHub, WebSocketMember
from .slots import Slots

logger = logging.getLogger("asgi_bridge.worker")

SILENT_INTERVALS = 3      # §6: a peer silent for 3 heartbeat intervals is dead
RECENT_CONNECTIONS = 4096  # finished connections whose late events we ignore silently


def new_worker_id():
    return f"wk-{os.urandom(4).hex()}"


class Gateway:
    """What we know of one gateway: where to reply, when it spoke, what it has here."""

    __slots__ = ("id", "link", "send", "push", "parts", "last_seen", "conns", "last_conn_end")

    def __init__(self, gateway_id, link, now, send, try_send=None, parts=False):
        self.id = gateway_id
        self.link = link
        self.send = functools.partial(send, link)  # its connections' send_bytes
        # and their push_bytes: the transport's send without a coroutine, when it has one
        self.push = None if try_send is None else functools.partial(try_send, link)
        self.parts = parts  # both take a message in pieces (transport.takes_parts)
        self.last_seen = now
        self.conns = set()
        self.last_conn_end = float("-inf")  # when one of its connections last ended


class Worker:
    def __init__(self, app, transport, worker_id, concurrency=100,
                 heartbeat_interval=1.0, state=None, websocket_capacity=10000,
                 max_requests=0, on_max_requests=None, health_file=None):
        self.app = app
        self.transport = transport
        # Only a shared queue's transport wants the free capacity (set_free_capacity):
        # on ZeroMQ it is a no-op, not worth two calls per connection.
        self._tells_capacity = transport.shared_queue
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.websocket_capacity = websocket_capacity
        self.heartbeat_interval = heartbeat_interval
        self.state = state  # lifespan state, or None when lifespan did not run
        self.conns = {}     # (gateway id, conn id) -> Connection
        self.gateways = {}  # gateway id -> Gateway
        self.draining = False
        # --max-requests: after this many connections (HTTP requests and WebSockets),
        # on_max_requests() is called once (the runtime then drains and exits: a recycle).
        self._max_requests = max_requests
        self._on_max_requests = on_max_requests
        self._opened = 0
        self._health_file = health_file  # touched every heartbeat: the loop is alive
        self._departed = set()  # gateways that said bye: ignore their stragglers
        # Connections we finished, so that a gateway's late events for them (a disconnect,
        # a credit) are ignored instead of answered with "unknown connection".
        self._recent = collections.OrderedDict()
        self._slots = Slots(concurrency)             # HTTP requests
        self._ws_slots = Slots(websocket_capacity)   # WebSockets
        self._websockets = 0  # of self.conns
        self._tasks = {}  # (gateway id, conn id) -> the task of its app instance
        # Connections whose start a later task step held back (connection.flush_later).
        self._later_starts = []
        self._ticker = None
        self._loop = asyncio.get_running_loop()
        # Each app instance starts from this context, not from whatever context the bus
        # callback that created it ran in: that can be an app's own (a send schedules the
        # transport's next service), and an app's context vars must not leak into another
        # connection (asgiref's thread-sensitive guard then refuses: "would deadlock").
        self._app_context = contextvars.copy_context()
        # Broadcast groups (groups.py): of the apps' WebSockets and of the Channels layer.
        self.groups = GroupHub(transport, worker_id)
        self._handlers = {"credit": self._on_credit,
                          "error": self._on_error, "bye": self._on_bye,
                          "heartbeat": lambda gateway, msg: None,
                          "publish": self._relay_publish}

    # --- lifecycle ------------------------------------------------------------------

    def start(self):
        broadcast.attach(self)
        self.transport.start(self.on_message)
        self.groups.install()
        self._update_capacity()
        for link in self.transport.links:
            self._announce(link)
        self._ticker = self._loop.create_task(self._tick())
        logger.info("worker %s serving up to %d HTTP requests and %d WebSockets at once",
                    self.worker_id, self.concurrency, self.websocket_capacity)

    async def drain(self, graceful_timeout):
        """Tell every gateway to send nothing new; wait for our connections to finish."""
        self.draining = True
        self._update_capacity()
        for link in self._peer_links():
            # Never blocks: a gateway that is down must not hold up our shutdown.
            self._send_nowait(link, {"k": "drain", "w": self.worker_id})
        logger.info("draining: waiting for %d connection(s), at most %ss",
                    len(self.conns), graceful_timeout)
        deadline = self._loop.time() + graceful_timeout
        # Loop: a first event already on its way when we drained is still served.
        while self._tasks:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(set(self._tasks.values()), timeout=remaining)
        if self._tasks:
            logger.warning("graceful timeout: cancelling %d connection(s)", len(self._tasks))
            for task in self._tasks.values():
                task.cancel()
            await asyncio.wait(set(self._tasks.values()), timeout=5)

    async def close(self):
        """Say bye to every gateway and close the bus."""
        if self._ticker is not None:
            self._ticker.cancel()
        self.groups.uninstall()
        for link in self._peer_links():
            self._send_nowait(link, {"k": "bye", "w": self.worker_id})
        await self.transport.close()  # gives the byes a moment to leave

    # --- outgoing ---------------------------------------------------------------------

    def _send_nowait(self, link, envelope):
        self.transport.send_nowait(link, codec.encode(envelope))

    def _announce(self, link):
        """`ready` to a new gateway or at start; followed by `drain` once draining.

        A draining worker still says ready first: a gateway ignores `drain` from a worker
        it does not know, and would then register it from its next heartbeat as serving.
        Nothing on a shared queue: workers pull new connections there, nobody routes.
        """
        if self.transport.shared_queue:
            return
        self._send_nowait(link, self._status("ready"))
        if self.draining:
            self._send_nowait(link, {"k": "drain", "w": self.worker_id})

    async def publish(self, channel, event):
        """docs/broadcast.md: one `publish` to every gateway (ZeroMQ), or one PUBLISH on
        the channel's Redis name, whatever the number of subscribers."""
        if self.transport.shared_queue:
            text = "text" in event
            data = event["text"].encode("utf-8", "surrogatepass") if text else event["bytes"]
            self.transport.broadcast(channel, text, data)
            return
        data = codec.encode({"k": "publish", "w": self.worker_id, "channel": channel,
                             "event": event})
        for link in self.transport.links:
            await self.transport.send(link, data)

    def _relay_publish(self, gateway, msg):
        """ZeroMQ: a gateway's own publish (POST /publish) goes on to the other gateways
        we serve; they fan it out and never relay it further (docs/broadcast.md)."""
        if self.transport.shared_queue:
            return
        data = codec.encode({"k": "publish", "g": gateway.id, "w": self.worker_id,
                             "channel": msg["channel"], "event": msg["event"]})
        for link in self.transport.links:
            if link is not gateway.link:
                self.transport.send_nowait(link, data)

    def _status(self, kind):
        """`ready` or `heartbeat`: WebSockets are counted apart (``ws_capacity``)."""
        return {"k": kind, "w": self.worker_id, "capacity": self.concurrency,
                "active": len(self.conns), "ws_capacity": self.websocket_capacity}

    def _reply_error(self, gateway_id, link, conn_id, message):
        self._send_nowait(link, {"k": "error", "g": gateway_id, "w": self.worker_id,
                                 "c": conn_id, "message": message})

    async def _tick(self):
        """Heartbeats out, and the liveness check of the gateways, every interval."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            heartbeat = self._status("heartbeat")
            self._touch_health_file()
            for link in self._peer_links():
                self._send_nowait(link, heartbeat)
            limit = self._loop.time() - SILENT_INTERVALS * self.heartbeat_interval
            for gateway in [g for g in self.gateways.values() if g.last_seen < limit]:
                # On a shared queue a gateway we no longer serve falls silent by design.
                quiet = self.transport.shared_queue and not gateway.conns
                self._forget(gateway, "silent for %d heartbeat intervals" % SILENT_INTERVALS,
                             logging.INFO if quiet else logging.WARNING)

    def _touch_health_file(self):
        if self._health_file is None:
            return
        try:
            with open(self._health_file, "a"):
                os.utime(self._health_file)
        except OSError as exc:
            logger.warning("--health-file %s: %s", self._health_file, exc)
            self._health_file = None  # said once; a container check then reports it

    def _peer_links(self):
        """Where heartbeats, drain and bye go: every configured link (ZeroMQ), and the
        link of each gateway whose connections we serve or served within 3 intervals
        (on a shared queue we only know the gateways whose connections we took)."""
        links = list(self.transport.links)
        recent = self._loop.time() - SILENT_INTERVALS * self.heartbeat_interval
        for gateway in self.gateways.values():
            if (gateway.conns or gateway.last_conn_end > recent) and gateway.link not in links:
                links.append(gateway.link)
        return links

    def _update_capacity(self):
        """Tell the transport how many more HTTP requests and WebSockets we may take
        (shared queue): every connection we own counts, running or waiting for a slot."""
        if not self._tells_capacity:
            return
        if self.draining:
            self.transport.set_free_capacity(0, 0)
            return
        requests = len(self.conns) - self._websockets
        self.transport.set_free_capacity(max(0, self.concurrency - requests),
                                         max(0, self.websocket_capacity - self._websockets))

    # --- incoming ---------------------------------------------------------------------

    def on_message(self, link, data):
        try:
            msg = wire.decode(data)
        except ProtocolError as exc:
            self._on_malformed(link, exc)
            return
        kind = msg["k"]
        if kind == "event":  # the common case first, inline: an event from a gateway we know
            gateway = self.gateways.get(msg.get("g"))  # (a departed one is not in there)
            if gateway is None:
                gateway = self._gateway_of(link, msg, kind)
                if gateway is None:
                    return
            gateway.last_seen = self._loop.time()
            conn = self.conns.get((gateway.id, msg["c"]))
            if conn is None or msg["s"] != conn.next_in:
                self._on_other_event(gateway, msg, conn)  # a first event, or a problem
                return
            # The next event of a connection we serve (a WebSocket message, a request
            # body's piece): fed here, a Python frame less per event.
            conn.next_in += 1
            try:
                conn.feed(msg["event"])
            except ProtocolError as exc:
                self._event_problem(gateway, msg["c"], conn, str(exc))
            return
        if kind == "group":  # another worker's, relayed by a gateway or published on Redis
            self.groups.on_message(msg)
            return
        handler = self._handlers.get(kind)
        if handler is None:
            logger.debug("bus %s: ignoring a message of kind %r", link.url, kind)
            return
        gateway = self._gateway_of(link, msg, kind)
        if gateway is not None:
            gateway.last_seen = self._loop.time()
            handler(gateway, msg)

    def _gateway_of(self, link, msg, kind):
        """The gateway that sent `msg`, met now if it is new; None: the message is dropped
        (no gateway id, or a gateway that said bye)."""
        gateway_id = msg.get("g")
        if gateway_id is None:
            logger.warning("bus %s: dropped a %s message without a gateway id", link.url, kind)
            return None
        if gateway_id in self._departed:
            return None
        gateway = self.gateways.get(gateway_id)
        if gateway is None:
            gateway = self._meet(gateway_id, link)
        return gateway

    def _meet(self, gateway_id, link):
        link = self.transport.reply_link(link, gateway_id)
        logger.info("gateway %s on %s", gateway_id, link.url)
        gateway = self.gateways[gateway_id] = Gateway(
            gateway_id, link, self._loop.time(), self.transport.send,
            getattr(self.transport, "try_send", None),
            getattr(self.transport, "takes_parts", False))
        self._announce(link)
        return gateway

    def _on_malformed(self, link, exc):
        where = f" conn {exc.gateway}/{exc.conn}" if exc.conn is not None else ""
        logger.warning("bus %s:%s malformed message dropped: %s", link.url, where, exc)
        # A bad event of a connection fails that connection (the gateway answers the
        # client); we never answer other kinds, so two peers cannot ping-pong errors.
        if exc.kind != "event" or exc.gateway is None or exc.conn is None:
            return
        conn = self.conns.get((exc.gateway, exc.conn))
        if conn is not None:
            conn.gateway_lost()
        self._reply_error(exc.gateway, self.transport.reply_link(link, exc.gateway), exc.conn,
                          f"malformed event: {exc}")

    def _on_other_event(self, gateway, msg, conn):
        """An event that is not the next one of connection `conn` (on_message() feeds
        those): a first event, or one of a connection we do not serve (`conn` None), or
        out of order."""
        if conn is None:
            if "scope" in msg and msg["s"] == 0:
                self._open(gateway, msg)
            elif (gateway.id, msg["c"]) not in self._recent:
                self._reply_error(gateway.id, gateway.link, msg["c"], "unknown connection")
            return
        self._event_problem(gateway, msg["c"], conn,
                            f"event s={msg['s']} out of order (expected {conn.next_in})")

    def _event_problem(self, gateway, conn_id, conn, problem):
        """An event the connection cannot take: it ends, and the gateway hears why."""
        logger.warning("conn %s/%s: %s", gateway.id, conn_id, problem)
        conn.gateway_lost()
        self._reply_error(gateway.id, gateway.link, conn_id, problem)

    def _open(self, gateway, msg):
        scope, event, conn_id = msg["scope"], msg["event"], msg["c"]
        first = "http.request" if scope["type"] == "http" else "websocket.connect"
        if event["type"] != first:
            self._reply_error(gateway.id, gateway.link, conn_id,
                              f"first event of a {scope['type']} connection must be {first}")
            return
        if self._tells_capacity:  # a shared queue
            # The claim: the gateway learns the owner at once and will not re-dispatch.
            self._send_nowait(gateway.link, {"k": "credit", "g": gateway.id,
                                             "w": self.worker_id, "c": conn_id, "events": 0})
        if self.state is not None:
            scope["state"] = dict(self.state)  # ASGI: a shallow copy per connection
        websocket = scope["type"] == "websocket"
        cls = WebSocketConnection if websocket else HttpConnection
        features = msg.get("features", 0)  # §2.5
        conn = cls(scope, gateway.id, conn_id, self.worker_id, gateway.send,
                   msg.get("window"), event, gateway.push, gateway.parts, features)
        key = (gateway.id, conn_id)
        self.conns[key] = conn
        gateway.conns.add(key)
        handle = None
        if websocket:
            handle = GroupHandle(self.groups, WebSocketMember(conn, self._loop))
            scope[SCOPE_KEY] = handle
            scope["extensions"][SCOPE_KEY] = {}
        self._websockets += websocket
        if self._tells_capacity:
            self._update_capacity()
        # A start may carry the first body: held back while the app's task step runs.
        hold = not websocket and features & codec.FEATURE_START_BODY
        if hold:
            conn.hold_start = EAGER_STEP
        slots = self._ws_slots if websocket else self._slots
        conn.on_end = functools.partial(self._end, gateway, key, websocket, handle)
        conn.skip_if_gone = True
        if slots.free > 0 and not slots.waiters:  # slots.take_nowait() inline
            slots.free -= 1
            # The task runs the app's coroutine itself: no coroutine of ours around it.
            conn.slots = slots
            coro = conn.run(self.app)
        else:
            coro = self._serve_later(conn, slots)
        # Started eagerly (eager.py): an app that answers at once has done so on return.
        task = wire.start_task(self._loop, coro, self._app_context.copy())
        if hold:  # the first step is over: what it held goes now, later ones see to it
            conn.hold_start = self._later_starts
            if conn.held_start is not None:
                conn.flush_held()
        if not task.done():  # (done: its on_end already ran)
            self._tasks[key] = task
        self._opened += 1  # (inline: a call per connection less)
        if self._max_requests and self._opened == self._max_requests:
            logger.info("served %d connections (--max-requests): recycling", self._opened)
            if self._on_max_requests is not None:
                self._on_max_requests()

    async def _serve_later(self, conn, slots):
        """A connection beyond its kind's capacity: its app waits for a free slot."""
        try:
            await slots.take()
        except BaseException:  # cancelled while waiting (graceful timeout)
            conn.on_end()
            raise
        conn.slots = slots
        await conn.run(self.app)

    def _end(self, gateway, key, websocket, handle):
        """A connection's instance ended (conn.on_end): give its slot back, forget it."""
        conn = self.conns.pop(key)
        self._tasks.pop(key, None)
        slots = conn.slots
        if slots is not None:
            if slots.waiters:
                slots.give()
            else:
                slots.free += 1  # give() inline: nobody waits
        if handle is not None:
            handle.leave_all()  # however the connection ended
        self._websockets -= websocket
        gateway.conns.discard(key)
        gateway.last_conn_end = self._loop.time()
        if self._tells_capacity:
            self._update_capacity()
        # Remember it only if its gateway is still with us; after a silence the
        # gateway may come back and must then hear "unknown connection" for it.
        if self.gateways.get(gateway.id) is gateway:
            self._recent[key] = None
            if len(self._recent) > RECENT_CONNECTIONS:
                self._recent.popitem(last=False)

    def _on_credit(self, gateway, msg):
        conn = self.conns.get((gateway.id, msg.get("c")))
        if conn is not None and "bytes" in msg:
            conn.add_credit(msg["bytes"])

    def _on_error(self, gateway, msg):
        # The gateway does not know the connection (any more): end the instance.
        conn = self.conns.get((gateway.id, msg.get("c")))
        if conn is not None:
            logger.debug("conn %s/%s: gateway error: %s", gateway.id, msg.get("c"),
                         msg.get("message"))
            conn.gateway_lost()

    def _on_bye(self, gateway, msg):
        self._forget(gateway, "said bye", logging.INFO)
        self._departed.add(gateway.id)  # a bye is final: its id will not come back

    def _forget(self, gateway, why, level=logging.WARNING):
        logger.log(level, "gateway %s %s: ending its %d connection(s)",
                   gateway.id, why, len(gateway.conns))
        del self.gateways[gateway.id]
        for key in list(gateway.conns):
            self.conns[key].gateway_lost()
