#pragma once
// The two decoders behind decode() (codec.hpp). The fast one reads the msgpack
// bytes straight into the Envelope, without msgpack-c's object tree, for the
// shapes the bus carries all the time; for anything else it declines and the
// full decoder runs, which alone words the errors. Exposed here for the parity
// tests and the fuzz target, which check that the two never disagree.
#include <string_view>

#include "asgi_bridge/protocol/codec.hpp"

namespace asgi_bridge::protocol::detail {

// True when `bytes` is a valid message of a shape the fast path knows: then
// `out` (a default-constructed Envelope) holds exactly what full_decode()
// returns for the same bytes. False otherwise, `out` then being unspecified:
// a message in another shape, or one that is invalid in any way. Never throws.
bool fast_decode(std::string_view bytes, Envelope& out) noexcept;

// The full decoder (codec.cpp): msgpack-c's object tree, then the envelope
// read from it with every check and its error message.
Result<Envelope> full_decode(std::string_view bytes);

// encode() without its fast path for event envelopes (codec.cpp): every
// message through msgpack-c's packer, for the parity test of that path.
std::string full_encode(const Envelope& envelope);

}  // namespace asgi_bridge::protocol::detail
