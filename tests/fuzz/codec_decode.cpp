// Fuzz target (a): the codec's decode() of arbitrary bytes, as the gateway
// runs it on every bus message. It must never crash, hang or throw; and what
// it accepts must survive encode() and decode() again unchanged (the
// canonical form of docs/protocol.md), or the two directions disagree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <variant>

#include "asgi_bridge/protocol/codec.hpp"

using namespace asgi_bridge::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto decoded = decode(std::string_view(reinterpret_cast<const char*>(data), size));
  const auto* envelope = std::get_if<Envelope>(&decoded);
  if (envelope == nullptr) return 0;
  auto again = decode(encode(*envelope));
  const auto* round_trip = std::get_if<Envelope>(&again);
  if (round_trip == nullptr || !(*round_trip == *envelope)) std::abort();  // encode/decode disagree
  return 0;
}
