// Fuzz target (a): the codec's decode() of arbitrary bytes, as the gateway
// runs it on every bus message. It must never crash, hang or throw; what it
// accepts must survive encode() and decode() again unchanged (the canonical
// form of docs/protocol.md), or the two directions disagree; and whatever its
// fast path accepts, the full decoder must accept with an equal result
// (protocol/src/fast_decode.hpp); and encode_split()'s parts, joined, must be
// encode()'s bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <variant>

#include "asgi_bridge/protocol/codec.hpp"
#include "fast_decode.hpp"

using namespace asgi_bridge::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = detail::full_decode(bytes);
  const auto* envelope = std::get_if<Envelope>(&decoded);
  Envelope fast;
  if (detail::fast_decode(bytes, fast) && (envelope == nullptr || !(fast == *envelope))) {
    std::abort();  // the fast path took what the full decoder rejects, or read it differently
  }
  if (envelope == nullptr) return 0;
  auto bytes_again = encode(*envelope);
  auto again = decode(bytes_again);
  const auto* round_trip = std::get_if<Envelope>(&again);
  if (round_trip == nullptr || !(*round_trip == *envelope)) std::abort();  // encode/decode disagree
  auto split = encode_split(Envelope(*envelope));
  if (split.head + split.body + split.tail != bytes_again) std::abort();  // the parts are not the message
  return 0;
}
