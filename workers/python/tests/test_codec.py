"""The codec against docs/protocol.md: golden vectors, round trips, malformed input."""

import glob
import os

import msgpack
import pytest

from asgi_bridge import codec
from asgi_bridge.errors import InvalidEvent, ProtocolError

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
VECTORS = sorted(glob.glob(os.path.join(REPO, "tests", "vectors", "**", "*.msgpack"),
                           recursive=True))


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


# --- golden vectors (written by the C++ encoder) -----------------------------------

def test_vectors_exist():
    if not VECTORS:
        pytest.skip("tests/vectors/ has no *.msgpack golden vectors yet")


@pytest.mark.parametrize("path", VECTORS, ids=[os.path.basename(p) for p in VECTORS])
def test_vector_round_trip(path):
    # tests/vectors/README.md: every file decodes, and re-encodes to the very same bytes.
    with open(path, "rb") as f:
        data = f.read()
    decoded = codec.decode(data)
    assert codec.encode(decoded) == data, f"re-encoding {path} changed its bytes"


def read_vector(name):
    with open(os.path.join(REPO, "tests", "vectors", name + ".msgpack"), "rb") as f:
        return f.read()


# A response's start and first body in one message (§4.2), and the gateway's `features`
# bit that allows it: what the three vectors of the form hold.
START_BODY = {"type": "http.response.start", "status": 200,
              "headers": [[b"content-type", b"text/plain"]], "trailers": False,
              "body": b"Hello, world!", "more_body": False}
START_BODY_VECTORS = [
    ("event_http_response_start_body", START_BODY),
    ("event_http_response_start_body_more", dict(START_BODY, more_body=True)),
]


@pytest.mark.parametrize("name,event", START_BODY_VECTORS, ids=[n for n, _ in START_BODY_VECTORS])
def test_start_body_vectors(name, event):
    data = read_vector(name)
    decoded = codec.decode(data)
    assert decoded["event"] == event
    assert list(decoded["event"]) == list(event)  # body and more_body after trailers
    assert codec.encode(decoded) == data
    # the worker's hot path writes the same bytes for the same canonical event
    assert codec.encode_event(decoded["g"], decoded["w"], decoded["c"], decoded["s"],
                              event) == data


def test_first_event_features_vector():
    data = read_vector("event_http_request_first_features")
    decoded = codec.decode(data)
    assert decoded["features"] == codec.FEATURE_START_BODY
    assert list(decoded).index("features") == list(decoded).index("window") + 1
    without = codec.decode(read_vector("event_http_request_first"))
    assert "features" not in without
    assert {k: v for k, v in decoded.items() if k != "features"} == without
    assert codec.encode(decoded) == data


# --- canonical bytes -----------------------------------------------------------------

def test_canonical_bytes_of_a_gateway_heartbeat():
    assert codec.encode({"k": "heartbeat", "g": "gw-1"}) == (
        b"\x83\xa1v\x01\xa1k\xa9heartbeat\xa1g\xa4gw-1")


def test_envelope_keys_in_table_order_whatever_the_input_order():
    env = {"event": {"more_body": True, "body": b"x", "type": "http.response.body"},
           "s": 3, "c": 7, "w": "wk-1", "g": "gw-1", "k": "event"}
    assert list(msgpack.unpackb(codec.encode(env))) == ["v", "k", "g", "w", "c", "s", "event"]
    event = msgpack.unpackb(codec.encode(env))["event"]
    assert list(event) == ["type", "body", "more_body"]


def test_absent_keys_are_left_out_not_nil():
    data = codec.encode({"k": "credit", "g": "gw", "w": "wk", "c": 1, "events": 8,
                         "bytes": None})
    assert msgpack.unpackb(data) == {"v": 1, "k": "credit", "g": "gw", "w": "wk", "c": 1,
                                     "events": 8}


def test_defaults_filled_in_events():
    data = codec.encode({"k": "event", "g": "g", "w": "w", "c": 1, "s": 0,
                         "event": {"type": "websocket.accept"}})
    assert msgpack.unpackb(data)["event"] == {"type": "websocket.accept", "subprotocol": None,
                                              "headers": []}


def test_integers_use_the_shortest_encoding():
    data = codec.encode({"k": "credit", "g": "g", "c": 1, "bytes": 200})
    assert data.endswith(b"\xa5bytes\xcc\xc8")


def test_app_event_normalised():
    # tuples, bytearray, an IntEnum status, extra keys, None for defaults
    from http import HTTPStatus
    event = codec.canonical_event({
        "type": "http.response.start", "extra": 1, "trailers": None,
        "headers": ((b"a", bytearray(b"1")), [b"b", b"2"]), "status": HTTPStatus.OK})
    assert event == {"type": "http.response.start", "status": 200,
                     "headers": [[b"a", b"1"], [b"b", b"2"]], "trailers": False}
    assert type(event["status"]) is int
    assert codec.canonical_event({"type": "websocket.send", "bytes": None, "text": "t"}) == {
        "type": "websocket.send", "text": "t"}


# --- round trips of every event type -----------------------------------------------------

EVENTS = [
    {"type": "http.request", "body": b"hello", "more_body": True},
    {"type": "http.disconnect"},
    {"type": "http.response.start", "status": 204, "headers": [[b"x-a", b"1"], [b"x-a", b"2"]],
     "trailers": True},
    {"type": "http.response.body", "body": b"\x00" * 300, "more_body": False},
    {"type": "http.response.trailers", "headers": [[b"grpc-status", b"0"]],
     "more_trailers": False},
    {"type": "websocket.connect"},
    {"type": "websocket.accept", "subprotocol": "chat", "headers": [[b"set-cookie", b"a=b"]]},
    {"type": "websocket.receive", "text": "héllo"},
    {"type": "websocket.receive", "bytes": b"\x01\x02"},
    {"type": "websocket.send", "text": ""},
    {"type": "websocket.send", "bytes": b""},
    {"type": "websocket.close", "code": 4001, "reason": "bye"},
    {"type": "websocket.disconnect", "code": 1006, "reason": ""},
    {"type": "websocket.http.response.start", "status": 403, "headers": []},
    {"type": "websocket.http.response.body", "body": b"no", "more_body": False},
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e["type"])
def test_event_round_trip(event):
    env = {"v": 1, "k": "event", "g": "gw-3f9a0c1e", "w": "wk-7c21d0aa", "c": 2 ** 40,
           "s": 70000, "event": event}
    data = codec.encode(env)
    decoded = codec.decode(data)
    assert decoded == env
    assert codec.encode(decoded) == data


def test_features_zero_is_left_out_and_unknown_bits_kept():
    env = {"k": "event", "g": "gw-1", "c": 0, "s": 0, "window": 10,
           "scope": {"type": "http", "method": "GET", "path": "/"},
           "event": {"type": "http.request"}}
    assert codec.encode(dict(env, features=0)) == codec.encode(env)
    data = codec.encode(dict(env, features=5))
    assert list(msgpack.unpackb(data))[-4:] == ["window", "features", "scope", "event"]
    assert codec.decode(data)["features"] == 5


def test_a_start_body_round_trips_and_more_body_without_body_is_ignored():
    env = {"v": 1, "k": "event", "g": "gw-1", "w": "wk-1", "c": 1, "s": 0}
    data = codec.encode(dict(env, event={"type": "http.response.start", "status": 200,
                                         "body": b"x"}))
    assert codec.decode(data)["event"] == {"type": "http.response.start", "status": 200,
                                           "headers": [], "trailers": False, "body": b"x",
                                           "more_body": False}
    lone = codec.decode(ev({"type": "http.response.start", "status": 200, "more_body": True}))
    assert lone["event"] == {"type": "http.response.start", "status": 200, "headers": [],
                             "trailers": False}


def test_an_apps_start_keeps_no_body():
    # ASGI has no body in a start: an app's stray key is dropped like any unknown key,
    # so that only the worker joins a body to a start (and only for a gateway that asked).
    assert codec.canonical_event({"type": "http.response.start", "status": 200,
                                  "body": b"x", "more_body": True}) == {
        "type": "http.response.start", "status": 200, "headers": [], "trailers": False}


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
def test_first_event_with_scope_round_trip(scope_type):
    scope = {
        "type": scope_type, "asgi": {"version": "3.0", "spec_version": "2.5"},
        "http_version": "1.1", "method": "POST", "scheme": "https", "path": "/ä b",
        "raw_path": b"/%C3%A4%20b", "query_string": b"x=1&y=%20", "root_path": "/api",
        "headers": [[b"host", b"example.com"], [b"cookie", b"a"], [b"cookie", b"b"]],
        "client": ["127.0.0.1", 50123], "server": ["/run/gw.sock", None],
        "subprotocols": ["chat", "v2"], "extensions": {"websocket.http.response": {}},
    }
    if scope_type == "http":
        del scope["subprotocols"]
        scope["extensions"] = {"http.response.trailers": {}}
    else:
        del scope["method"]
    first = {"type": "http.request"} if scope_type == "http" else {"type": "websocket.connect"}
    env = {"k": "event", "g": "gw-1", "c": 0, "s": 0, "window": 1 << 20, "scope": scope,
           "event": first}
    data = codec.encode(env)
    decoded = codec.decode(data)
    assert list(decoded["scope"]) == list(scope)
    assert decoded["scope"] == scope
    assert codec.encode(decoded) == data


def test_scope_defaults():
    data = pack({"v": 1, "k": "event", "g": "g", "c": 1, "s": 0,
                 "scope": {"type": "websocket", "path": "/ws"},
                 "event": {"type": "websocket.connect"}})
    scope = codec.decode(data)["scope"]
    assert scope == {"type": "websocket", "asgi": {"version": "3.0", "spec_version": "2.5"},
                     "http_version": "1.1", "scheme": "ws", "path": "/ws", "raw_path": b"/ws",
                     "query_string": b"", "root_path": "", "headers": [], "client": None,
                     "server": None, "subprotocols": [], "extensions": {}}


@pytest.mark.parametrize("env", [
    {"k": "ready", "w": "wk-1", "capacity": 100, "active": 0},
    {"k": "heartbeat", "w": "wk-1", "capacity": 100, "active": 3},
    {"k": "heartbeat", "g": "gw-1"},
    {"k": "credit", "g": "gw-1", "w": "wk-1", "c": 9, "events": 8},
    {"k": "credit", "g": "gw-1", "c": 9, "bytes": 262144},
    {"k": "drain", "w": "wk-1"},
    {"k": "bye", "g": "gw-1"},
    {"k": "bye", "w": "wk-1"},
    {"k": "error", "g": "gw-1", "w": "wk-1", "c": 9, "message": "ValueError: boom"},
    {"k": "error", "g": "gw-1", "c": 9, "message": "unknown connection"},
], ids=lambda e: e["k"])
def test_control_round_trip(env):
    data = codec.encode(env)
    assert codec.decode(data) == {"v": 1, **env}
    assert codec.encode(codec.decode(data)) == data


def test_decoder_accepts_any_key_order_unknown_keys_and_nil_other_key():
    data = pack({"event": {"text": "hi", "bytes": None, "future": 1, "type": "websocket.receive"},
                 "s": 1, "c": 2, "g": "gw", "k": "event", "v": 1, "zzz": [1, 2]})
    assert codec.decode(data) == {"v": 1, "k": "event", "g": "gw", "c": 2, "s": 1,
                                  "event": {"type": "websocket.receive", "text": "hi"}}


def test_decoder_fills_event_defaults():
    data = pack({"v": 1, "k": "event", "g": "gw", "c": 2, "s": 1,
                 "event": {"type": "websocket.disconnect"}})
    assert codec.decode(data)["event"] == {"type": "websocket.disconnect", "code": 1005,
                                           "reason": ""}


def test_unknown_kind_is_returned_for_the_caller_to_ignore():
    msg = codec.decode(pack({"v": 1, "k": "gossip", "x": 1}))
    assert msg["k"] == "gossip" and msg["k"] not in codec.KINDS


# --- malformed input ------------------------------------------------------------------------

def ev(event, **extra):
    return pack({"v": 1, "k": "event", "g": "gw", "c": 1, "s": 0, "event": event, **extra})


def with_scope(**fields):
    scope = {"type": "http", "method": "GET", "path": "/", **fields}
    return ev({"type": "http.request"}, scope=scope)


def bad_utf8_text():
    data = ev({"type": "websocket.receive", "text": "AAAA"})
    return data.replace(b"\xa4AAAA", b"\xa4\xff\xfe\xfd\xfc")


MALFORMED = [
    (b"", "message: not valid msgpack"),
    (b"\xc1", "message: not valid msgpack"),
    (pack([1, 2]), "message: expected a map at the top, got list"),
    (pack({"v": 1, "k": "bye", "g": "gw"}) + b"\x00", "message: trailing bytes after the map"),
    (pack({1: 1}), "map key"),
    (pack({b"v": 1, "k": "bye"}), "message: map key b'v' is not a str"),
    (pack({"k": "bye"}), "v: missing"),
    (pack({"v": 2, "k": "bye"}), "v: unsupported protocol version 2"),
    (pack({"v": "1", "k": "bye"}), "v: unsupported protocol version '1'"),
    (pack({"v": 1}), "k: missing"),
    (pack({"v": 1, "k": 5}), "k: expected str, got int"),
    (pack({"v": 1, "k": "bye", "g": ""}), "g: empty id"),
    (pack({"v": 1, "k": "credit", "g": "gw", "c": -1}), "c: -1 is negative"),
    (pack({"v": 1, "k": "credit", "g": "gw", "c": 1, "bytes": "10"}), "bytes: expected int, got str"),
    (pack({"v": 1, "k": "event", "g": "gw", "s": 0, "event": {"type": "http.disconnect"}}),
     "c: missing (required in an event message)"),
    (pack({"v": 1, "k": "event", "g": "gw", "c": 0, "event": {"type": "http.disconnect"}}),
     "s: missing (required in an event message)"),
    (pack({"v": 1, "k": "event", "g": "gw", "c": 0, "s": 0}),
     "event: missing (required in an event message)"),
    (ev({"body": b""}), "event.type: missing"),
    (ev({"type": "http.response.pathsend"}), "event.type: unknown event type 'http.response.pathsend'"),
    (ev([1]), "event: expected a dict/map, got list"),
    (ev({"type": "http.request", "body": "text"}), "event.body: expected bytes, got str"),
    (ev({"type": "websocket.receive", "bytes": "x"}), "event.bytes: expected bytes, got str"),
    (ev({"type": "websocket.receive", "text": b"x"}), "event.text: expected str, got bytes"),
    (ev({"type": "http.request", "more_body": 1}), "event.more_body: expected bool, got int"),
    (ev({"type": "http.response.start", "status": 200, "body": "x"}),
     "event.body: expected bytes, got str"),
    (ev({"type": "http.response.start", "status": 200, "body": b"x", "more_body": None}),
     "event.more_body: expected bool, got nil"),
    (ev({"type": "http.response.start", "status": 200, "more_body": 0}),
     "event.more_body: expected bool, got int"),
    (pack({"v": 1, "k": "event", "g": "gw", "c": 1, "s": 0, "features": -1,
           "event": {"type": "http.request"}}), "features: -1 is negative"),
    (pack({"v": 1, "k": "event", "g": "gw", "c": 1, "s": 0, "features": True,
           "event": {"type": "http.request"}}), "features: expected int, got bool"),
    (ev({"type": "http.response.start"}), "event.status: missing (required in http.response.start)"),
    (ev({"type": "http.response.start", "status": 1000}), "event.status: 1000 out of range 100..599"),
    (ev({"type": "http.response.start", "status": True}), "event.status: expected int, got bool"),
    (ev({"type": "http.response.start", "status": 200, "headers": [[b"a"]]}),
     "event.headers[0]: expected a [name, value] pair of bytes"),
    (ev({"type": "http.response.start", "status": 200, "headers": [["host", b"x"]]}),
     "event.headers[0]: header name must be bytes, got str"),
    (ev({"type": "http.response.start", "status": 200, "headers": [[b"a", b"1"], [b"a b", b"x"]]}),
     "event.headers[1]: header name b'a b' is not an RFC 9110 token"),
    (ev({"type": "http.response.start", "status": 200, "headers": [[b"", b"x"]]}),
     "event.headers[0]: header name b'' is not an RFC 9110 token"),
    (ev({"type": "http.response.start", "status": 200, "headers": [[b"a", b"x\r\nb: y"]]}),
     "event.headers[0]: header value contains CR, LF or NUL"),
    (ev({"type": "websocket.close", "code": 1005}), "event.code: 1005 is not a valid close code"),
    (ev({"type": "websocket.close", "code": 2999}), "event.code: 2999 is not a valid close code"),
    (ev({"type": "websocket.close", "reason": "é" * 62}), "event.reason: longer than 123 bytes"),
    (ev({"type": "websocket.disconnect", "code": 999}), "event.code: 999 out of range 1000..4999"),
    (ev({"type": "websocket.receive"}), "needs exactly one of 'bytes' and 'text'"),
    (ev({"type": "websocket.send", "bytes": b"a", "text": "a"}),
     "needs exactly one of 'bytes' and 'text'"),
    (ev({"type": "websocket.accept", "subprotocol": 1}), "event.subprotocol: expected str, got int"),
    (bad_utf8_text(), "event.text: not valid UTF-8"),
    (with_scope(type="lifespan"), "scope.type: expected 'http' or 'websocket', got 'lifespan'"),
    (with_scope(client=["1.2.3.4", 70000]), "scope.client[1]: port 70000 out of range 0..65535"),
    (with_scope(client=["1.2.3.4", None]), "scope.client[1]: expected int, got nil"),
    (with_scope(query_string="a=1"), "scope.query_string: expected bytes, got str"),
    (with_scope(headers=[[b"host", "example.com"]]),
     "scope.headers[0]: header value must be bytes, got str"),
    (with_scope(method=None), "scope.method: expected str, got nil"),
    (pack({"v": 1, "k": "event", "g": "gw", "c": 1, "s": 0, "event": {"type": "http.request"},
           "scope": {"type": "http", "path": "/"}}),
     "scope.method: missing (required in a http scope)"),
]


@pytest.mark.parametrize("data,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_rejected_naming_the_field(data, message):
    with pytest.raises(ProtocolError) as info:
        codec.decode(data)
    assert message in str(info.value)


def test_protocol_error_carries_what_could_be_read():
    with pytest.raises(ProtocolError) as info:
        codec.decode(ev({"type": "http.request", "body": "text"}))
    assert (info.value.kind, info.value.gateway, info.value.conn) == ("event", "gw", 1)
    with pytest.raises(ProtocolError) as info:  # invalid UTF-8 fails before the envelope is read
        codec.decode(bad_utf8_text())
    assert (info.value.kind, info.value.gateway, info.value.conn) == ("event", "gw", 1)


# --- what an app may pass to send() ------------------------------------------------------------

APP_ERRORS = [
    ({"type": "http.response.start", "status": "200"}, "event.status: expected int, got str"),
    ({"type": "http.response.start", "status": 200, "headers": [("content-type", b"x")]},
     "event.headers[0]: header name must be bytes, got str"),
    ({"type": "http.response.start", "status": 200, "headers": {b"a": b"b"}},
     "event.headers: expected an array of [name, value] pairs, got dict"),
    ({"type": "http.response.body", "body": "text"}, "event.body: expected bytes, got str"),
    ({"type": "websocket.send"}, "needs exactly one of 'bytes' and 'text'"),
    ({"type": "websocket.close", "reason": 5}, "event.reason: expected str, got int"),
    ({"type": "nope"}, "event.type: unknown event type 'nope'"),
    ({"status": 200}, "event.type: missing"),
    ("http.response.start", "event: expected a dict/map, got str"),
]


@pytest.mark.parametrize("event,message", APP_ERRORS, ids=[m for _, m in APP_ERRORS])
def test_app_event_errors_are_type_and_value_errors(event, message):
    with pytest.raises(InvalidEvent) as info:
        codec.canonical_event(event)
    assert message in str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_encode_refuses_invalid_app_event():
    with pytest.raises(InvalidEvent):
        codec.encode({"k": "event", "g": "g", "w": "w", "c": 1, "s": 0,
                      "event": {"type": "http.response.start", "status": 99}})


def test_group_message_round_trips_and_is_checked():
    msg = {"v": 1, "k": "group", "w": "wk-1", "s": 0, "group": "lobby",
           "event": {"type": "websocket.send", "bytes": b"\x00"}}
    data = codec.encode(msg)
    assert list(msgpack.unpackb(data)) == ["v", "k", "w", "s", "group", "event"]
    assert codec.decode(data) == msg
    for key in ("w", "s", "group"):
        broken = {k: v for k, v in msg.items() if k != key}
        with pytest.raises(ProtocolError, match=f"{key}: missing"):
            codec.decode(pack(broken))
    with pytest.raises(ProtocolError, match="websocket.send"):
        codec.decode(pack({**msg, "event": {"type": "websocket.close"}}))
