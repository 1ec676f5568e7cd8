"""A Django Channels 4 channel layer on the asgi-bridge bus: no Redis of its own on ZeroMQ,
the bus's own Redis server and prefix on Redis (docs/workers-python.md, "Django Channels").

    CHANNEL_LAYERS = {"default": {"BACKEND": "asgi_bridge.channels_layer.BusChannelLayer"}}

Messages and channels live in the worker processes; what crosses processes travels as
broadcast-group messages of the bus (groups.py, docs/protocol.md §2.2 ``group``), under
names an application cannot choose (``!`` is not allowed in Channels names):

* ``channels!worker:ID`` — one per process (worker ID): ``send`` to a process-specific
  channel of that process (``new_channel()`` puts the worker id in the name), and
  ``group_add``/``group_discard`` of such a channel from another process;
* ``channels!group:NAME`` — a Channels group: the processes with a member in it;
* ``channels!channel:NAME`` — a named (not process-specific) channel: the processes that
  ``receive`` on it.

Each carries one msgpack map ``{"op", "channel" | "group", "message"}`` as the bytes of
the group message's ``websocket.send``. Groups are kept in the process of their member
channels; ``group_send`` delivers to the local members and publishes once for the others.
Best effort and at most once across processes, ordered per sending process; within a
process it behaves as InMemoryChannelLayer (capacity, expiry, group expiry).
"""

import asyncio
import collections
import logging
import os
import time

import msgpack
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from . import groups as bridge_groups

logger = logging.getLogger("asgi_bridge.channels")

WORKER = bridge_groups.PROCESS_GROUP_PREFIX  # "channels!worker:"
GROUP = "channels!group:"
NAMED = "channels!channel:"


# channels_redis options that mean nothing here (the bus's own server, prefix and TLS
# apply): accepted and ignored, so that switching BACKEND is the only change.
CHANNELS_REDIS_OPTIONS = ("hosts", "prefix", "symmetric_encryption_keys")


class MessageTooLarge(ValueError):
    """A message whose msgpack form is over the layer's ``max_message_size``."""


class _LocalHub:
    """Outside a worker (a management command, a test): this process only."""

    loop = None  # any loop

    def __init__(self):
        self.worker_id = f"local-{os.urandom(4).hex()}"

    def add(self, group, member):
        pass

    def discard(self, group, member):
        pass

    def publish(self, group, event, local=True):
        pass

    async def subscribed(self, group):
        pass


class BusChannelLayer(BaseChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(self, expiry=60, group_expiry=86400, capacity=100, channel_capacity=None,
                 max_message_size=1024 * 1024, **kwargs):
        ignored = [name for name in CHANNELS_REDIS_OPTIONS if kwargs.pop(name, None) is not None]
        if ignored:
            logger.warning("BusChannelLayer: %s ignored (the bus's own server, prefix and "
                           "security apply)", ", ".join(ignored))
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity,
                         **kwargs)
        self.channel_capacity = self.compile_capacities(self.channel_capacity)
        self.group_expiry = group_expiry
        self.max_message_size = max_message_size
        self._hub = None
        self._buffers = {}    # channel -> deque of (expires at, message)
        self._waiters = {}    # channel -> deque of futures of receive()
        self._groups = {}     # group -> {channel: joined at}
        self._listening = set()  # named channels received on here
        self._swept = 0.0        # when _clean_expired last looked at every channel

    # --- the bus ---------------------------------------------------------------------

    @property
    def hub(self):
        if self._hub is not None and self._hub.loop is not None:
            if asyncio.get_running_loop() is not self._hub.loop:
                # Its state belongs to the worker's loop (asgiref's async_to_sync from a
                # sync consumer or view comes back to it; a loop of one's own does not).
                raise RuntimeError("BusChannelLayer used from an event loop other than the "
                                   "worker's: call it from the app's loop (async_to_sync "
                                   "from sync code)")
        if self._hub is None:
            hub = bridge_groups.current_hub()
            if hub is None:
                logger.warning("BusChannelLayer outside an asgi_bridge worker: this process "
                               "only")
                hub = _LocalHub()
            self._hub = hub
            hub.add(WORKER + hub.worker_id, self)
        return self._hub

    def _publish(self, name, op, target, data):
        payload = msgpack.packb({"op": op, "target": target, "message": data},
                                use_bin_type=True)
        self.hub.publish(name, {"type": "websocket.send", "bytes": payload}, local=False)

    def deliver(self, group, event):
        """A message of another process, for one of our ``channels!`` names."""
        try:
            payload = msgpack.unpackb(event["bytes"], raw=False)
            op, target, data = payload["op"], payload["target"], payload["message"]
            if op in ("group_add", "group_discard"):
                name, channel = target
                self.valid_group_name(name)
                self.valid_channel_name(channel)
            elif op == "group_send":
                self.valid_group_name(target)
            else:
                self.valid_channel_name(target)
                message = msgpack.unpackb(data, raw=False)
        except (AssertionError, KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
            logger.debug("%s: unreadable channel layer message dropped: %s", group, exc)
            return
        if op == "send" and (group.startswith(WORKER) or target in self._listening):
            self._put(target, message, drop_when_full=True)
        elif op == "group_send" and group.startswith(GROUP):
            self._send_local_group(target, data)
        elif op in ("group_add", "group_discard") and group.startswith(WORKER):
            (self._add_local if op == "group_add" else self._discard_local)(name, channel)

    def _owner(self, channel):
        """The worker id of a process-specific channel, None for a named channel."""
        bang = channel.find("!")
        return None if bang < 0 else channel[:bang].rsplit(".", 1)[-1]

    # --- checks ----------------------------------------------------------------------

    def _pack(self, message):
        if not isinstance(message, dict):
            raise TypeError(f"message: expected a dict, got {type(message).__name__}")
        if not isinstance(message.get("type"), str):
            raise TypeError("message: needs a 'type' of type str")
        if "__asgi_channel__" in message:
            raise TypeError("message: '__asgi_channel__' is reserved")
        try:
            data = msgpack.packb(message, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"message: not msgpack-serialisable: {exc}") from None
        if len(data) > self.max_message_size:
            raise MessageTooLarge(f"message of {len(data)} bytes over max_message_size "
                                  f"({self.max_message_size})")
        return data

    # --- channels --------------------------------------------------------------------

    async def new_channel(self, prefix="specific"):
        # Our process's group heard before the name is out (at once after the first
        # time): a send to the channel from another process cannot come too early.
        await self.hub.subscribed(WORKER + self.hub.worker_id)
        return f"{prefix}.{self.hub.worker_id}!{os.urandom(6).hex()}"

    async def send(self, channel, message):
        assert self.valid_channel_name(channel), "Channel name not valid"
        data = self._pack(message)
        owner = self._owner(channel)
        if owner is None:
            # Named: our own receivers (as InMemoryChannelLayer), and every process
            # that receives on it.
            self._put(channel, msgpack.unpackb(data, raw=False))
            self._publish(NAMED + channel, "send", channel, data)
        elif owner == self.hub.worker_id:
            self._put(channel, msgpack.unpackb(data, raw=False))
        else:
            self._publish(WORKER + owner, "send", channel, data)

    async def receive(self, channel):
        assert self.valid_channel_name(channel), "Channel name not valid"
        owner = self._owner(channel)
        if owner is not None and owner != self.hub.worker_id:
            raise ValueError(f"channel {channel!r} belongs to another process ({owner})")
        if owner is None and channel not in self._listening:
            self._listening.add(channel)
            self.hub.add(NAMED + channel, self)
            await self.hub.subscribed(NAMED + channel)
        self._clean_expired()
        buffer = self._buffers.get(channel)
        if buffer:
            self._expire(channel, buffer)
        if buffer:
            message = buffer.popleft()[1]
            if not buffer:
                del self._buffers[channel]
            return message
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(channel, collections.deque())
        waiters.append(waiter)
        try:
            return await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
            try:
                waiters.remove(waiter)
            except ValueError:
                pass
            if not waiters and self._waiters.get(channel) is waiters:
                del self._waiters[channel]

    def _put(self, channel, message, drop_when_full=False):
        """Hand the message to a waiting receive(), or keep it until one comes."""
        for waiter in self._waiters.get(channel, ()):
            if not waiter.done():
                waiter.set_result(message)
                return True
        if channel in self._buffers:
            self._expire(channel, self._buffers[channel])
        buffer = self._buffers.setdefault(channel, collections.deque())
        if len(buffer) >= self.get_capacity(channel):
            if drop_when_full:
                logger.debug("channel %s full: message dropped", channel)
                return False
            raise ChannelFull(channel)
        buffer.append((time.monotonic() + self.expiry, message))
        return True

    # --- expiry ----------------------------------------------------------------------

    def _expire(self, channel, buffer):
        """Drop expired messages; like InMemoryChannelLayer, a channel that let one
        expire is taken to be gone and leaves its groups."""
        now = time.monotonic()
        expired = False
        while buffer and buffer[0][0] < now:
            buffer.popleft()
            expired = True
        if expired:
            for name in [name for name, members in self._groups.items() if channel in members]:
                self._discard_local(name, channel)
        if not buffer and self._buffers.get(channel) is buffer:
            del self._buffers[channel]

    def _clean_expired(self):
        """Every channel's expired messages, at most once a second: every receive() and
        group_send() asks, and a pass costs one look per channel holding messages."""
        now = time.monotonic()
        if now - self._swept < 1.0:
            return
        self._swept = now
        for channel, buffer in list(self._buffers.items()):
            self._expire(channel, buffer)

    # --- groups ----------------------------------------------------------------------

    async def group_add(self, group, channel):
        assert self.valid_group_name(group), "Group name not valid"
        assert self.valid_channel_name(channel), "Channel name not valid"
        if self._group_op("group_add", group, channel):
            # Once group_add returns, a group_send from any process reaches the channel.
            await self.hub.subscribed(GROUP + group)

    async def group_discard(self, group, channel):
        assert self.valid_group_name(group), "Group name not valid"
        assert self.valid_channel_name(channel), "Channel name not valid"
        self._group_op("group_discard", group, channel)

    def _group_op(self, op, group, channel):
        """Groups are kept where their member channels live: another process's
        channel is added (or discarded) there. True when the channel is ours."""
        owner = self._owner(channel)
        if owner is None or owner == self.hub.worker_id:
            (self._add_local if op == "group_add" else self._discard_local)(group, channel)
            return True
        self._publish(WORKER + owner, op, [group, channel], None)
        return False

    def _add_local(self, group, channel):
        members = self._groups.get(group)
        if members is None:
            members = self._groups[group] = {}
            self.hub.add(GROUP + group, self)
        members[channel] = time.monotonic()

    def _discard_local(self, group, channel):
        members = self._groups.get(group)
        if members is None:
            return
        members.pop(channel, None)
        if not members:
            del self._groups[group]
            self.hub.discard(GROUP + group, self)

    async def group_send(self, group, message):
        assert self.valid_group_name(group), "Group name not valid"
        data = self._pack(message)
        self._clean_expired()
        self._send_local_group(group, data)
        self._publish(GROUP + group, "group_send", group, data)

    def _send_local_group(self, group, data):
        members = self._groups.get(group)
        if not members:
            return
        joined_after = time.monotonic() - self.group_expiry
        for channel, joined in list(members.items()):
            if joined < joined_after:
                self._discard_local(group, channel)  # group expiry
            else:
                # Each receiver its own copy, as if it had come over the bus.
                self._put(channel, msgpack.unpackb(data, raw=False), drop_when_full=True)

    # --- flush -----------------------------------------------------------------------

    async def flush(self):
        """Forget this process's messages, groups and named channels (other processes
        keep theirs: there is no central store to empty)."""
        for group in list(self._groups):
            self.hub.discard(GROUP + group, self)
        for channel in self._listening:
            self.hub.discard(NAMED + channel, self)
        self._buffers, self._groups, self._listening = {}, {}, set()

    async def close(self):
        pass
