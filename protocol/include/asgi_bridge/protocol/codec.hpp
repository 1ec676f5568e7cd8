#pragma once
// The msgpack codec: the only place in C++ that knows the wire format.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "asgi_bridge/protocol/envelope.hpp"

namespace asgi_bridge::protocol {

struct DecodeError {
  std::string message;  // what was wrong, naming the field, e.g. "event.status: 1000 out of range 100..599"
  bool unknown_kind = false;  // a well-formed message of a kind this version does not know: ignore it
  std::optional<std::uint64_t> conn_id;  // "c", when it could be read before the error: the
                                         // connection the malformed message belongs to (§4.3)
};

template <typename T>
using Result = std::variant<T, DecodeError>;

// Encodes in the canonical form of docs/protocol.md (fixed key order, absent
// optionals omitted, empty gateway/worker ids omitted, event and scope fields
// always written), so both languages produce identical bytes. Does not
// validate: decode() does. Throws std::length_error for a field over 4 GiB.
std::string encode(const Envelope& envelope);

// encode()'s bytes in three parts, head + body + tail, the event's payload
// (a request's or a response's body, a WebSocket message) moved out of the
// envelope instead of copied into the encoding: for a transport that copies
// the message anyway, into a shared-memory ring, so that the payload is
// copied once, not twice. A payload under k_split_min stays in `head`.
inline constexpr std::size_t k_split_min = 16 * 1024;
struct SplitEncoding {
  std::string head;
  Bytes body;
  std::string tail;
};
SplitEncoding encode_split(Envelope&& envelope);

// The bytes encode() writes for a websocket.receive event envelope, built
// without an Envelope, an Event or a copy of the payload: the gateway's path
// for every client message. `gateway_id` must not be empty.
std::string encode_websocket_receive(const std::string& gateway_id, std::uint64_t conn_id, std::uint64_t seq,
                                     bool text, std::string_view data);

// Validates while decoding: wrong types, missing required fields, values out
// of range and trailing bytes are errors; unknown keys are ignored. Never throws.
// Str and bin fields are copied out of `bytes` once, into the result's strings.
// Limits: nesting 16 levels, 65536 elements per array or map.
Result<Envelope> decode(std::string_view bytes);

}  // namespace asgi_bridge::protocol
