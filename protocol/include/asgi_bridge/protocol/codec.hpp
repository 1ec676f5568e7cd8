#pragma once
// The msgpack codec: the only place in C++ that knows the wire format.
#include <string>
#include <string_view>
#include <variant>

#include "asgi_bridge/protocol/envelope.hpp"

namespace asgi_bridge::protocol {

struct DecodeError {
  std::string message;  // what was wrong, naming the field, e.g. "event.status: 1000 out of range 100..599"
  bool unknown_kind = false;  // a well-formed message of a kind this version does not know: ignore it
};

template <typename T>
using Result = std::variant<T, DecodeError>;

// Encodes in the canonical form of docs/protocol.md (fixed key order, absent
// optionals omitted), so both languages produce identical bytes.
std::string encode(const Envelope& envelope);

// Validates while decoding: wrong types, missing required fields, values out
// of range and trailing bytes are errors; unknown keys are ignored. Never throws.
Result<Envelope> decode(std::string_view bytes);

}  // namespace asgi_bridge::protocol
