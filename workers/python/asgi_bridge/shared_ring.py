"""Same-host shared-memory rings of the ZeroMQ bus (docs/protocol.md §1.1).

A message of ``MIN_MESSAGE`` bytes or more goes through the sender's ring: the sender
(the *producer*) copies it into a sealed memfd both processes map, and the socket
carries a 46-byte reference frame (``R``) in its place. The receiver (the *consumer*)
maps the ring from ``/proc/PID/fd/FD`` on the first reference of a new token, answers
``A`` (mapped) or ``X`` (cannot), copies each referenced message out and stores its
new position as the ring's tail, which tells the producer the space is free again.

This module holds the ring itself and the frames; ``transport.ZmqTransport`` decides
what goes where. Every check a consumer makes is against its own position, never the
shared tail: the other process can write anything there.
"""

import fcntl
import mmap
import os
import stat
import struct
import sys

MIN_MESSAGE = 16 * 1024           # smaller messages always go over the socket
HEADER = 4096                     # bytes before the data
MIN_CAPACITY = 64 * 1024
MAX_CAPACITY = 64 * 1024 * 1024
DEFAULT_CAPACITY = 1024 * 1024
MAGIC = b"ABRING1\0"
MARK = 0xC1                       # first byte of a transport frame: never msgpack's
TAIL_OFFSET = 64
_U64_MAX = (1 << 64) - 1

# Frames (little-endian, no padding): R = its fixed part (the ring) + position, length.
_RING_PART = struct.Struct("<BcII16sQ")   # 0xC1, b"R", pid, fd, token, capacity
_PLACE = struct.Struct("<QI")             # position, length
REFERENCE_SIZE = _RING_PART.size + _PLACE.size  # 46
_ANSWER = struct.Struct("<Bc16s")         # 0xC1, b"A" or b"X", token: 18 bytes
_HEADER = struct.Struct("<8s16sQ")        # magic, token, capacity at offset 0

AVAILABLE = (sys.byteorder == "little" and hasattr(os, "memfd_create")
             and hasattr(fcntl, "F_ADD_SEALS"))


def _tail_of(ring_map):
    """The tail as a one-item memoryview of native u64 (little-endian on every platform
    rings run on, see AVAILABLE): reading or setting its item is one aligned 8-byte load
    or store. Not struct's pack_into: it zeroes the field before it writes the value,
    and the producer, reading in between, saw a tail of 0 (a ring it then gave up as
    broken, measured under load); its '<Q' writes byte by byte besides."""
    return memoryview(ring_map)[TAIL_OFFSET:TAIL_OFFSET + 8].cast("Q")


class RingError(Exception):
    """A ring that cannot be used, or a frame or reference that is not valid: the
    message says why, for the log line."""


CAPACITY_RULE = f"0 or a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}"


def check_capacity(text):
    """The capacity of our rings `text` gives (0: none); ValueError unless it is
    CAPACITY_RULE."""
    try:
        capacity = int(text)
    except ValueError:
        capacity = None
    if capacity != 0 and (capacity is None or not valid_capacity(capacity)):
        raise ValueError(f"must be {CAPACITY_RULE}, got {text}")
    return capacity


def valid_capacity(capacity):
    return MIN_CAPACITY <= capacity <= MAX_CAPACITY and capacity & (capacity - 1) == 0


# --- frames ------------------------------------------------------------------------

def accept(token):
    return _ANSWER.pack(MARK, b"A", token)


def refuse(token):
    return _ANSWER.pack(MARK, b"X", token)


def parse_reference(frame):
    """(pid, fd, token, capacity, position, length) of an ``R`` frame."""
    if len(frame) != REFERENCE_SIZE:
        raise RingError(f"reference frame of {len(frame)} bytes (expected {REFERENCE_SIZE})")
    _, _, pid, fd, token, capacity = _RING_PART.unpack_from(frame)
    position, length = _PLACE.unpack_from(frame, _RING_PART.size)
    return pid, fd, token, capacity, position, length


def parse_answer(frame):
    """The token of an ``A`` or ``X`` frame."""
    if len(frame) != _ANSWER.size:
        raise RingError(f"answer frame of {len(frame)} bytes (expected {_ANSWER.size})")
    return _ANSWER.unpack(frame)[2]


# --- the producer's ring -----------------------------------------------------------

class Ring:
    """A ring of our own, written by us alone (docs/protocol.md §1.1, Producer).

    Its memfd stays open as long as the ring lives: the consumer opens it through
    /proc/OUR_PID/fd/FD, named in every reference."""

    __slots__ = ("fd", "map", "token", "capacity", "head", "offer", "_ring_part", "_tail")

    def __init__(self, capacity):
        if not valid_capacity(capacity):
            raise ValueError(f"ring capacity {capacity}")
        fd = os.memfd_create("asgi-bridge-ring", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, HEADER + capacity)  # zero-filled: the tail starts at 0
            # Neither side can truncate it under the other's mapping (a SIGBUS).
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            os.fchmod(fd, 0o600)
            self.map = mmap.mmap(fd, HEADER + capacity)  # MAP_SHARED, read and write
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.token = os.urandom(16)
        self.capacity = capacity
        self.head = 0  # the end of the last message written
        _HEADER.pack_into(self.map, 0, MAGIC, self.token, capacity)
        self._tail = _tail_of(self.map)
        self._ring_part = _RING_PART.pack(MARK, b"R", os.getpid(), fd, self.token, capacity)
        self.offer = self._ring_part + _PLACE.pack(0, 0)  # "map this ring"

    def write(self, data):
        """The ``R`` frame of `data` copied into the ring, or None when the ring has no
        room for it now (it goes over the socket). `data`: bytes, or a message in
        pieces (the native module's Parts: ``pieces``, and its size as len()), each
        copied in turn. RingError: the consumer broke the ring (a tail we never gave it
        room for); never use it again."""
        tail = self._tail[0]
        head, capacity = self.head, self.capacity
        if tail > head or head - tail > capacity:
            raise RingError(f"the consumer's tail {tail} is outside the ring (head {head})")
        size = len(data)
        offset = head & (capacity - 1)
        if offset + size > capacity:  # a message never straddles the end
            head += capacity - offset
            offset = 0
        if head + size - tail > capacity:
            return None
        start = HEADER + offset
        pieces = getattr(data, "pieces", None)
        if pieces is None:
            self.map[start:start + size] = data
        else:
            for piece in pieces:
                end = start + len(piece)
                self.map[start:end] = piece
                start = end
        self.head = head + size
        return self._ring_part + _PLACE.pack(head, size)

    def close(self):
        self._tail.release()  # (mmap refuses to close while a view of it lives)
        self.map.close()
        os.close(self.fd)


# --- the consumer's mapping ----------------------------------------------------------

_OPEN_FLAGS = os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class PeerRing:
    """The other side's ring, mapped (docs/protocol.md §1.1, Consumer). RingError from
    the constructor: it cannot be mapped (the frame's X), and why."""

    __slots__ = ("map", "token", "capacity", "position", "_tail")

    def __init__(self, pid, fd, token, capacity):
        if not valid_capacity(capacity):
            raise RingError(f"capacity {capacity} is not a power of two from "
                            f"{MIN_CAPACITY} to {MAX_CAPACITY}")
        path = f"/proc/{pid}/fd/{fd}"
        handle = _open_regular(path)
        try:
            self.map = _map_checked(handle, path, capacity)
        finally:
            os.close(handle)  # the mapping keeps the file
        magic, ring_token, ring_capacity = _HEADER.unpack_from(self.map)
        problem = (f"{path} is not a ring (magic {magic!r})" if magic != MAGIC else
                   f"{path} holds another ring (token)" if ring_token != token else
                   f"{path}: capacity {ring_capacity} in its header, {capacity} in the "
                   "reference" if ring_capacity != capacity else None)
        if problem is not None:
            self.map.close()
            raise RingError(problem)
        self.token = token
        self.capacity = capacity
        self._tail = _tail_of(self.map)
        self.position = self._tail[0]

    def lend(self, position, length):
        """The `length` bytes at `position` (the next message) in place: a memoryview of
        the mapping, for the worker to decode without a copy (its gateway is the peer
        it trusts with what it runs) and then release. Our position moves past it; the
        tail only with give_back(), so the gateway leaves those bytes alone until then.
        RingError: a reference that does not fit where we are (the message is dropped,
        the ring stays as it was)."""
        capacity, ours = self.capacity, self.position
        offset = position & (capacity - 1)
        end = position + length
        # (The largest message a worker accepts is the ring's capacity: it has no
        # --max-message-size of its own.)
        if (length == 0 or position < ours or position - ours >= capacity
                or offset + length > capacity or end > _U64_MAX):
            raise RingError(f"bad reference: {length} bytes at {position} "
                            f"(our position {ours}, capacity {capacity})")
        start = HEADER + offset
        self.position = end
        return memoryview(self.map)[start:start + length]

    def give_back(self):
        """The bytes lent so far are free for the gateway to write again."""
        self._tail[0] = self.position

    def close(self):
        self._tail.release()
        try:
            self.map.close()
        except BufferError:  # a message still lent: unmapped when its view and this map are freed
            pass


def _open_regular(path):
    """A descriptor of the regular file at `path`, opened read-write. The path is looked
    at first without opening the file (O_PATH), so that a device or a FIFO a peer names
    is never opened; the file it found is then reopened through our own descriptor."""
    try:
        probe = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise RingError(f"cannot open {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(probe).st_mode):
            raise RingError(f"{path} is not a regular file")
        try:
            return os.open(f"/proc/self/fd/{probe}", _OPEN_FLAGS)
        except OSError as exc:
            raise RingError(f"cannot open {path}: {exc.strerror}") from None
    finally:
        os.close(probe)


def _map_checked(handle, path, capacity):
    """A shared read-write mapping of `handle` once it is sealed against shrinking and,
    then (so that it cannot shrink after the check), of a ring's size with `capacity`;
    RingError otherwise."""
    try:
        seals = fcntl.fcntl(handle, fcntl.F_GET_SEALS)
    except OSError as exc:  # EINVAL: not a memfd
        raise RingError(f"{path} has no seals: {exc.strerror}") from None
    if not seals & fcntl.F_SEAL_SHRINK:
        raise RingError(f"{path} is not sealed against shrinking")
    size = os.fstat(handle).st_size
    if size != HEADER + capacity:
        raise RingError(f"{path} has {size} bytes (expected {HEADER + capacity})")
    try:
        return mmap.mmap(handle, HEADER + capacity)
    except OSError as exc:
        raise RingError(f"cannot map {path}: {exc.strerror}") from None
