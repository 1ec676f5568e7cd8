#pragma once
// One bus message. Which fields a kind uses is documented in docs/protocol.md;
// absent optional fields are omitted on the wire.
#include <cstdint>
#include <optional>
#include <string>

#include "asgi_bridge/protocol/events.hpp"
#include "asgi_bridge/protocol/scope.hpp"

namespace asgi_bridge::protocol {

inline constexpr int k_protocol_version = 1;
// Flow control (docs/protocol.md §5): events a gateway keeps unacknowledged
// per connection, how many consumed events a worker acknowledges at once, and
// the default byte window a worker may send unacknowledged.
inline constexpr unsigned k_event_window = 16;
inline constexpr unsigned k_event_ack_batch = 8;
inline constexpr std::uint64_t k_default_byte_window = 1024 * 1024;

// Bits of the envelope's "features" (docs/protocol.md §2.3): the optional
// forms a gateway accepts, announced on the first event of every connection.
// An http.response.start may carry the first body (HttpResponseStart::body).
inline constexpr std::uint64_t k_feature_start_body = 1;
// A response body may go in pieces of a quarter of the byte window (body_piece).
inline constexpr std::uint64_t k_feature_large_pieces = 2;
// Every bit this gateway accepts.
inline constexpr std::uint64_t k_gateway_features = k_feature_start_body | k_feature_large_pieces;

// Large bodies (docs/protocol.md §5): a response body larger than a piece goes
// as several body events. Every gateway takes a piece of 60 KiB (with its
// envelope, within its smallest bus message limit); one that announces
// k_feature_large_pieces takes a quarter of the connection's byte window: the
// step in which it gives credit back, and at most a quarter more than the
// window waiting in the gateway for the client.
inline constexpr std::uint64_t k_body_piece = 60 * 1024;
constexpr std::uint64_t body_piece(std::uint64_t features, std::uint64_t window) {
  bool large = (features & k_feature_large_pieces) != 0 && window / 4 > k_body_piece;
  return large ? window / 4 : k_body_piece;
}
// The largest piece this gateway's windows allow: its bus takes that much.
inline constexpr std::uint64_t k_largest_body_piece = body_piece(k_gateway_features, k_default_byte_window);

enum class Kind {
  event,      // an ASGI event of one connection (either direction)
  ready,      // worker -> gateway: I serve, with this capacity
  heartbeat,  // both ways: I am alive (workers also report capacity/active)
  credit,     // flow control acknowledgement for one connection
  drain,      // worker -> gateway: send me no new connections
  bye,        // either side: I am leaving now
  error,      // one connection failed (app error, unknown connection)
  group,      // worker -> workers: a message for every member of a broadcast group
  publish,    // worker -> gateway (and gateway -> worker, to relay): a message for a broadcast channel
};

struct Envelope {
  int version = k_protocol_version;     // "v"
  Kind kind = Kind::event;              // "k"
  std::string gateway_id;               // "g" (sender or addressee gateway)
  std::string worker_id;                // "w" (sender or addressee worker)
  std::optional<std::uint64_t> conn_id; // "c"
  std::optional<std::uint64_t> seq;     // "s"
  std::optional<std::uint32_t> capacity;  // "capacity": ready/heartbeat from workers
  std::optional<std::uint32_t> active;    // "active": ready/heartbeat from workers
  // "ws_capacity": ready/heartbeat from workers that count WebSockets apart:
  // then `capacity` is for HTTP requests only (absent: one shared count).
  std::optional<std::uint32_t> ws_capacity;
  std::optional<std::uint64_t> window;    // "window": bytes a worker may send unacknowledged
  // "features": first event from a gateway, the k_feature_* bits it accepts
  // (0, the default, is left out on the wire; a gateway ignores it from a worker).
  std::uint64_t features = 0;
  std::optional<std::uint64_t> events;    // "events": credit, events consumed by the app
  std::optional<std::uint64_t> bytes;     // "bytes": credit, bytes written to the client
  std::optional<Text> message;            // "message": error text
  std::optional<Text> group;              // "group": kind == group, the group's name
  std::optional<Text> channel;            // "channel": kind == publish, the broadcast channel
  std::optional<Scope> scope;             // "scope": first event of a connection only
  std::optional<Event> event;             // "event": kind == event; kind == group or publish: its websocket.send
  friend bool operator==(const Envelope&, const Envelope&) = default;
};

std::string_view kind_name(Kind kind);
std::optional<Kind> kind_from_name(std::string_view name);

}  // namespace asgi_bridge::protocol
