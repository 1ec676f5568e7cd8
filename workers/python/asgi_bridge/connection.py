"""One ASGI connection: the app instance's ``receive``/``send`` and its state machine.

A connection knows nothing about sockets or other connections: the worker feeds it the
gateway's events in order (``feed``, ``add_credit``, ``gateway_lost``) and gives it a
coroutine function ``send_bytes(data)`` that delivers an encoded message to the owning
gateway. That keeps it testable without a bus (tests/test_connection.py).
"""

import asyncio
import collections
import logging

from . import codec, wire
from .errors import ClientDisconnected, InvalidEvent, ProtocolError, UnexpectedMessage

logger = logging.getLogger("asgi_bridge.connection")

CREDIT_BATCH = 8             # §5: acknowledge consumed events 8 at a time
DEFAULT_WINDOW = 1024 * 1024  # §5: bytes in flight when the first event has no `window`
# §5: a larger response body goes as several body events. The gateway refuses a bus
# message over max(--max-message-size, --max-body-size) + 64 KiB, so a piece of 60 KiB
# (and its envelope) fits whatever the gateway's options. One that announces
# FEATURE_LARGE_PIECES takes a quarter of the connection's window (body_piece).
BODY_PIECE = 60 * 1024
_SPLIT_TYPES = frozenset(("http.response.body", "websocket.http.response.body"))
# docs/broadcast.md: the channels one WebSocket may be subscribed to at once (the
# gateway closes the socket 1011 past it; we tell the app first).
MAX_SUBSCRIPTIONS = 64
_BROADCAST_TYPES = frozenset(("asgi-bridge.subscribe", "asgi-bridge.unsubscribe"))
_NOT_UTF8 = "event: a str field is not valid UTF-8"


def body_piece(features, window):
    """The largest body one event may carry on a connection (§5): a quarter of the
    window when the gateway takes large pieces (the step in which it gives credit back),
    never less than the 60 KiB every gateway takes."""
    if features & codec.FEATURE_LARGE_PIECES and window // 4 > BODY_PIECE:
        return window // 4
    return BODY_PIECE


class Connection:
    """State shared by HTTP and WebSocket: queue, credits, window, sequence numbers."""

    #: event types the gateway may send after the first one, and its disconnect
    incoming_types = frozenset()
    disconnect_type = None
    #: set by the worker: called once when run() ends, and the slot it then gives back
    on_end = None
    slots = None
    #: set by the worker: a client that left before the app started gets no app
    #: instance (it waited for a slot, or its disconnect came in the same batch)
    skip_if_gone = False

    # Initial state as class attributes (an instance writes its own on change): fewer
    # stores per connection, which matters per HTTP request.
    # Bare futures, not asyncio.Events: created only when receive() or send() actually
    # has to wait (both may, from two tasks), resolved by _wake() when the queue, the
    # window or the state changed; the waiters then check again what they wait for.
    _waiters = None
    _writable = True  # unacknowledged bytes <= window
    _unacked = 0
    _consumed = 0   # events taken by the app since the last credit
    _seq = 0        # next `s` of an event we send
    next_in = 1     # next `s` expected from the gateway (the first event was 0)
    disconnected = False  # the client (or its gateway) is gone
    failed = False        # we reported `error`: send nothing more
    _complete = False     # the app's part is done (response complete, socket closed)
    # HTTP with the gateway's FEATURE_START_BODY: a response start held back to go with
    # the first body (HttpConnection._advance), or, when the bus could not take it at
    # once, the future of its send, which the next send() waits for.
    held_start = None
    _piece = BODY_PIECE  # the largest body in one event (body_piece)

    def __init__(self, scope, gateway, conn_id, worker_id, send_bytes, window=None,
                 first_event=None, push_bytes=None, parts=False, features=0):
        self.scope = scope
        self.gateway = gateway
        self.conn_id = conn_id
        self.worker_id = worker_id
        self._send_bytes = send_bytes
        # Optional plain call: True when the bus took the message without waiting (the
        # common case), so that a send() costs no coroutine of the transport's.
        self._push_bytes = push_bytes
        # Both take a message in pieces: a large payload is then not copied into its
        # encoding (wire.encode_event's parts), the bus copies it once.
        self._parts = parts
        self._window = DEFAULT_WINDOW if window is None else window
        if features:
            self._piece = body_piece(features, self._window)
        self._queue = collections.deque()
        if first_event is not None:
            self._queue.append(first_event)

    # --- from the worker ----------------------------------------------------------

    def feed(self, event):
        """Queue an event of this connection from the gateway (already decoded) and
        wake a waiting receive(); its kind's disconnect goes to ``_on_disconnect``.
        One frame per event (a WebSocket message, a request body's piece)."""
        etype = event["type"]
        if etype not in self.incoming_types:
            raise ProtocolError(f"event.type: {etype} is not expected "
                                f"on a {self.scope['type']} connection")
        if self.disconnected:
            return  # nothing the app could do with it
        if etype == self.disconnect_type:
            self._on_disconnect(event)
            return
        self._queue.append(event)
        if self._waiters is not None:
            self._wake()

    def _on_disconnect(self, event):
        raise NotImplementedError

    def add_credit(self, nbytes):
        """The gateway wrote `nbytes` of our payload to the client (§5)."""
        self._unacked = max(0, self._unacked - nbytes)
        if self._unacked <= self._window and not self._writable:
            self._writable = True
            self._wake()

    def gateway_lost(self):
        """The gateway said bye, went silent, or reported the connection unknown."""
        raise NotImplementedError

    @property
    def over(self):
        """True once nothing more can reach the client from the app."""
        return self.disconnected or self.failed or self._complete

    # --- the app's receive --------------------------------------------------------

    # receive() pops the next queued event and counts it in ``_consumed`` (inline: a
    # call less per event), then awaits ``_acknowledge()`` when ``_consumed`` reached
    # CREDIT_BATCH: a coroutine only every 8 events, not per event (a coroutine per
    # receive() was a measurable share of an echo).

    async def _acknowledge(self):
        """Credit the gateway with CREDIT_BATCH consumed events (§5)."""
        if not self.over:
            self._consumed = 0
            await self._send_bytes(wire.encode_credit(self.gateway, self.worker_id,
                                                      self.conn_id, CREDIT_BATCH))

    def _wait(self):
        """A future that the next _wake() resolves: ``await self._wait()``. A plain
        call, not a coroutine. (WebSocketConnection.receive() has it inline: it waits
        once per message.)"""
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        return waiter

    def _wake(self):
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():  # (cancelled with its task)
                    waiter.set_result(None)

    # --- the app's send -----------------------------------------------------------

    async def send(self, message):
        event = wire.canonical_event(message)  # InvalidEvent: a wrong field
        # UnexpectedMessage / ClientDisconnected; true: HTTP with a start held back (not
        # an attribute read here: none per WebSocket message)
        if not self._advance(event):
            size = wire.payload_size(event)  # (a body's size is its length)
        else:  # (inline: once per response)
            held = self.held_start
            if held is event:
                return  # the start, held back (HttpConnection._advance)
            self.held_start = None
            size = wire.payload_size(event)
            if type(held) is not dict:  # its send, which the bus made wait
                await held
            elif size <= self._piece and event["type"] == "http.response.body":
                # One message for both (docs/protocol.md §4.2), counted against the
                # window and sent below as the body would have been.
                held["body"] = event["body"]
                held["more_body"] = event["more_body"]
                event = held
            else:
                data = self._emit_now(held, 0)
                if data is not None:
                    await self._send_bytes(data)
        if size > self._piece and event["type"] in _SPLIT_TYPES:
            await self._send_pieces(event)
        elif self._writable or not size:
            # The common case in this coroutine itself: no coroutine per step of it, and
            # _emit_now() inline (a Python frame less per event; `failed` cannot be set
            # here, _advance() raised then).
            if size:
                self._unacked += size
                if self._unacked > self._window:
                    self._writable = False
            try:
                data = wire.encode_event(self.gateway, self.worker_id, self.conn_id,
                                         self._seq, event, self._parts)
            except UnicodeEncodeError:
                raise InvalidEvent(_NOT_UTF8) from None
            self._seq += 1
            if self._push_bytes is None or not self._push_bytes(data):
                await self._send_bytes(data)
        else:
            await self._send_event(event, size)

    async def _send_pieces(self, event):
        """A body as consecutive body events of a piece each, each in turn within the
        window; all but the last with more_body, the last with the app's."""
        body = memoryview(event["body"])
        step = self._piece
        last = len(body) - step
        for start in range(0, len(body), step):
            if self.failed:
                return
            if start and self.disconnected:
                raise ClientDisconnected("client disconnected")
            piece = body[start:start + step]
            await self._send_event({
                "type": event["type"], "body": piece,
                "more_body": event["more_body"] if start >= last else True}, len(piece))

    async def _send_event(self, event, size):
        if not self._writable and size:
            await self._wait_window()
        data = self._emit_now(event, size)
        if data is not None:
            await self._send_bytes(data)

    def _emit_now(self, event, size):
        """Count the event's payload (`size` bytes) against the window, encode it with
        the next sequence number and hand it to the bus. Returns the message when the
        bus did not take it at once (the caller then awaits ``_send_bytes`` with it),
        else None (also when the connection failed: nothing more goes out)."""
        if size:
            self._unacked += size
            if self._unacked > self._window:
                self._writable = False
        if self.failed:
            return None
        try:
            data = wire.encode_event(self.gateway, self.worker_id, self.conn_id,
                                     self._seq, event, self._parts)
        except UnicodeEncodeError:
            raise InvalidEvent(_NOT_UTF8) from None
        self._seq += 1
        if self._push_bytes is not None and self._push_bytes(data):
            return None
        return data

    async def _wait_window(self):
        # §5: a payload waits while more than a window is unacknowledged. A disconnect
        # or a failure also opens the window, so that the wait ends with them.
        while not self._writable:
            await self._wait()
        if self.disconnected:
            raise ClientDisconnected("client disconnected")

    def _open_window(self):
        self._writable = True
        self._wake()

    def _set_disconnected(self):
        self.disconnected = True
        self._open_window()

    async def _emit_event(self, event):
        """An event of the worker's own (a close on the app's behalf): no window."""
        data = self._emit_now(event, 0)
        if data is not None:
            await self._send_bytes(data)

    def flush_held(self):
        """Send a held start alone (the app's task step ended without its body): to the
        bus at once, or, when the bus makes senders wait, from a task whose end the
        next send() awaits. A plain call: the worker's and the loop's callback."""
        held = self.held_start
        if type(held) is not dict:
            return  # nothing held, or its send already on its way
        self.held_start = None
        if self.disconnected:
            return  # nobody to answer (the app's next send raises)
        data = self._emit_now(held, 0)
        if data is not None:
            self.held_start = asyncio.ensure_future(self._send_bytes(data))

    async def fail(self, message):
        """Report the instance as failed (§2.2 `error`); the gateway answers the client."""
        if self.over:
            return  # the client is gone or already has its whole answer
        held = self.held_start
        if held is not None:  # the start first, as if it had not been held
            self.flush_held()
            held = self.held_start
            if held is not None:
                self.held_start = None
                await held
        self.failed = True
        self._open_window()
        await self._send_bytes(codec.encode({
            "k": "error", "g": self.gateway, "w": self.worker_id,
            "c": self.conn_id, "message": message}))

    # --- the app instance -----------------------------------------------------------

    async def run(self, app):
        """Run the app for this connection and tidy up after it (never raises), then
        call ``on_end()``: in this coroutine, which the worker's task runs directly."""
        try:
            if not (self.disconnected and self.skip_if_gone):
                await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            # Only the worker cancels (graceful timeout at shutdown).
            await self._quietly(self._on_shutdown())
        except ClientDisconnected as exc:
            if not self.over:
                logger.error("conn %s/%s: %s", self.gateway, self.conn_id, exc)
                await self._quietly(self.fail(f"ClientDisconnected: {exc}"))
            else:
                # ASGI 2.4: a server swallows this one and does not log it as an error.
                logger.debug("conn %s/%s: app stopped on %r", self.gateway, self.conn_id, exc)
        except Exception as exc:
            logger.exception("conn %s/%s: exception in ASGI application",
                             self.gateway, self.conn_id)
            if not self.over:
                await self._quietly(self.fail(f"{type(exc).__name__}: {exc}"))
        else:
            # (`over` inline: nothing to do then, and no call per request for it)
            if not (self.disconnected or self.failed or self._complete):
                await self._quietly(self._on_return())
        finally:
            if self.on_end is not None:
                self.on_end()

    async def _quietly(self, coro):
        # Tidying up must not turn into an unhandled task exception (e.g. bus closed).
        try:
            await coro
        except Exception:
            logger.exception("conn %s/%s: while finishing", self.gateway, self.conn_id)

    async def _on_return(self):
        raise NotImplementedError

    async def _on_shutdown(self):
        """The graceful timeout ended the app before it finished."""
        await self.fail("worker shut down before the application finished")


# --- HTTP ------------------------------------------------------------------------------

_START, _BODY, _TRAILERS, _DONE = "start", "body", "trailers", "done"

# HttpConnection.hold_start: when a held start is flushed, at the latest, if the app's
# next send() is not a body to join it to. The guarantee: by the end of the app's task
# step that sent it, so that a start is never held while the app waits (an SSE stream
# waiting for its first event has its start at the gateway at once). The cheapest means
# per case (measured, docs/performance.md, "The Python worker: a response's start and
# body in one bus message"):
# - EAGER_STEP: in the task's first step, which the worker runs eagerly (eager.py)
#   inside its own call: the worker flushes when that call returns, an attribute check
#   and no callback per request (the first step is where most apps answer);
# - a list (the worker's): in any other step the runtime does not get control back when
#   the step ends, so the connection goes in the list and one loop callback per loop
#   iteration (flush_later) flushes the list's starts. It runs before the loop waits for
#   anything, and before the app's own wake-up, which can only be scheduled after it.
#   One callback for all of an iteration's starts, not one each: asyncio's call_soon
#   and its handle are Python code (+9.7 k instructions per request measured, against
#   +1 k for the list; on uvloop +1.6 k against -1.2 k).
EAGER_STEP = "eager step"


def flush_later(conns):
    """The loop callback of a later step's held starts: sends those still held."""
    try:
        for conn in conns:
            if type(conn.held_start) is dict:  # (usually its body took it already)
                conn.flush_held()
    finally:
        conns.clear()  # empty again: the next held start schedules the next callback


class HttpConnection(Connection):
    incoming_types = frozenset(("http.request", "http.disconnect"))
    disconnect_type = "http.disconnect"
    # Initial values as class attributes: no __init__ of its own to call per request.
    _state = _START
    _trailers = False
    #: set by the worker when the gateway takes a body in a start (FEATURE_START_BODY):
    #: EAGER_STEP, or its list of a later step's starts, see there; None: every start
    #: goes out at once
    hold_start = None

    def _on_disconnect(self, event):
        self._set_disconnected()  # (wakes a waiting receive())

    def gateway_lost(self):
        self._set_disconnected()

    async def receive(self):
        while True:
            # ASGI: after the response is complete or the client left, only disconnect.
            if self.disconnected or self.failed or self._state == _DONE:
                return {"type": "http.disconnect"}
            if self._queue:
                event = self._queue.popleft()
                self._consumed += 1
                if self._consumed >= CREDIT_BATCH:
                    await self._acknowledge()
                return event
            await self._wait()

    def _advance(self, event):
        """The state machine's step for an app's event (raises what send() raises). True
        when send() has a held start to see to: this start, held, or the one this body
        joins."""
        etype = event["type"]
        if self.disconnected or self.failed:
            raise ClientDisconnected("client disconnected")
        if self._state == _DONE:
            raise ClientDisconnected(f"{etype} after the response was completed")
        if etype == "http.response.start":
            if self._state != _START:
                raise UnexpectedMessage("http.response.start sent twice")
            self._state = _BODY
            self._trailers = event["trailers"]
            hold = self.hold_start
            if hold is not None:  # send() sends it with the body, or flush_held() alone
                self.held_start = event
                if hold is not EAGER_STEP:  # a later step: the worker's list (flush_later)
                    if not hold:
                        asyncio.get_running_loop().call_soon(flush_later, hold)
                    hold.append(self)
                return True
        elif etype == "http.response.body":
            if self._state == _START:
                raise UnexpectedMessage("http.response.body before http.response.start")
            if self._state == _TRAILERS:
                raise UnexpectedMessage("http.response.body after the final body "
                                        "(expected http.response.trailers)")
            if not event["more_body"]:  # the final body
                if self._trailers:
                    self._state = _TRAILERS
                else:  # _set_done() inline: once per request, a Python frame less
                    self._state = _DONE
                    self._complete = True
                    if self._waiters is not None:
                        self._wake()  # a pending receive() now returns http.disconnect
            return self.held_start is not None  # send() joins them, or sends it first
        elif etype == "http.response.trailers":
            if self._state != _TRAILERS:
                raise UnexpectedMessage("http.response.trailers is only allowed after the "
                                        "final body of a response started with trailers=True")
            if not event["more_trailers"]:
                self._set_done()
        else:
            raise UnexpectedMessage(f"{etype} cannot be sent on an HTTP connection")

    def _set_done(self):
        self._state = _DONE
        self._complete = True
        if self._waiters is not None:
            self._wake()  # a pending receive() now returns http.disconnect

    async def _on_return(self):
        if not self.over:
            await self.fail("application returned without completing the response")


# --- WebSocket ---------------------------------------------------------------------------

_CONNECTING, _DENYING, _OPEN, _CLOSED = "connecting", "denying", "open", "closed"


class WebSocketConnection(Connection):
    incoming_types = frozenset(("websocket.receive", "websocket.disconnect"))
    disconnect_type = "websocket.disconnect"

    _state = _CONNECTING
    _accepted = False
    _last_disconnect = None  # returned again by every later receive()
    _channels = frozenset()  # asgi-bridge.broadcast subscriptions (a set once there are)

    def _on_disconnect(self, event):
        # Queued like a message: receive() returns the ones before it first.
        self._queue.append(event)
        self._set_disconnected()  # sends raise from now on (wakes a waiting receive())

    def gateway_lost(self):
        # §6: the apps of a dead gateway see an abnormal closure.
        self.feed({"type": "websocket.disconnect", "code": 1006, "reason": ""})

    async def receive(self):
        while True:
            if self._last_disconnect is not None:
                return dict(self._last_disconnect)
            if self._queue:
                event = self._queue.popleft()
                self._consumed += 1
                if self._consumed >= CREDIT_BATCH:
                    await self._acknowledge()
                if event["type"] == "websocket.disconnect":
                    self._last_disconnect = event
                return event
            if self.failed or (self._state == _CLOSED and not self._accepted):
                # Refused or failed before the handshake completed: the gateway sends
                # no disconnect for it, so make one rather than hang the app.
                self._last_disconnect = {"type": "websocket.disconnect", "code": 1006,
                                         "reason": ""}
                continue
            # _wait() inline: once per message on an echo, a Python frame less
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = [waiter]
            else:
                self._waiters.append(waiter)
            await waiter

    def _advance(self, event):
        etype = event["type"]
        if self.disconnected or self.failed:
            raise ClientDisconnected("client disconnected")
        state = self._state
        if state == _CLOSED:
            raise ClientDisconnected(f"{etype} after the WebSocket was closed")
        if etype == "websocket.send":
            if state != _OPEN:
                raise UnexpectedMessage("websocket.send before websocket.accept")
        elif etype == "websocket.accept":
            if state != _CONNECTING:
                raise UnexpectedMessage("websocket.accept sent twice" if state == _OPEN else
                                        "websocket.accept after websocket.http.response.start")
            self._state = _OPEN
            self._accepted = True
        elif etype == "websocket.close":
            if state == _DENYING:
                raise UnexpectedMessage("websocket.close during a denial response")
            self._close()
        elif etype == "websocket.http.response.start":
            if state != _CONNECTING:
                raise UnexpectedMessage("websocket.http.response.start is only allowed "
                                        "before websocket.accept, once")
            self._state = _DENYING
        elif etype in _BROADCAST_TYPES:
            self._track_subscription(etype, event["channel"], state)
        elif etype == "websocket.http.response.body":
            if state != _DENYING:
                raise UnexpectedMessage("websocket.http.response.body before "
                                        "websocket.http.response.start")
            if not event["more_body"]:
                self._close()
        else:
            raise UnexpectedMessage(f"{etype} cannot be sent on a WebSocket connection")

    def _track_subscription(self, etype, channel, state):
        if state != _OPEN:
            raise UnexpectedMessage(f"{etype} before websocket.accept")
        if etype == "asgi-bridge.unsubscribe":
            if channel in self._channels:
                self._channels.discard(channel)
        elif channel not in self._channels:
            if len(self._channels) >= MAX_SUBSCRIPTIONS:
                raise InvalidEvent(f"asgi-bridge.subscribe: already subscribed to "
                                   f"{MAX_SUBSCRIPTIONS} channels, the limit per WebSocket")
            if not self._channels:
                self._channels = set()
            self._channels.add(channel)

    def _close(self):
        self._state = _CLOSED
        self._complete = True
        self._wake()

    async def _on_shutdown(self):
        if self._state == _OPEN and not self.over:
            # 1012 "service restart" (the gateway stays: come back), as the C++ worker
            # and uvicorn do, rather than the 1011 an `error` would give the client.
            self._close()
            await self._emit_event({"type": "websocket.close", "code": 1012, "reason": ""})
        else:
            await super()._on_shutdown()

    async def _on_return(self):
        if self.over:
            return
        if self._state == _OPEN:
            # The app forgot to close: close normally on its behalf (§7.4).
            self._close()
            await self._emit_event({"type": "websocket.close", "code": 1000, "reason": ""})
        elif self._state == _DENYING:
            await self.fail("application returned without completing the denial response")
        else:
            await self.fail("application returned without accepting or closing the WebSocket")

