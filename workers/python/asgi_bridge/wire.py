"""The worker's hot paths, native or pure Python (docs/workers-python.md#native-fast-path).

Every message and every app event goes through ``decode``, ``canonical_event``,
``payload_size`` and ``encode_event``. With the native module (``asgi_bridge._native``,
built by CMake into this package) they run in C++ for the common canonical case; whatever the
module does not take (it answers None: another kind, an unusual type, anything
invalid) goes to ``codec``, which decides and raises the errors, so both paths give
equal results. ``bus`` is the module too when the ZeroMQ transport may hand it
pyzmq's sockets for batches of receives and sends, else None. ``start_task`` is
eager.start_task, natively when the module is built. ``select(False)``
(``--no-native``) keeps to the pure-Python code alone.
"""

import sys

from . import codec, eager

try:
    from . import _native
except ImportError:  # not built (no python3-dev, or a sanitizer build)
    _native = None

encode_credit = codec.encode_credit  # once per 8 events: not worth a native version


if _native is not None:
    # What the native functions do not take, they hand to these, in C: no Python
    # wrapper call per message.
    _native.set_fallbacks(codec.decode, codec.canonical_event, codec.encode_event,
                          codec.payload_size)
    _native_decode = _native.decode_or_codec
    _native_canonical_event = _native.canonical_event_or_codec
    _native_encode_event = _native.encode_event_or_codec
    _native_payload_size = _native.payload_size_or_codec


def _one_libzmq():
    """True when the process has a single libzmq mapped: pyzmq's is ours (Debian's
    python3-zmq), so its socket handles are valid in our calls. A pyzmq wheel brings
    a copy of its own, whose sockets ours must never touch."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libzmq" in line}
    except OSError:
        return False
    return len(paths) == 1


def select(native=True):
    """Use the native module if `native` and it is built; return a description of
    the path taken, for the worker's startup log."""
    global decode, canonical_event, encode_event, payload_size, start_task, active, bus
    active = bool(native and _native is not None)
    if active:
        decode, canonical_event = _native_decode, _native_canonical_event
        encode_event, payload_size = _native_encode_event, _native_payload_size
        start_task = _native.start_task
        import zmq  # noqa: F401 (mapped before the check)
        bus = _native if _one_libzmq() else None
        return "native (asgi_bridge._native)" + ("" if bus else ", pyzmq's own bus calls")
    decode, canonical_event, encode_event = codec.decode, codec.canonical_event, codec.encode_event
    payload_size = codec.payload_size
    start_task = eager.start_task
    bus = None
    if not native:
        return "pure Python (--no-native)"
    return "pure Python (asgi_bridge._native is not built)"


select()
