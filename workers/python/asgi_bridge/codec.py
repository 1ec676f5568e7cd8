"""The msgpack codec of docs/protocol.md (wire protocol version 1).

``encode`` writes the canonical form: envelope keys in the table order of §2.1 with
absent keys left out, scope and event fields in the order of §4 with defaults filled
in. Equal messages are therefore equal bytes in Python and in C++ (the golden vectors
in tests/vectors check this). ``decode`` validates as §4.3 requires and returns plain
ASGI dicts (headers as lists of ``[bytes, bytes]``), in the same canonical shape, so
``encode(decode(data)) == data`` for every canonical message.

The same field checks serve two callers with slightly different leniency:

* the wire (``decode``): types must be exactly the msgpack ones, a nil is only
  accepted where §4 allows it; failures raise ``ProtocolError``;
* an app's ``send`` (``canonical_event``): any bytes-like object for a byte string,
  tuples or any iterable for arrays, ``None`` meaning "use the default"; failures
  raise ``InvalidEvent`` (a ``TypeError``/``ValueError``), which ``send`` lets
  propagate into the app.
"""

import re

import msgpack

from .errors import InvalidEvent, ProtocolError

VERSION = 1
KINDS = frozenset(("event", "ready", "heartbeat", "credit", "drain", "bye", "error", "group",
                   "publish"))

# §2.1, in canonical order.
ENVELOPE_KEYS = ("v", "k", "g", "w", "c", "s", "capacity", "active", "ws_capacity", "window",
                 "features", "events", "bytes", "message", "group", "channel", "scope", "event")
_UINT_KEYS = frozenset(("c", "s", "capacity", "active", "ws_capacity", "window", "features",
                        "events", "bytes"))

# `features` (§2.1) on a connection's first event: the optional forms the gateway accepts.
# This one: an http.response.start may carry the response's first body (§4.2).
FEATURE_START_BODY = 1
# This one: a response body may go in pieces of a quarter of the byte window (§5).
FEATURE_LARGE_PIECES = 2
_STR_KEYS = frozenset(("k", "g", "w", "message", "group", "channel"))

# RFC 9110 token (header names) and the bytes that could split a response (values).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_is_token = _TOKEN.fullmatch
_bad_value = _BAD_VALUE.search
_PAIR_TYPES = (list, tuple)  # exactly these types take the fast path

_BYTES_LIKE = (bytes, bytearray, memoryview)
_MISSING = object()
_REQUIRED = object()
_OPTIONAL = object()  # default for a field left out when absent
_EMPTY_LIST = object()  # default for arrays: a fresh [] each time, never shared


# --- field checkers ---------------------------------------------------------
# Each takes (value, field name for messages, error class) and returns the value to
# put in the canonical dict. They accept Python-side leniency (tuples, bytearray, int
# subclasses); the wire can never produce those, so decoding stays exact.

def _bin(value, field, err):
    if type(value) is bytes:
        return value
    if isinstance(value, _BYTES_LIKE):
        # memoryview: make it bytes so lengths and packing are plain; bytearray packs as bin.
        return bytes(value) if isinstance(value, memoryview) else value
    raise err(f"{field}: expected bytes, got {_type_name(value)}")


def _str(value, field, err):
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    raise err(f"{field}: expected str, got {_type_name(value)}")


def _opt_str(value, field, err):
    return None if value is None else _str(value, field, err)


def _bool(value, field, err):
    if value is True or value is False:
        return value
    raise err(f"{field}: expected bool, got {_type_name(value)}")


def _int(value, field, err):
    # bool is an int in Python but a different msgpack type: reject it.
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)  # e.g. http.HTTPStatus: canonical form is a plain int
    raise err(f"{field}: expected int, got {_type_name(value)}")


def _uint(value, field, err):
    value = _int(value, field, err)
    if value < 0:
        raise err(f"{field}: {value} is negative")
    return value


def _status(value, field, err):
    value = _int(value, field, err)
    if not 100 <= value <= 599:
        raise err(f"{field}: {value} out of range 100..599")
    return value


def _close_code(value, field, err):
    value = _int(value, field, err)
    if not (1000 <= value <= 1003 or 1007 <= value <= 1014 or 3000 <= value <= 4999):
        raise err(f"{field}: {value} is not a valid close code "
                  "(1000-1003, 1007-1014 or 3000-4999)")
    return value


def _disconnect_code(value, field, err):
    value = _int(value, field, err)
    if not 1000 <= value <= 4999:
        raise err(f"{field}: {value} out of range 1000..4999")
    return value


def _reason(value, field, err):
    value = _str(value, field, err)
    if utf8_len(value, field, err) > 123:  # what fits in a close frame after the code
        raise err(f"{field}: longer than 123 bytes in UTF-8")
    return value


# Broadcast channel names (§4.3): 1 to 128 bytes of letters, digits and - _ . : / @.
_CHANNEL = re.compile(r"[A-Za-z0-9\-_.:/@]{1,128}")


def check_channel(value, field="channel", err=InvalidEvent):
    if type(value) is not str or not _CHANNEL.fullmatch(value):
        raise err(f"{field}: {value!r:.60} is not a channel name "
                  "(1-128 characters: letters, digits, - _ . : / @)")
    return value


def _channel(value, field, err):
    return check_channel(value, field, err)


def _str_list(value, field, err):
    if not isinstance(value, (list, tuple)):
        raise err(f"{field}: expected an array of str, got {_type_name(value)}")
    return [_str(item, f"{field}[{i}]", err) for i, item in enumerate(value)]


def _headers(value, field, err):
    if isinstance(value, (str, _BYTES_LIKE, dict)) or not hasattr(value, "__iter__"):
        raise err(f"{field}: expected an array of [name, value] pairs, got {_type_name(value)}")
    out = []
    for i, pair in enumerate(value):
        # Hot path (every request's headers): a list or tuple of two valid bytes.
        if type(pair) in _PAIR_TYPES and len(pair) == 2:
            name, val = pair
            if (type(name) is bytes and type(val) is bytes and _is_token(name)
                    and not _bad_value(val)):
                out.append([name, val])
                continue
        out.append(_header(pair, f"{field}[{i}]", err))
    return out


def _header(pair, field, err):
    """One header that is not plainly valid: normalised, or an error naming what is wrong."""
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise err(f"{field}: expected a [name, value] pair of bytes")
    name, val = pair
    if not isinstance(name, _BYTES_LIKE):
        raise err(f"{field}: header name must be bytes, got {_type_name(name)}")
    if not isinstance(val, _BYTES_LIKE):
        raise err(f"{field}: header value must be bytes, got {_type_name(val)}")
    if type(name) is not bytes:
        name = bytes(name)
    if type(val) is not bytes:
        val = bytes(val)
    if not _is_token(name):
        raise err(f"{field}: header name {name!r} is not an RFC 9110 token")
    if _bad_value(val):
        raise err(f"{field}: header value contains CR, LF or NUL")
    return [name, val]


def _extensions(value, field, err):
    # Canonical form: name -> empty map. Like the C++ codec, keep only the names.
    if not isinstance(value, dict):
        raise err(f"{field}: expected a map, got {_type_name(value)}")
    for name, ext in value.items():
        if type(name) is not str:
            raise err(f"{field}: extension name {name!r} is not a str")
        if not isinstance(ext, dict):
            raise err(f"{field}.{name}: expected a map, got {_type_name(ext)}")
    return {name: {} for name in value}


def _endpoint(allow_nil_port):
    """[host str, port int] (or [path str, nil] for a server's unix socket), or nil."""
    def check(value, field, err):
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise err(f"{field}: expected [host, port] or nil")
        host, port = value
        if type(host) is not str:
            host = _str(host, f"{field}[0]", err)
        if port is None and allow_nil_port:
            return [host, None]
        if type(port) is not int:
            port = _int(port, f"{field}[1]", err)
        if not 0 <= port <= 65535:
            raise err(f"{field}[1]: port {port} out of range 0..65535")
        return [host, port]
    return check


def _type_name(value):
    return "nil" if value is None else type(value).__name__


def utf8_len(text, field="text", err=InvalidEvent):
    """Length of ``text`` in UTF-8; an error if it cannot be encoded (lone surrogates)."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise err(f"{field}: not valid UTF-8 (lone surrogate)") from None


# Checkers that return a value of exactly this type unchanged: such a value needs no call.
_PLAIN_TYPES = {_str: str, _bin: bytes, _bool: bool}


def _field_table(where, fields):
    """(name, checker, default) -> (name, label for errors, checker, default, plain type),
    labels built once rather than an f-string per field per message."""
    return tuple((name, f"{where}.{name}", check, default, _PLAIN_TYPES.get(check))
                 for name, check, default in fields)


# --- events (§4.2) -----------------------------------------------------------

_WS_MESSAGE = "ws-message"  # websocket.receive/send: exactly one of bytes/text

_EVENT_SPECS = {
    "http.request": (("body", _bin, b""), ("more_body", _bool, False)),
    "http.disconnect": (),
    "http.response.start": (("status", _status, _REQUIRED), ("headers", _headers, _EMPTY_LIST),
                            ("trailers", _bool, False)),
    "http.response.body": (("body", _bin, b""), ("more_body", _bool, False)),
    "http.response.trailers": (("headers", _headers, _EMPTY_LIST), ("more_trailers", _bool, False)),
    "websocket.connect": (),
    "websocket.accept": (("subprotocol", _opt_str, None), ("headers", _headers, _EMPTY_LIST)),
    "websocket.receive": _WS_MESSAGE,
    "websocket.send": _WS_MESSAGE,
    "websocket.close": (("code", _close_code, 1000), ("reason", _reason, "")),
    "websocket.disconnect": (("code", _disconnect_code, 1005), ("reason", _str, "")),
    "websocket.http.response.start": (("status", _status, _REQUIRED),
                                      ("headers", _headers, _EMPTY_LIST)),
    "websocket.http.response.body": (("body", _bin, b""), ("more_body", _bool, False)),
    # the asgi-bridge.broadcast extension (docs/broadcast.md)
    "asgi-bridge.subscribe": (("channel", _channel, _REQUIRED),),
    "asgi-bridge.unsubscribe": (("channel", _channel, _REQUIRED),),
}


# (name, label for error messages, checker, default) per field: labels built once.
EVENTS = {etype: spec if spec is _WS_MESSAGE else
          _field_table("event", spec)
          for etype, spec in _EVENT_SPECS.items()}

# On the wire (decode, encode) a start may also carry the response's first body
# (FEATURE_START_BODY): `body` then `more_body`, both written when `body` is there
# (_start_body). An app's send() keeps to the table above: ASGI has no body in a start,
# so an app's stray `body` key is dropped like any unknown key.
_WIRE_START = _field_table("event", _EVENT_SPECS["http.response.start"] + (
    ("body", _bin, _OPTIONAL), ("more_body", _bool, _OPTIONAL)))
WIRE_EVENTS = dict(EVENTS)
WIRE_EVENTS["http.response.start"] = _WIRE_START


def canonical_event(event, err=InvalidEvent, none_is_default=True, events=EVENTS):
    """Validate an ASGI event dict and return it in canonical form (a new dict).

    With the defaults this is the check of an app's ``send``: it raises
    ``InvalidEvent`` and takes ``None`` as "default". Unknown extra keys are dropped,
    as the ASGI spec asks servers to ignore them. ``events=WIRE_EVENTS``: a message's
    event (a start may carry a body).
    """
    if not isinstance(event, dict):
        raise err(f"event: expected a dict/map, got {_type_name(event)}")
    etype = event.get("type", _MISSING)
    if etype is _MISSING:
        raise err("event.type: missing")
    if type(etype) is not str:
        raise err(f"event.type: expected str, got {_type_name(etype)}")
    spec = events.get(etype)
    if spec is None:
        raise err(f"event.type: unknown event type {etype!r}")
    out = {"type": etype}
    if spec is _WS_MESSAGE:
        return _ws_message(event, out, err)
    get = event.get
    for name, label, check, default, plain in spec:
        value = get(name, _MISSING)
        if value is _MISSING or (value is None and none_is_default and default is not None):
            if default is _REQUIRED:
                raise err(f"{label}: missing (required in {etype})")
            if default is _OPTIONAL:
                continue
            value = [] if default is _EMPTY_LIST else default
        elif type(value) is not plain:
            value = check(value, label, err)
        out[name] = value
    if spec is _WIRE_START:
        _start_body(out)
    return out


def _start_body(start):
    """A start's body (§4.2): `more_body` written with it (false by default), and
    ignored without it."""
    if "body" in start:
        start.setdefault("more_body", False)
    else:
        start.pop("more_body", None)


def _ws_message(event, out, err):
    data = event.get("bytes")
    text = event.get("text")
    if (data is None) == (text is None):
        raise err(f"event: {out['type']} needs exactly one of 'bytes' and 'text'")
    if data is not None:
        out["bytes"] = _bin(data, "event.bytes", err)
    else:
        out["text"] = _str(text, "event.text", err)
    return out


def payload_size(event):
    """Bytes of payload an app event carries, as counted against the window (§5)."""
    etype = event["type"]
    if etype == "websocket.send":
        data = event.get("bytes")
        if data is not None:
            return len(data)
        text = event["text"]
        return len(text) if text.isascii() else utf8_len(text, "event.text")
    if etype == "http.response.body" or etype == "websocket.http.response.body":
        return len(event["body"])
    return 0


# --- scope (§4.1) -------------------------------------------------------------

_ASGI = {"version": "3.0", "spec_version": "2.5"}


def canonical_scope(scope, err=ProtocolError):
    """Validate a wire scope and return it in canonical form (a new dict).

    ``type`` and ``path`` (and ``method`` for http) are required; the other keys get
    the defaults below when missing. Keys a scope type does not have are dropped.
    """
    if not isinstance(scope, dict):
        raise err(f"scope: expected a map, got {_type_name(scope)}")
    _check_keys(scope, "scope", err)
    stype = scope.get("type")
    if stype not in ("http", "websocket"):
        raise err(f"scope.type: expected 'http' or 'websocket', got {stype!r}")
    get = scope.get
    out = {"type": stype, "asgi": _asgi(get("asgi", _MISSING), err)}
    for name, label, check, default, plain in _SCOPE_FIELDS[stype]:
        value = get(name, _MISSING)
        if value is _MISSING:
            if default is _REQUIRED:
                raise err(f"{label}: missing (required in a {stype} scope)")
            value = _scope_default(name, default, out)
        elif type(value) is not plain:
            value = check(value, label, err)
        out[name] = value
    return out


def _scope_default(name, default, out):
    if name == "raw_path":
        return out["path"].encode("utf-8")  # path is required and comes first
    if name == "extensions":
        return {}
    return [] if default is _EMPTY_LIST else default


def _scope_fields(http):
    # (name, checker, default); order is the canonical order of §4.1.
    fields = [("http_version", _str, "1.1")]
    if http:
        fields.append(("method", _str, _REQUIRED))
    fields += [
        ("scheme", _str, "http" if http else "ws"),
        ("path", _str, _REQUIRED),
        ("raw_path", _bin, None),  # default: path in UTF-8, see _scope_default
        ("query_string", _bin, b""),
        ("root_path", _str, ""),
        ("headers", _headers, _EMPTY_LIST),
        ("client", _endpoint(False), None),
        ("server", _endpoint(True), None),
    ]
    if not http:
        fields.append(("subprotocols", _str_list, _EMPTY_LIST))
    fields.append(("extensions", _extensions, None))  # default: a fresh {}
    return _field_table("scope", fields)


_SCOPE_FIELDS = {"http": _scope_fields(True), "websocket": _scope_fields(False)}


def _asgi(value, err):
    if value is _MISSING or value == _ASGI:  # (what our gateway sends)
        return dict(_ASGI)
    if not isinstance(value, dict):
        raise err(f"scope.asgi: expected a map, got {_type_name(value)}")
    return {key: _str(value.get(key, default), f"scope.asgi.{key}", err)
            for key, default in _ASGI.items()}


# --- envelope (§2) -------------------------------------------------------------

def encode(envelope):
    """Encode an envelope dict in canonical form; absent/None keys are left out.

    ``v`` defaults to 1. The event is validated and normalised (``InvalidEvent`` on
    failure); other wrong values raise ``ProtocolError``.
    """
    out = {"v": VERSION}
    v = envelope.get("v", VERSION)
    if v != VERSION or type(v) is not int:
        raise ProtocolError(f"v: unsupported protocol version {v!r} (expected {VERSION})")
    if envelope.get("k") is None:
        raise ProtocolError("k: missing")
    for key in ENVELOPE_KEYS[1:]:
        value = envelope.get(key)
        if value is None:
            continue
        if key == "event":
            value = canonical_event(value, events=WIRE_EVENTS)
        elif key == "scope":
            value = canonical_scope(value)
        elif key in _UINT_KEYS:
            value = _uint(value, key, ProtocolError)
            if not value and key == "features":
                continue  # 0 is the default: left out
        else:
            value = _str(value, key, ProtocolError)
        out[key] = value
    return msgpack.packb(out, use_bin_type=True)


# One packer for the hot paths (the worker is single-threaded; it resets itself after
# every message, even a failed one): msgpack.packb builds a new one per call.
_pack = msgpack.Packer(use_bin_type=True).pack


def encode_event(gateway, worker, conn, seq, event, parts=False):
    """Hot path: an ``event`` message whose event is already canonical. Always bytes:
    `parts` lets the native module answer a large payload's message in pieces."""
    return _pack({"v": VERSION, "k": "event", "g": gateway, "w": worker,
                  "c": conn, "s": seq, "event": event})


def encode_credit(gateway, worker, conn, events):
    """Hot path: a worker's ``credit`` of ``events`` consumed events (ids already checked)."""
    return _pack({"v": VERSION, "k": "credit", "g": gateway, "w": worker,
                  "c": conn, "events": events})


def decode(data):
    """Decode and validate one message (§4.3); raises ``ProtocolError`` naming the field.

    A message of an unknown kind is returned as it was read, unvalidated beyond ``v``
    and ``k``: callers ignore it (forward compatibility, §2.1).
    """
    obj = _unpack(data)
    if not isinstance(obj, dict):
        raise ProtocolError(f"message: expected a map at the top, got {_type_name(obj)}")
    _check_keys(obj, "message", ProtocolError)
    try:
        return _decode_envelope(obj)
    except ProtocolError as exc:
        # What could be read, so that the receiver can log it and fail that connection.
        exc.kind, exc.gateway, exc.conn = (_readable(obj, "k", str), _readable(obj, "g", str),
                                           _readable(obj, "c", int))
        raise


def _readable(obj, key, expected):
    value = obj.get(key)
    return value if type(value) is expected else None


def _decode_envelope(obj):
    v = obj.get("v", _MISSING)
    if v is _MISSING:
        raise ProtocolError("v: missing")
    if type(v) is not int or v != VERSION:
        raise ProtocolError(f"v: unsupported protocol version {v!r} (expected {VERSION})")
    kind = obj.get("k", _MISSING)
    if kind is _MISSING:
        raise ProtocolError("k: missing")
    if type(kind) is not str:
        raise ProtocolError(f"k: expected str, got {_type_name(kind)}")
    if kind not in KINDS:
        return obj
    # Only the keys the message has (an event has 6 of the 14), in the order they came:
    # canonical when the sender wrote the canonical form, as every sender of ours does.
    out = {}
    for key, value in obj.items():
        check = _WIRE_CHECKS.get(key)
        if check is not None:
            out[key] = check(value, key)
    if kind == "event":
        for key in ("c", "s", "event"):
            if key not in out:
                raise ProtocolError(f"{key}: missing (required in an event message)")
    elif kind == "group":
        _check_group(out)
    elif kind == "publish":
        _check_publish(out)
    return out


def _check_group(msg):
    """Another worker's broadcast (groups.py), for our members of its group."""
    for key in ("w", "s", "group", "event"):
        if key not in msg or msg[key] == "":
            raise ProtocolError(f"{key}: missing (required in a group message)")
    if msg["event"]["type"] != "websocket.send":
        raise ProtocolError("event: a group message carries one websocket.send")


def _check_publish(msg):
    """A publish to a broadcast channel: a gateway asks us to relay it (ZeroMQ)."""
    if "channel" not in msg:
        raise ProtocolError("channel: missing (required in a publish message)")
    check_channel(msg["channel"], "channel", ProtocolError)
    if "event" not in msg or msg["event"]["type"] != "websocket.send":
        raise ProtocolError("event: a publish message carries one websocket.send")


def _wire_uint(value, key):
    if type(value) is int and value >= 0:  # (every c and s of every event)
        return value
    return _uint(value, key, ProtocolError)


def _wire_id(value, key):
    value = _str(value, key, ProtocolError)
    if not value:
        raise ProtocolError(f"{key}: empty id")
    return value


def _wire_event(value, key):
    if isinstance(value, dict):
        _check_keys(value, "event", ProtocolError)
    return canonical_event(value, ProtocolError, none_is_default=False, events=WIRE_EVENTS)


def _wire_checks():
    """Envelope key -> check(value, key) of a decoded message's field."""
    checks = {"v": lambda value, key: value}  # checked first, by _decode_envelope
    for key in _UINT_KEYS:
        checks[key] = _wire_uint
    for key in _STR_KEYS:
        checks[key] = lambda value, key: _str(value, key, ProtocolError)
    checks["g"] = checks["w"] = _wire_id
    checks["scope"] = lambda value, key: canonical_scope(value)
    checks["event"] = _wire_event
    assert set(checks) == set(ENVELOPE_KEYS)
    return checks


_WIRE_CHECKS = _wire_checks()


def _unpack(data):
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except msgpack.ExtraData:
        raise ProtocolError("message: trailing bytes after the map") from None
    except UnicodeDecodeError:
        raise _bad_utf8_error(data) from None
    except ValueError as exc:
        if "map key" in str(exc):
            raise ProtocolError(f"message: a map key is not a str ({exc})") from None
        raise ProtocolError(f"message: not valid msgpack ({exc})") from None
    except Exception as exc:  # msgpack's FormatError, StackError… must never escape raw
        raise ProtocolError(f"message: not valid msgpack ({exc})") from None


def _check_keys(mapping, where, err):
    for key in mapping:
        if type(key) is not str:
            raise err(f"{where}: map key {key!r} is not a str")


def _bad_utf8_error(data):
    """The error for a message holding invalid UTF-8 (only runs for such a message): it
    names the field and, like decode()'s other errors, what could be read of kind,
    gateway and connection, so that the receiver can fail that connection."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False,
                              unicode_errors="surrogateescape")
    except Exception:
        return ProtocolError("message: a str is not valid UTF-8")
    path = _bad_str_path(obj, "")
    exc = ProtocolError(f"{path or 'message'}: not valid UTF-8")
    if isinstance(obj, dict):
        exc.kind, exc.gateway, exc.conn = (_readable_utf8(obj, "k"), _readable_utf8(obj, "g"),
                                           _readable(obj, "c", int))
    return exc


def _readable_utf8(obj, key):
    value = _readable(obj, key, str)
    return value if value is not None and _bad_str_path(value, key) is None else None


def _bad_str_path(obj, path):
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return path or "message"
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if _bad_str_path(key, "x") is not None:
                return f"{path + ' ' if path else ''}key {key!r}".strip()
            found = _bad_str_path(value, f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _bad_str_path(value, f"{path}[{i}]")
            if found:
                return found
    return None
