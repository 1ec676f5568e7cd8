"""The native fast path (asgi_bridge._native through wire.py) gives exactly what the
pure-Python codec gives: the same dicts, in the same key order, the same bytes, the
same errors, for the golden vectors, every event and scope shape, malformed input,
and a few thousand random mutations of the vectors."""

import os
import random
from http import HTTPStatus

import msgpack
import pytest
from test_codec import (APP_ERRORS, EVENTS, MALFORMED, START_BODY_VECTORS, VECTORS,
                        read_vector)

from asgi_bridge import codec, wire
from asgi_bridge.__main__ import parse_args

needs_native = pytest.mark.skipif(wire._native is None,
                                  reason="asgi_bridge._native is not built (cmake --build)")


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def outcome(fn, *args):
    """What a call gives: its result (repr: with its key order and exact types) or its error."""
    try:
        result = fn(*args)
    except Exception as exc:
        return ("raises", type(exc), str(exc), getattr(exc, "kind", None),
                getattr(exc, "gateway", None), getattr(exc, "conn", None))
    return ("returns", result, repr(result))


def same_decode(data):
    assert outcome(wire._native_decode, data) == outcome(codec.decode, data)


def ev(event, **extra):
    return pack({"v": 1, "k": "event", "g": "gw-1", "c": 7, "s": 3, "event": event, **extra})


SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.5"},
         "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/ä",
         "raw_path": b"/%C3%A4", "query_string": b"a=1", "root_path": "",
         "headers": [[b"host", b"x"], [b"cookie", b"a\xff"]], "client": ["127.0.0.1", 5],
         "server": ["127.0.0.1", 80], "extensions": {"http.response.trailers": {}}}
WS_SCOPE = {**{k: v for k, v in SCOPE.items() if k != "method"}, "type": "websocket",
            "scheme": "ws", "subprotocols": ["chat"], "server": ["/run/gw.sock", None]}

# Shapes the gateway sends and variations around them, valid or not.
MESSAGES = [
    ev({"type": "http.request"}, scope=SCOPE, window=1 << 20),
    ev({"type": "websocket.connect"}, scope=WS_SCOPE),
    ev({"type": "http.request"}, scope={"type": "http", "method": "GET", "path": "/"}),
    ev({"type": "websocket.connect"}, scope={"type": "websocket", "path": "/ws"}),
    ev({"type": "http.request"}, scope={**SCOPE, "asgi": {"version": "2.0"}}),
    ev({"type": "http.request"}, scope={**SCOPE, "asgi": {"version": "3.0", "spec_version": "2.5",
                                                          "x": "y"}}),
    ev({"type": "http.request"}, scope={**SCOPE, "extensions": {"x": {"a": 1}}}),
    ev({"type": "http.request"}, scope={**SCOPE, "extensions": {"x": 1}}),
    ev({"type": "http.request"}, scope={**SCOPE, "unknown": 1}),
    ev({"type": "http.request"}, scope={**SCOPE, "subprotocols": ["x"]}),
    ev({"type": "http.request"}, scope={**SCOPE, "client": None, "server": None}),
    ev({"type": "http.request"}, scope={**SCOPE, "server": ["h", None]}),
    ev({"type": "http.request"}, scope={**SCOPE, "client": ["h", 65536]}),
    ev({"type": "http.request"}, scope={**SCOPE, "client": ["h", 1, 2]}),
    ev({"type": "http.request"}, scope={**SCOPE, "headers": [[b"a b", b"x"]]}),
    ev({"type": "http.request"}, scope={**SCOPE, "headers": [[b"a", b"x\ny"]]}),
    ev({"type": "http.request"}, scope={**SCOPE, "headers": [[b"a", b"x\x00"]]}),
    ev({"type": "http.request"}, scope={**SCOPE, "headers": [[b"a", "x"]]}),
    ev({"type": "http.request"}, scope={**SCOPE, "headers": {}}),
    ev({"type": "http.request"}, scope={**SCOPE, "path": None}),
    ev({"type": "http.request"}, scope={**SCOPE, "raw_path": None}),
    ev({"type": "http.request"}, scope={"path": "/", **SCOPE}),  # type not first
    ev({"type": "http.request"}, scope={**WS_SCOPE, "type": "http"}),  # no method
    ev({"type": "websocket.connect"}, scope={**WS_SCOPE, "method": "GET"}),
    ev({"type": "http.request", "body": b"x" * 70000, "more_body": True}),
    ev({"type": "http.request", "body": None}),
    ev({"type": "http.request", "extra": 1}),
    ev({"more_body": False, "type": "http.request"}),
    ev({"type": "http.disconnect"}),
    ev({"type": "websocket.receive", "text": "é" * 40}),
    ev({"type": "websocket.receive", "bytes": b"\x00" * 300}),
    ev({"type": "websocket.receive", "bytes": None, "text": "x"}),
    ev({"type": "websocket.receive", "bytes": b"", "text": None}),
    ev({"type": "websocket.receive", "bytes": None, "text": None}),
    ev({"type": "websocket.disconnect"}),
    ev({"type": "websocket.disconnect", "code": 4999, "reason": "r"}),
    ev({"type": "websocket.disconnect", "code": 5000}),
    ev({"type": "websocket.disconnect", "code": None}),
    ev({"type": "websocket.send", "text": "x"}),
    ev({"type": "http.response.body", "body": b"x"}),
    ev({"type": "http.request"}, c=2 ** 64 - 1, s=2 ** 32),
    ev({"type": "http.request"}, scope=SCOPE, window=1 << 20, features=1),
    ev({"type": "http.request"}, scope=SCOPE, features=2 ** 64 - 1),
    ev({"type": "http.request"}, scope=SCOPE, features=0),
    ev({"type": "http.request"}, features="1"),
    ev({"type": "http.response.start", "status": 200, "body": b"x", "more_body": True}),
    ev({"type": "http.request"}, g=""),
    ev({"type": "http.request"}, w="wk-1", x=1),
    pack({"v": 1, "k": "event", "g": "gw", "c": 1, "event": {"type": "http.request"}}),
    pack({"v": 1, "k": "gossip"}),
    pack({"k": "bye", "v": 1, "g": "gw-1"}),
    pack({"v": 1, "k": "credit", "g": "gw", "c": 1, "bytes": 5, "events": 0}),
    pack({"v": 1, "k": "credit", "g": "gw", "c": -1}),
    pack({"v": 1, "k": "error", "g": "gw", "c": 1, "message": "m"}),
    pack({"v": 1, "k": "heartbeat", "g": "gw"}) + b"\x00",
    pack({"v": 1, "k": "heartbeat", "g": b"gw"}),
    pack({"v": True, "k": "heartbeat", "g": "gw"}),
    b"\x83\xa1v\x01\xa1k\xa3bye\xa1k\xa3bye",  # a repeated key
    b"\x82\xa1v\x01\xa1k\xa3b\xffe",  # invalid UTF-8
    b"\x82\xa1v\xd0\x01\xa1k\xa3bye",  # v as an int8
    "not bytes",
] + [data for data, _ in MALFORMED]


@needs_native
@pytest.mark.parametrize("path", VECTORS, ids=[os.path.basename(p) for p in VECTORS])
def test_vector_decodes_the_same(path):
    with open(path, "rb") as f:
        same_decode(f.read())


@needs_native
@pytest.mark.parametrize("data", MESSAGES, ids=range(len(MESSAGES)))
def test_message_decodes_the_same(data):
    same_decode(data)


@needs_native
def test_native_takes_the_common_messages():
    """The shapes the gateway sends every request go the native way, not the fallback."""
    with open(os.path.join(os.path.dirname(VECTORS[0]), "event_http_request_first.msgpack"),
              "rb") as f:
        assert wire._native.decode(f.read()) is not None
    for data in MESSAGES[:4]:
        assert wire._native.decode(data) is not None


@needs_native
def test_native_takes_a_first_event_with_features():
    data = read_vector("event_http_request_first_features")
    assert wire._native.decode(data) == codec.decode(data)


@needs_native
@pytest.mark.parametrize("name,event", START_BODY_VECTORS, ids=[n for n, _ in START_BODY_VECTORS])
def test_a_start_with_its_body_encodes_natively_to_the_vector(name, event):
    data = read_vector(name)
    msg = codec.decode(data)
    assert wire._native.encode_event(msg["g"], msg["w"], msg["c"], msg["s"], event) == data


@needs_native
def test_mutated_vectors_decode_the_same():
    rng = random.Random(19)
    vectors = []
    for path in VECTORS:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) <= 4096:  # (the large ones: the same shapes, slower to compare)
            vectors.append(data)
    for data in vectors:
        for _ in range(150):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cut = rng.randrange(len(mutated) + 1) if rng.random() < 0.2 else len(mutated)
            same_decode(bytes(mutated[:cut]))


APP_EVENTS = EVENTS + [event for event, _ in APP_ERRORS] + [
    {"type": "http.response.start", "status": 200, "headers": ((b"a", b"1"), [b"b", b"2"])},
    {"type": "http.response.start", "status": HTTPStatus.OK},
    {"type": "http.response.start", "status": 200, "headers": None, "trailers": None},
    {"type": "http.response.start", "status": None},
    {"type": "http.response.start", "status": 200, "headers": [[bytearray(b"a"), b"1"]]},
    {"type": "http.response.start", "status": 200, "headers": [[b"a", b"1\r"]]},
    {"type": "http.response.start", "status": 200, "headers": [[b"a", b"1", b"2"]]},
    {"type": "http.response.start", "status": 2 ** 70},
    {"type": "http.response.start", "status": 200, "body": b"x", "more_body": True},
    {"type": "http.response.body"},
    {"type": "http.response.body", "body": None, "more_body": None, "extra": 1},
    {"type": "http.response.body", "body": bytearray(b"x")},
    {"type": "http.response.body", "body": memoryview(b"xy")},
    {"type": "http.response.body", "body": b"x", "more_body": 1},
    {"type": "websocket.send", "text": "x", "bytes": None},
    {"type": "websocket.send", "text": "\ud800"},
    {"type": "websocket.accept"},
    {"type": "websocket.accept", "subprotocol": None, "headers": [(b"x", b"y")]},
    {"type": "websocket.close"},
    {"type": "websocket.close", "code": 1005},
    {"type": "websocket.close", "code": True},
    {"type": "websocket.close", "reason": "x" * 123},
    {"type": "websocket.close", "reason": "x" * 124},
    {"type": "websocket.close", "reason": "é"},
    {"type": "asgi-bridge.subscribe", "channel": "news"},
    {"type": 5},
    None,
]


@needs_native
@pytest.mark.parametrize("event", APP_EVENTS, ids=range(len(APP_EVENTS)))
def test_app_event_is_checked_the_same(event):
    native, python = (outcome(wire._native_canonical_event, event),
                      outcome(codec.canonical_event, event))
    assert native == python
    if python[0] == "returns":  # and encodes to the same bytes, counts the same payload
        args = ("gw-1", "wk-1", 2 ** 40, 70000, python[1])
        assert outcome(wire._native_encode_event, *args) == outcome(codec.encode_event, *args)
        assert (outcome(wire._native_payload_size, python[1]) ==
                outcome(codec.payload_size, python[1]))


@needs_native
@pytest.mark.parametrize("event", [
    {"type": "websocket.send", "text": "a\udc80"}, {"type": "websocket.send", "text": "é€😀"},
    {"type": "websocket.send", "bytes": None, "text": "abc"},
    {"type": "websocket.send", "bytes": bytearray(b"ab")},
    {"type": "http.response.body", "body": memoryview(b"abcdef")[1:], "more_body": True},
    {"type": "websocket.http.response.body", "body": b"xyz", "more_body": False},
    {"type": "http.response.body", "body": "not bytes"}, {"type": "http.response.start"},
    {"type": 3}, {"type": "websocket.send"}])
def test_payload_is_counted_the_same(event):
    assert outcome(wire._native_payload_size, event) == outcome(codec.payload_size, event)


@needs_native
@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1,
                                   2 ** 32, 2 ** 63, 2 ** 64 - 1, 2 ** 64, -1, -32, -33, -128,
                                   -129, -32768, -32769, -2 ** 31, -2 ** 31 - 1])
def test_integers_encode_the_same(value):
    args = ("gw", "wk", value, 0, {"type": "websocket.send", "text": "é" * (value % 300)})
    assert outcome(wire._native_encode_event, *args) == outcome(codec.encode_event, *args)


@needs_native
@pytest.mark.parametrize("size", [0, 31, 32, 255, 256, 65535, 65536])
def test_sizes_encode_the_same(size):
    event = {"type": "http.response.body", "body": memoryview(b"b" * (size + 1))[1:],
             "more_body": False, "x": [None, "s" * size, True, (1,) * (size % 20)]}
    args = ("gw" * size, "wk", 1, 2, event)
    assert outcome(wire._native_encode_event, *args) == outcome(codec.encode_event, *args)


def test_select_switches_paths():
    native = wire.active
    try:
        assert wire.select(False) == "pure Python (--no-native)"
        assert wire.decode is codec.decode and wire.encode_event is codec.encode_event
        described = wire.select(True)
        assert described.startswith("native" if wire._native else "pure Python")
    finally:
        wire.select(native)


def test_no_native_option_and_environment(monkeypatch):
    monkeypatch.delenv("ASGI_BRIDGE_NO_NATIVE", raising=False)
    assert parse_args(["app:app", "--bus", "zmq://h:1"]).no_native is False
    assert parse_args(["app:app", "--bus", "zmq://h:1", "--no-native"]).no_native is True
    monkeypatch.setenv("ASGI_BRIDGE_NO_NATIVE", "1")
    assert parse_args(["app:app", "--bus", "zmq://h:1"]).no_native is True


@needs_native
def test_a_released_or_strided_memoryview_encodes_as_the_codec_does():
    released = memoryview(b"body")
    released.release()
    for body in (released, memoryview(b"abcdef")[::2]):
        args = ("gw", "wk", 1, 2, {"type": "http.response.body", "body": body,
                                   "more_body": False})
        native = outcome(wire._native_encode_event, *args)
        assert native == outcome(codec.encode_event, *args) and native[0] == "raises"


@needs_native
def test_a_large_payload_encodes_in_parts_that_join_to_the_codecs_bytes():
    body = os.urandom(40 * 1024)
    events = [
        {"type": "http.response.body", "body": body, "more_body": False},
        {"type": "http.response.body", "body": memoryview(body)[1:20000], "more_body": True},
        {"type": "websocket.send", "bytes": body, "text": None},
    ]
    for event in events:
        parts = wire._native_encode_event("gw", "wk", 1, 2, event, True)
        expected = codec.encode_event("gw", "wk", 1, 2, event)
        assert type(parts).__name__ == "Parts"
        assert parts.join() == expected and len(parts) == len(expected)
        head, payload, tail = parts.pieces
        assert payload is event.get("body", event.get("bytes"))  # the app's own: no copy
        assert head + bytes(payload) + tail == expected
        assert wire._native_encode_event("gw", "wk", 1, 2, event) == expected  # no parts


@needs_native
def test_only_a_large_immutable_payload_is_left_out_of_the_encoding():
    large = os.urandom(20 * 1024)
    kept_whole = [
        {"type": "http.response.body", "body": large[:16 * 1024 - 1], "more_body": False},
        # The app may change a bytearray after its send returns: copied at once.
        {"type": "http.response.body", "body": memoryview(bytearray(large)), "more_body": False},
        {"type": "websocket.send", "bytes": None, "text": "x" * 20000},
        {"type": "http.response.start", "status": 200, "headers": [(b"x-big", large)],
         "trailers": False},
    ]
    for event in kept_whole:
        data = wire._native_encode_event("gw", "wk", 1, 2, event, True)
        assert type(data) is bytes
        assert data == codec.encode_event("gw", "wk", 1, 2, event)
