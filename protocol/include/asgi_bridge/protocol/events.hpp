#pragma once
// ASGI HTTP and WebSocket events (www spec 2.5, plus the websocket.http.response
// and http.response.trailers extensions) as plain values. Byte strings are
// std::string holding raw bytes; text fields hold UTF-8.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace asgi_bridge::protocol {

using Bytes = std::string;  // raw bytes: msgpack bin on the wire
using Text = std::string;   // UTF-8 text: msgpack str on the wire

struct Header {
  Bytes name;
  Bytes value;
  friend bool operator==(const Header&, const Header&) = default;
};
using Headers = std::vector<Header>;

// --- HTTP -----------------------------------------------------------------
struct HttpRequest {
  Bytes body;
  bool more_body = false;
  friend bool operator==(const HttpRequest&, const HttpRequest&) = default;
};
struct HttpResponseStart {
  int status = 200;
  Headers headers;
  bool trailers = false;
  // The first body in the start (docs/protocol.md §4.2, feature bit 1): the
  // message stands for this start followed by http.response.body {body,
  // more_body}. Only to a gateway that advertised the bit; more_body is
  // meaningless (and kept false) without a body.
  std::optional<Bytes> body;
  bool more_body = false;
  friend bool operator==(const HttpResponseStart&, const HttpResponseStart&) = default;
};
struct HttpResponseBody {
  Bytes body;
  bool more_body = false;
  friend bool operator==(const HttpResponseBody&, const HttpResponseBody&) = default;
};
struct HttpResponseTrailers {
  Headers headers;
  bool more_trailers = false;
  friend bool operator==(const HttpResponseTrailers&, const HttpResponseTrailers&) = default;
};
struct HttpDisconnect {
  friend bool operator==(const HttpDisconnect&, const HttpDisconnect&) = default;
};

// --- WebSocket ------------------------------------------------------------
struct WebSocketConnect {
  friend bool operator==(const WebSocketConnect&, const WebSocketConnect&) = default;
};
struct WebSocketAccept {
  std::optional<Text> subprotocol;
  Headers headers;
  friend bool operator==(const WebSocketAccept&, const WebSocketAccept&) = default;
};
// One whole message: `text` tells whether it travels as "text" (str) or
// "bytes" (bin); the spec's "exactly one of bytes/text" cannot be violated.
struct WebSocketMessage {
  std::string data;
  bool text = false;
  friend bool operator==(const WebSocketMessage&, const WebSocketMessage&) = default;
};
struct WebSocketReceive : WebSocketMessage {};
struct WebSocketSend : WebSocketMessage {};
struct WebSocketClose {
  int code = 1000;
  Text reason;
  friend bool operator==(const WebSocketClose&, const WebSocketClose&) = default;
};
struct WebSocketDisconnect {
  int code = 1005;
  Text reason;
  friend bool operator==(const WebSocketDisconnect&, const WebSocketDisconnect&) = default;
};
struct WebSocketHttpResponseStart {
  int status = 403;
  Headers headers;
  friend bool operator==(const WebSocketHttpResponseStart&,
                         const WebSocketHttpResponseStart&) = default;
};
struct WebSocketHttpResponseBody {
  Bytes body;
  bool more_body = false;
  friend bool operator==(const WebSocketHttpResponseBody&,
                         const WebSocketHttpResponseBody&) = default;
};

// --- the asgi-bridge.broadcast extension (docs/broadcast.md) ----------------
// The app subscribes its own WebSocket to a channel: the gateway then writes
// every publish to that channel to the socket, until the socket ends.
struct BroadcastSubscribe {
  Text channel;
  friend bool operator==(const BroadcastSubscribe&, const BroadcastSubscribe&) = default;
};
struct BroadcastUnsubscribe {
  Text channel;
  friend bool operator==(const BroadcastUnsubscribe&, const BroadcastUnsubscribe&) = default;
};

// Channel names (docs/protocol.md §4.3): 1 to 128 bytes of ASCII letters,
// digits and - _ . : / @ — safe in a Redis channel name, a URL query and a log line.
inline constexpr std::size_t k_max_channel_length = 128;
bool is_valid_channel(std::string_view channel);
// Well-formed UTF-8, as a text field must be.
bool is_valid_text(std::string_view text);

using Event = std::variant<HttpRequest, HttpResponseStart, HttpResponseBody,
                           HttpResponseTrailers, HttpDisconnect, WebSocketConnect,
                           WebSocketAccept, WebSocketReceive, WebSocketSend,
                           WebSocketClose, WebSocketDisconnect,
                           WebSocketHttpResponseStart, WebSocketHttpResponseBody,
                           BroadcastSubscribe, BroadcastUnsubscribe>;

// The ASGI "type" string of an event, e.g. "http.response.start".
std::string_view event_type(const Event& event);

// The payload bytes an event carries (a body chunk, a WebSocket message; 0
// for any other event): what the byte window counts (docs/protocol.md §5).
inline std::size_t payload_size(const Event& event) {
  return std::visit(
      [](const auto& e) -> std::size_t {
        if constexpr (requires { e.body.size(); }) return e.body.size();
        if constexpr (requires { e.body->size(); }) return e.body ? e.body->size() : 0;
        if constexpr (requires { e.data.size(); }) return e.data.size();
        return 0;
      },
      event);
}

// The event's payload field (its body or its message), if it has one.
inline Bytes* payload_of(Event& event) {
  return std::visit(
      [](auto& e) -> Bytes* {
        if constexpr (requires { e.body.size(); }) return &e.body;
        if constexpr (requires { e.body->size(); }) return e.body ? &*e.body : nullptr;
        if constexpr (requires { e.data.size(); }) return &e.data;
        return nullptr;
      },
      event);
}

}  // namespace asgi_bridge::protocol
