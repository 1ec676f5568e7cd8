"""Broadcast groups across worker processes, on the wire of the C++ SDK's ``groups()``.

A group message (docs/protocol.md §2.2, kind ``group``) names a group, carries one
``websocket.send`` event and is numbered per publishing worker. ZeroMQ: it goes to every
gateway we are connected to, each of which relays it to every other worker it knows; a
copy that arrives through a second gateway is dropped by its sequence number. Redis: it is
``PUBLISH``ed on the group's channel, and this process subscribes to the groups it has
local members in. So Python and C++ workers on one bus share groups.

``GroupHub`` is this process's side: local members (anything with a
``deliver(group, event)`` method) and the bus. Two kinds of members use it:

* ``WebSocketMember`` — one WebSocket connection of a plain ASGI app, through the
  ``GroupHandle`` the worker puts in its scope (``asgi_bridge.groups.of(scope)``);
* the Channels layer (``channels_layer.py``), under names no app can choose (``!``).
"""

import asyncio
import collections
import logging

from . import codec
from .errors import ClientDisconnected, UnexpectedMessage

logger = logging.getLogger("asgi_bridge.groups")

# The group of this process itself, for what other processes send to one of its Channels
# channels (channels_layer.py).
PROCESS_GROUP_PREFIX = "channels!worker:"
SUBSCRIBE_TIMEOUT = 1.0  # seconds subscribed() waits for Redis to confirm, at most
SCOPE_KEY = "asgi_bridge.groups"  # the scope key of a connection's GroupHandle (and extension)
MAX_POSTED = 1024    # messages waiting for one slow WebSocket before more are dropped (as C++)
MAX_ORIGINS = 4096   # publishers whose last sequence number we remember (as C++)

_current = None  # the GroupHub of the worker running in this process


def current_hub():
    """The GroupHub of the worker serving in this process, or None outside a worker."""
    return _current


def of(scope):
    """The ``GroupHandle`` of a WebSocket connection's scope; LookupError outside
    asgi_bridge or on HTTP scopes."""
    handle = scope.get(SCOPE_KEY)
    if handle is None:
        raise LookupError("no asgi_bridge groups in this scope: the app does not run under "
                          "python3 -m asgi_bridge, or the scope is not a WebSocket's")
    return handle


class Sequences:
    """Drops the copies of a group message that reach us through several gateways.

    Each path is FIFO and a publisher numbers its messages 0, 1, 2...: keeping the highest
    number seen per publisher lets the first copy of each through, in order. Bounded: past
    ``max_origins`` publishers the least recently heard is forgotten."""

    def __init__(self, max_origins=MAX_ORIGINS):
        self._max = max_origins
        self._seen = collections.OrderedDict()

    def accept(self, origin, seq):
        last = self._seen.get(origin)
        if last is None:
            if len(self._seen) >= self._max:
                self._seen.popitem(last=False)
            self._seen[origin] = seq
            return True
        self._seen.move_to_end(origin)
        if seq <= last:
            return False
        self._seen[origin] = seq
        return True


class GroupHub:
    """Who is in which group in this process, and the group messages on the bus."""

    def __init__(self, transport, worker_id):
        self.transport = transport
        self.worker_id = worker_id
        self.loop = asyncio.get_running_loop()  # the worker's: every call comes from it
        self._members = {}      # group -> {member: None}, in joining order
        self._memberships = {}  # member -> {group: None}
        self._seq = 0
        self._sequences = Sequences()

    def install(self):
        """Make this the hub of the process (what ``current_hub()`` returns)."""
        global _current
        _current = self

    def uninstall(self):
        global _current
        if _current is self:
            _current = None

    # --- membership -------------------------------------------------------------------

    def add(self, group, member):
        if not isinstance(group, str) or not group:
            raise ValueError(f"group name: expected a non-empty str, got {group!r}")
        members = self._members.get(group)
        if members is None:
            members = self._members[group] = {}
            self.transport.subscribe_group(group)
        members[member] = None
        self._memberships.setdefault(member, {})[group] = None

    def discard(self, group, member):
        members = self._members.get(group)
        if members is None or member not in members:
            return
        del members[member]
        groups = self._memberships.get(member)
        if groups is not None:
            groups.pop(group, None)
            if not groups:
                del self._memberships[member]
        if not members:
            del self._members[group]
            self.transport.unsubscribe_group(group)

    def discard_all(self, member):
        for group in list(self._memberships.get(member, ())):
            self.discard(group, member)

    async def subscribed(self, group):
        """Until this process hears what is published to `group` (Redis: our
        subscription is confirmed; ZeroMQ: at once), or SUBSCRIBE_TIMEOUT passed."""
        await self.transport.group_subscribed(group, SUBSCRIBE_TIMEOUT)

    def groups_of(self, member):
        return list(self._memberships.get(member, ()))

    # --- messages ---------------------------------------------------------------------

    def publish(self, group, event, local=True):
        """Send ``event`` (a ``websocket.send``) to the group's members in every worker;
        to this process's members too unless ``local`` is False. Best effort, never
        waits: what the bus cannot take now is dropped (docs/workers-python.md)."""
        data = codec.encode({"k": "group", "w": self.worker_id, "s": self._seq,
                             "group": group, "event": event})
        self._seq += 1
        self.transport.publish_group(group, data)
        if local:
            self._deliver(group, codec.canonical_event(event))

    def on_message(self, msg):
        """A group message from the bus (already decoded and checked by the codec)."""
        origin = msg["w"]
        if origin == self.worker_id:
            return  # Redis echoes ours: delivered locally already
        if not self._sequences.accept(origin, msg["s"]):
            return  # a copy through a second gateway
        if msg["group"] not in self._members:
            # ZeroMQ relays every group message to every worker.
            logger.debug("group %s: message from %s, no member here", msg["group"], origin)
            return
        self._deliver(msg["group"], msg["event"])

    def _deliver(self, group, event):
        for member in list(self._members.get(group, ())):
            try:
                member.deliver(group, event)
            except Exception:
                logger.exception("group %s: a member failed to take a message", group)


class WebSocketMember:
    """One WebSocket connection as a group member: what the group sends it goes out on
    the connection, in order, after the app's own sends that came first. At most
    MAX_POSTED wait (a slow client); more are dropped, as are those after the close."""

    def __init__(self, conn, loop):
        self._conn = conn
        self._loop = loop
        self._posted = collections.deque()
        self._pump = None
        self.dropped = 0

    def deliver(self, group, event):
        if len(self._posted) >= MAX_POSTED:
            self.dropped += 1
            return
        self._posted.append(event)
        if self._pump is None:
            self._pump = self._loop.create_task(self._send_posted())

    async def _send_posted(self):
        try:
            while self._posted:
                try:
                    await self._conn.send(self._posted.popleft())
                except (ClientDisconnected, UnexpectedMessage):
                    self._posted.clear()  # closed, or not accepted yet: nobody to tell
        finally:
            self._pump = None

    def cancel(self):
        self._posted.clear()
        if self._pump is not None:
            self._pump.cancel()


class GroupHandle:
    """What a WebSocket app uses, like the C++ SDK's ``groups()`` for its socket:

    ``add(group)``, ``discard(group)``, ``send_text(group, text)``,
    ``send_bytes(group, data)``, ``groups()``. Plain methods (no await), to be called
    from the app's event loop. The connection leaves its groups when it ends."""

    def __init__(self, hub, member):
        self._hub = hub
        self._member = member

    def __copy__(self):
        return self  # one connection's: a copied scope still names the same connection

    def __deepcopy__(self, memo):
        return self

    def add(self, group):
        self._hub.add(group, self._member)

    def discard(self, group):
        self._hub.discard(group, self._member)

    def groups(self):
        return self._hub.groups_of(self._member)

    def send_text(self, group, text):
        self._send(group, {"type": "websocket.send", "text": text})

    def send_bytes(self, group, data):
        self._send(group, {"type": "websocket.send", "bytes": bytes(data)})

    def _send(self, group, event):
        if not isinstance(group, str) or not group:
            raise ValueError(f"group name: expected a non-empty str, got {group!r}")
        self._hub.publish(group, event)

    def leave_all(self):
        """Called by the worker when the connection ends."""
        self._hub.discard_all(self._member)
        self._member.cancel()
