"""The worker's side of the Redis bus (docs/redis.md), behind the interface of transport.py.

Keys (``P`` is ``--bus-prefix``): the worker pops its own queue ``P:{wk:ID}`` (everything
gateways send it) and the shared queues of new connections from every gateway, each while
it has free capacity of its kind: ``P:{new}`` (HTTP requests) and ``P:{new}:ws``
(WebSockets); it pushes to ``P:{gw:ID}`` of each gateway.

Three Redis connections, each used by one task only, so a blocking pop never delays a
send: one pops the own queue (``BLMPOP … COUNT 128``), one pops the shared queues worth
popping (one ``BLMPOP`` of both when both kinds have room, asking each first in turn) with
``COUNT`` at most the free capacity the worker reported (``set_free_capacity``), one writes.
Everything sent in one turn of the event loop (more under load: whatever accumulates while
the previous write is on its way) leaves as one pipeline: one ``RPUSH`` per destination
with all its messages, each followed by ``PEXPIRE key 30000``.

Broadcast groups (groups.py) are pub/sub, as the C++ SDK's: a group message is
``PUBLISH``ed by the writing connection on ``P:group:DB:{NAME}`` (pub/sub ignores
``SELECT``, so the database number is in the name); a fourth connection, opened at the
first subscription, subscribes to exactly the groups this process has members in (again
after a reconnect; ``group_subscribed`` waits for Redis to confirm one) and pings every
second so that a lost connection is noticed. A refused SUBSCRIBE (an ACL user without it) is
logged; the rest of the bus goes on.

Each connection reconnects on its own with backoff (100 ms doubling to 2 s); the transport
logs once when Redis becomes unavailable and once when it is back. While the writing
connection is down, messages are dropped (counted, and the count logged when Redis is
back): connections in flight then end by the liveness rule, as the contract says.

redis-py's asyncio *clients* return a connection to their pool even when a command was
cancelled half way (its late answer then goes to the next command); the transport uses
``redis.asyncio.Connection`` directly instead, which drops the connection on any error or
cancellation of a read.
"""

import asyncio
import logging

logger = logging.getLogger("asgi_bridge.transport")


class BusError(RuntimeError):
    """The bus cannot be used at all (e.g. Redis refuses our credentials): fatal at start."""


# --- URLs ----------------------------------------------------------------------------------


class RedisUrl:
    """``redis://[user:password@]HOST:PORT/DB`` (``rediss://``: TLS), read exactly as the
    gateway reads it. ``tls_options``: a RedisTls, set by the caller (not in the URL)."""

    __slots__ = ("host", "port", "user", "password", "db", "tls", "tls_options")

    def __init__(self, host="127.0.0.1", port=6379, user="", password="", db=0, tls=False):
        self.host, self.port, self.user, self.password, self.db = host, port, user, password, db
        self.tls, self.tls_options = tls, RedisTls()

    @property
    def display(self):
        """The URL without its credentials, for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"

    def ssl_kwargs(self):
        """redis-py's connection arguments for TLS: none for redis://."""
        if not self.tls:
            return {}
        tls = self.tls_options
        return {"ssl_ca_certs": tls.ca_file, "ssl_certfile": tls.cert_file,
                "ssl_keyfile": tls.key_file,
                "ssl_cert_reqs": "none" if tls.insecure else "required",
                "ssl_check_hostname": not tls.insecure}


class RedisTls:
    """rediss:// settings (docs/redis.md): the server's certificate is verified against
    ca_file (None: the system's CAs) and the URL's host unless insecure; cert_file and
    key_file (both or neither): a client certificate for ``tls-auth-clients yes``."""

    __slots__ = ("ca_file", "cert_file", "key_file", "insecure")

    def __init__(self, ca_file=None, cert_file=None, key_file=None, insecure=False):
        if bool(cert_file) != bool(key_file):
            raise ValueError("a client certificate needs both --bus-tls-cert and --bus-tls-key")
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.insecure = insecure


def parse_redis_url(url):
    """Parse like protocol/bus/src/redis/redis_url.cpp (no percent-decoding), or ValueError."""
    tls = url.startswith("rediss://")
    if not tls and not url.startswith("redis://"):
        raise ValueError(f"bus URL {url!r}: not a redis:// or rediss:// URL")
    parsed = RedisUrl(tls=tls)
    rest = url[len("rediss://" if tls else "redis://"):]
    at = rest.rfind("@")
    if at >= 0:
        credentials, rest = rest[:at], rest[at + 1:]
        user, colon, password = credentials.partition(":")
        if colon:
            parsed.user, parsed.password = user, password
        else:
            parsed.password = credentials
    slash = rest.find("/")
    if slash >= 0:
        db = rest[slash + 1:]
        if db:
            parsed.db = _number(db, "database number", url)
        rest = rest[:slash]
    if rest.startswith("[") and "]" in rest:  # [IPv6]:PORT
        close = rest.index("]")
        host, rest = rest[1:close], rest[close + 1:]
        if rest.startswith(":"):
            parsed.port = _number(rest[1:], "port", url)
        elif rest:
            raise ValueError(f"bus URL {url!r}: bad host")
        parsed.host = host
    else:
        colon = rest.rfind(":")
        if colon >= 0:
            parsed.port = _number(rest[colon + 1:], "port", url)
            rest = rest[:colon]
        if rest:
            parsed.host = rest
    if not 0 < parsed.port <= 65535:
        raise ValueError(f"bus URL {url!r}: bad port")
    return parsed


def _number(text, what, url):
    if not text.isdigit():
        raise ValueError(f"bus URL {url!r}: bad {what}")
    return int(text)


def _redis_modules():
    try:
        import redis
        import redis.asyncio.connection
    except ImportError as exc:  # pragma: no cover - a packaging problem
        raise BusError(f"the Redis bus needs the redis package (Debian: python3-redis): {exc}")
    return redis


def check_redis(url, timeout=3.0):
    """Connect, authenticate, select the database and PING once, synchronously.

    The start-up check, as the gateway does it: a wrong password, an unknown user, a bad
    database or an unreachable server is a BusError in Redis' own words.
    """
    redis = _redis_modules()
    where = f"redis {url.display}"
    client = redis.Redis(host=url.host, port=url.port, db=url.db,
                         username=url.user or None if url.password else None,
                         password=url.password or None,
                         socket_connect_timeout=timeout, socket_timeout=timeout,
                         ssl=url.tls, **url.ssl_kwargs())
    try:
        client.ping()
    except redis.exceptions.AuthenticationError as exc:
        raise BusError(f"{where}: authentication failed: {exc}") from None
    except redis.exceptions.ResponseError as exc:
        # Redis 6+ answers a wrong password or user with WRONGPASS, a missing one NOAUTH.
        what = "authentication failed" if _auth_error(exc) else "refused"
        raise BusError(f"{where}: {what}: {exc}") from None
    except (redis.exceptions.RedisError, OSError) as exc:
        raise BusError(f"{where}: cannot connect: {exc}") from None
    finally:
        client.close()


def _auth_error(exc):
    text = str(exc)
    return text.startswith(("WRONGPASS", "NOAUTH", "invalid password", "invalid username"))


# --- the transport ----------------------------------------------------------------------------


class RedisLink:
    """Where replies to one gateway go: its queue ``P:{gw:ID}``."""

    __slots__ = ("url", "key")

    def __init__(self, url, key):
        self.url = url  # for logs: the server and the queue
        self.key = key

    def __repr__(self):
        return f"<RedisLink {self.url}>"


class RedisTransport:
    #: New connections come from a shared queue: no ``ready``; the worker claims each
    #: one at once and keeps the transport told of its free capacity.
    shared_queue = True

    POP_BATCH = 128           # messages per BLMPOP
    POP_TIMEOUT = 1           # seconds a BLMPOP blocks: a lost connection is noticed soon
    QUEUE_TTL_MS = 30000      # PEXPIRE of per-process queues: a dead peer's queue goes away
    BACKOFF_MIN, BACKOFF_MAX = 0.1, 2.0
    IDLE_PING = 1.0           # the writing connection pings when idle, to notice a loss
    READ_TIMEOUT = 10.0       # no answer at all for this long: the connection is dead
    HIGH_WATER = 4 * 1024 * 1024  # bytes waiting to be written before send() waits
    MAX_NOWAIT_BACKLOG = 10000    # messages waiting before send_nowait() drops
    CONNECTIONS = ("own queue", "new connections", "sends")

    def __init__(self, url, worker_id, prefix="asgi"):
        self.config = url if isinstance(url, RedisUrl) else parse_redis_url(url)
        self.url = self.config.display
        self.links = []  # no configured gateways: replies go where connections came from
        self._prefix = prefix
        self._own_key = f"{prefix}:{{wk:{worker_id}}}"
        self._new_key = f"{prefix}:{{new}}"
        self._new_ws_key = f"{prefix}:{{new}}:ws"  # same hash slot: one BLMPOP takes both
        self._group_prefix = f"{prefix}:group:{self.config.db}:"
        self._publishes = []       # PUBLISH commands for the next write
        self._group_channels = set()  # the channels of the groups we have members in
        self._group_wake = None    # event: the wanted subscriptions changed
        self._confirmed = set()    # channels Redis confirmed our subscription to
        self._confirming = {}      # channel -> futures of group_subscribed()
        self.inbox = RedisLink(f"{self.url} {self._own_key}", self._own_key)
        self._redis = None
        self._loop = None
        self._on_message = None
        self._tasks = {}
        self._outbox = {}          # key -> [message, ...] waiting for the next write
        self._queued = 0
        self._queued_bytes = 0
        self._writing = False      # a pipeline is on its way
        self._written = None       # future: what is queued now has been written
        self._wake = None          # event: something to write
        self._free = 0             # new HTTP requests we may take now
        self._free_ws = 0          # new WebSockets we may take now
        self._capacity = None      # event: some free capacity
        self._popping_new = None   # event, set while no BLMPOP of P:{new} is in flight
        self._popping_keys = ()    # the shared queues the BLMPOP in flight asks
        self._unblocking = False   # a CLIENT UNBLOCK of it is on its way
        self._ask_ws_first = False  # both wanted: which queue the next pop asks first
        self._new_client_id = None  # CLIENT ID of the connection popping P:{new}
        self._control = []         # commands for the next write (CLIENT UNBLOCK)
        self._sender_up = None     # None: not connected yet (sends are kept until then)
        self._up = set()           # names of the connections that are up
        self._available = None     # None at start, then True/False: for the logs
        self._dropped = 0
        self._losses = 0           # connection losses of the pops, for the writer
        self._closing = False

    # --- interface ---------------------------------------------------------------------

    def start(self, on_message):
        self._redis = _redis_modules()
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self._wake = asyncio.Event()
        self._capacity = asyncio.Event()
        self._popping_new = asyncio.Event()
        self._popping_new.set()
        self._group_wake = asyncio.Event()
        self.set_free_capacity(self._free, self._free_ws)
        bodies = (self._pop_own, self._pop_new, self._write_loop)
        for name, body in zip(self.CONNECTIONS, bodies):
            self._tasks[name] = self._loop.create_task(self._run(name, body))
        logger.info("bus: connecting to %s (queues %s, %s, %s)", self.url, self._own_key,
                    self._new_key, self._new_ws_key)

    def reply_link(self, link, gateway_id):
        key = f"{self._prefix}:{{gw:{gateway_id}}}"
        return RedisLink(f"{self.url} {key}", key)

    def set_free_capacity(self, requests, websockets=0):
        self._free = 0 if self._closing else requests
        self._free_ws = 0 if self._closing else websockets
        if self._capacity is None:
            return
        wanted = self._wanted_keys()
        if wanted:
            self._capacity.set()
        else:
            self._capacity.clear()
        if (self._popping_keys and set(self._popping_keys) != set(wanted)
                and not self._unblocking and self._new_client_id is not None):
            # Capacity only shrinks by what we pop (no pop is under way then), or a kind
            # fills up or frees as connections end, or all goes to 0 when draining or
            # closing. A pop under way for other queues than those worth popping now
            # would bring connections we cannot take, or leave a kind that just freed
            # waiting up to POP_TIMEOUT: cut it short and ask again. Redis answers it
            # as a timeout; whatever it popped before is given back (_pop_new).
            self._unblocking = True
            self._control.append(("CLIENT", "UNBLOCK", self._new_client_id))
            self._wake.set()

    def _wanted_keys(self):
        """The shared queues worth popping now, in the order the next pop asks them."""
        keys = ([self._new_key] if self._free > 0 else []) + \
            ([self._new_ws_key] if self._free_ws > 0 else [])
        if len(keys) == 2 and self._ask_ws_first:
            keys.reverse()
        return tuple(keys)

    def try_send(self, link, data):
        """send() when it would not wait, with no coroutine: True when done; False:
        nothing was queued, the caller awaits send() instead."""
        if self._queued_bytes + len(data) > self.HIGH_WATER:
            return False
        self._enqueue(link, data)  # (dropped, as by send(), while Redis is down)
        return True

    async def send(self, link, data):
        if self._enqueue(link, data) and self._queued_bytes > self.HIGH_WATER:
            await self._written_future()

    def send_nowait(self, link, data):
        if self._queued >= self.MAX_NOWAIT_BACKLOG:
            logger.debug("bus %s: backlog full, control message dropped", link.url)
            return
        self._enqueue(link, data)

    def broadcast(self, channel, text, data):
        """docs/broadcast.md: PUBLISH on PREFIX:broadcast:CHANNEL (text) or
        PREFIX:broadcast-bin:CHANNEL (binary), with the next write."""
        if self._sender_up is False or len(self._control) >= self.MAX_NOWAIT_BACKLOG:
            self._dropped += 1
            return
        kind = "broadcast" if text else "broadcast-bin"
        self._control.append(("PUBLISH", f"{self._prefix}:{kind}:{channel}", data))
        if self._wake is not None:
            self._wake.set()

    async def close(self, linger=1.0):
        """Stop taking messages; give what is queued (our bye) up to `linger` seconds."""
        if self._loop is None or self._closing:
            return
        self._closing = True
        self.set_free_capacity(0, 0)
        deadline = self._loop.time() + linger
        # A BLMPOP of P:{new} on its way may bring connections already taken off the
        # queue: let it come back, so that they are pushed back for another worker.
        try:
            await asyncio.wait_for(self._popping_new.wait(), self.POP_TIMEOUT + 1.0)
        except asyncio.TimeoutError:
            pass
        pops = [self._tasks.pop(name) for name in self.CONNECTIONS[:2]]
        for task in pops:
            task.cancel()
        while (self._outbox or self._writing) and self._sender_up is not False \
                and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        writer = self._tasks.pop("sends")
        writer.cancel()
        listener = self._tasks.pop("groups", None)
        if listener is not None:
            listener.cancel()
            pops.append(listener)
        await asyncio.wait(pops + [writer], timeout=1.0)
        self._release_writers()

    # --- broadcast groups ----------------------------------------------------------------

    def _group_channel(self, group):
        return f"{self._group_prefix}{{{group}}}"

    def publish_group(self, group, data):
        # Half the backlog at most: a flood of group messages leaves room for heartbeats.
        if self._sender_up is False or self._queued >= self.MAX_NOWAIT_BACKLOG // 2:
            self._dropped += 1
            return
        self._publishes.append(("PUBLISH", self._group_channel(group), data))
        self._queued += 1
        self._queued_bytes += len(data)
        if self._wake is not None:
            self._wake.set()

    def subscribe_group(self, group):
        self._group_channels.add(self._group_channel(group))
        if "groups" not in self._tasks and self._loop is not None and not self._closing:
            self._tasks["groups"] = self._loop.create_task(self._run("groups", self._listen))
        if self._group_wake is not None:
            self._group_wake.set()

    def unsubscribe_group(self, group):
        self._group_channels.discard(self._group_channel(group))
        if self._group_wake is not None:
            self._group_wake.set()

    async def group_subscribed(self, group, timeout):
        """Until Redis confirmed our subscription to the group (at most `timeout` s):
        from then on, what is published there reaches us."""
        channel = self._group_channel(group)
        if channel in self._confirmed or channel not in self._group_channels:
            return
        waiter = self._loop.create_future()
        self._confirming.setdefault(channel, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            logger.debug("bus %s: subscription to %s not confirmed within %ss", self.url,
                         channel, timeout)

    async def _listen(self, conn):
        """Deliver what the channels we subscribe to bring; _subscriptions keeps them
        in line with the groups we have members in, on this same connection."""
        self._confirmed.clear()
        keeper = self._loop.create_task(self._subscriptions(conn))
        try:
            while True:
                try:
                    reply = await conn.read_response()
                except self._redis.exceptions.ResponseError as exc:
                    # e.g. NOPERM: an ACL user without SUBSCRIBE. Groups then do not
                    # reach this process; everything else goes on.
                    logger.warning("bus %s: a group subscription was refused: %s", self.url, exc)
                    continue
                if keeper.done():
                    keeper.result()  # its error ends this connection too
                if isinstance(reply, list) and len(reply) == 3:
                    self._on_push(*reply)
        finally:
            keeper.cancel()

    def _on_push(self, kind, channel, data):
        if kind == b"message":
            self._deliver(data)
        elif kind == b"subscribe":
            channel = channel.decode()
            self._confirmed.add(channel)
            for waiter in self._confirming.pop(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)
        elif kind == b"unsubscribe":
            self._confirmed.discard(channel.decode())

    async def _subscriptions(self, conn):
        subscribed = set()  # on this connection
        while True:
            wanted = set(self._group_channels)
            commands = []
            if wanted - subscribed:
                commands.append(("SUBSCRIBE", *sorted(wanted - subscribed)))
            if subscribed - wanted:
                commands.append(("UNSUBSCRIBE", *sorted(subscribed - wanted)))
            subscribed = wanted
            self._group_wake.clear()
            if commands:
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            try:
                await asyncio.wait_for(self._group_wake.wait(), self.IDLE_PING)
            except asyncio.TimeoutError:
                # An answer within READ_TIMEOUT, or the reader gives the connection up.
                await conn.send_packed_command(conn.pack_command("PING"), check_health=False)

    # --- sending -----------------------------------------------------------------------

    def _enqueue(self, link, data):
        if self._sender_up is False:
            self._dropped += 1  # Redis is down: the liveness rule ends what depends on it
            return False
        messages = self._outbox.get(link.key)
        if messages is None:
            self._outbox[link.key] = [data]
        else:
            messages.append(data)
        self._queued += 1
        self._queued_bytes += len(data)
        if self._wake is not None:
            self._wake.set()
        return True

    def _written_future(self):
        if self._written is None:
            self._written = self._loop.create_future()
        return asyncio.shield(self._written)

    def _release_writers(self):
        written, self._written = self._written, None
        if written is not None and not written.done():
            written.set_result(None)

    async def _write_loop(self, conn):
        response_error = self._redis.exceptions.ResponseError
        losses = self._losses
        while True:
            if self._losses != losses:
                # A pop lost its connection: ours, idle, may be just as dead without
                # knowing it, or fine (the pop's read timed out because this process
                # was paused: SIGSTOP, a stalled VM). A PING tells, rather than a
                # reconnection, which would drop what the app sends meanwhile.
                losses = self._losses
                await self._command(conn, "PING")
                continue
            if not self._outbox and not self._control and not self._publishes:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.IDLE_PING)
                except asyncio.TimeoutError:
                    await self._command(conn, "PING")  # notices a lost connection
                continue
            batch, self._outbox = self._outbox, {}
            count, self._queued, self._queued_bytes = self._queued, 0, 0
            written, self._written = self._written, None
            commands, self._control = self._control, []
            for key, messages in batch.items():
                commands.append(("RPUSH", key, *messages))
                commands.append(("PEXPIRE", key, self.QUEUE_TTL_MS))
            commands += self._publishes
            self._publishes = []
            self._writing = True
            try:
                await conn.send_packed_command(conn.pack_commands(commands),
                                               check_health=False)
                for command in commands:
                    try:
                        await conn.read_response()
                    except response_error as exc:
                        logger.warning("bus %s: %s %s failed: %s", self.url, command[0],
                                       command[1], exc)
            except BaseException:
                self._dropped += count
                raise
            finally:
                self._writing = False
                if written is not None and not written.done():
                    written.set_result(None)

    # --- receiving ---------------------------------------------------------------------

    async def _pop_own(self, conn):
        while True:
            reply = await self._command(conn, "BLMPOP", self.POP_TIMEOUT, 1, self._own_key,
                                        "LEFT", "COUNT", self.POP_BATCH)
            if reply is not None:
                for data in reply[1]:
                    self._deliver(data)

    async def _pop_new(self, conn):
        """Take new connections, never more than the free capacity of their kind."""
        try:
            self._new_client_id = await self._command(conn, "CLIENT", "ID")
        except self._redis.exceptions.ResponseError:  # an ACL user without CLIENT
            self._new_client_id = None
        while True:
            while not self._wanted_keys():
                await self._capacity.wait()
            keys = self._popping_keys = self._wanted_keys()
            self._ask_ws_first = not self._ask_ws_first  # fairness, when both are asked
            self._unblocking = False
            count = min([self.POP_BATCH] + [self._free_of(key) for key in keys])
            self._popping_new.clear()
            try:
                reply = await self._command(conn, "BLMPOP", self.POP_TIMEOUT, len(keys), *keys,
                                            "LEFT", "COUNT", count)
                if reply is None:
                    continue
                key, messages = reply[0].decode(), reply[1]
                keep = max(0, self._free_of(key))
                if len(messages) > keep:
                    # Capacity of that kind went away meanwhile (drain, close): give the
                    # rest back, at the head and in order, for another worker to take.
                    await self._command(conn, "LPUSH", key, *reversed(messages[keep:]))
                    messages = messages[:keep]
                self._popping_keys = ()  # what we deliver now lowers the free capacity
                for data in messages:
                    self._deliver(data)
            finally:
                self._popping_keys = ()
                self._popping_new.set()

    def _free_of(self, key):
        return self._free_ws if key == self._new_ws_key else self._free

    def _deliver(self, data):
        try:
            self._on_message(self.inbox, data)
        except Exception:
            logger.exception("bus %s: error while handling a message", self.url)

    # --- connections -------------------------------------------------------------------

    async def _command(self, conn, *args):
        await conn.send_command(*args, check_health=False)
        return await conn.read_response()

    def _connection(self):
        config = self.config
        connections = self._redis.asyncio.connection
        kind = connections.SSLConnection if config.tls else connections.Connection
        return kind(
            host=config.host, port=config.port, db=config.db,
            username=config.user or None if config.password else None,
            password=config.password or None,
            socket_connect_timeout=3.0, socket_timeout=self.READ_TIMEOUT, **config.ssl_kwargs())

    async def _run(self, name, body):
        """Run body(connection) on a connection of its own, reconnecting with backoff."""
        errors = (self._redis.exceptions.RedisError, OSError, asyncio.TimeoutError)
        backoff = self.BACKOFF_MIN
        conn = self._connection()
        try:
            while True:
                try:
                    await conn.connect()
                    backoff = self.BACKOFF_MIN
                    if name == "sends":
                        self._sender_up = True
                    self._state(name, None)
                    await body(conn)
                except errors as exc:
                    if name == "sends":
                        # Kept while the connection that worked is made again (a restart
                        # of it, not yet of Redis); dropped from a failed attempt on.
                        self._sender_up = None if self._sender_up else False
                        self._release_writers()
                    elif name != "groups":  # (the writer does not depend on it)
                        self._losses += 1
                        self._wake.set()
                    self._state(name, exc)
                    await conn.disconnect()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.BACKOFF_MAX)
        finally:
            if name == "sends":
                self._sender_up = False
            try:
                await conn.disconnect()
            except Exception:  # noqa: BLE001 - closing anyway
                pass

    def _state(self, name, error):
        """Log once per change of the whole transport: every connection up, or not."""
        if error is None:
            self._up.add(name)
            if self._up.issuperset(self.CONNECTIONS) and self._available is not True:
                if self._available is None:
                    logger.info("bus %s: connected", self.url)
                else:
                    logger.info("bus %s: Redis available again (%d message(s) dropped "
                                "meanwhile)", self.url, self._dropped)
                self._available = True
                self._dropped = 0
        else:
            self._up.discard(name)
            if self._available is not False:
                logger.warning("bus %s: Redis unavailable (%s: %s); reconnecting", self.url,
                               type(error).__name__, error)
                self._available = False
