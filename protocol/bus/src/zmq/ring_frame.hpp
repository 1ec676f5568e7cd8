#pragma once
// The transport frames of same-host shared memory (docs/protocol.md §1.1): a
// ZeroMQ frame whose first byte is 0xC1, a byte msgpack never uses, is not a
// message but a reference into a ring (R), or the answer to an offer (A, X).
// Integers little-endian.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace asgi_bridge::bus::shm {

inline constexpr unsigned char k_frame_marker = 0xC1;
inline constexpr std::size_t k_reference_size = 46;
inline constexpr std::size_t k_token_frame_size = 18;

using Token = std::array<unsigned char, 16>;

enum class FrameType : unsigned char { reference = 'R', accept = 'A', refuse = 'X' };

// R: "the next message is the `length` bytes at `position` of ring `token`"
// (length 0: an offer, "map this ring"). A and X carry the token only.
struct RingFrame {
  FrameType type = FrameType::reference;
  std::uint32_t pid = 0;
  std::uint32_t fd = 0;
  Token token{};
  std::uint64_t capacity = 0;
  std::uint64_t position = 0;
  std::uint32_t length = 0;
};

inline bool is_transport_frame(std::string_view frame) {
  return !frame.empty() && static_cast<unsigned char>(frame[0]) == k_frame_marker;
}

// nullopt: not a transport frame, an unknown type or the wrong size.
std::optional<RingFrame> parse_frame(std::string_view frame);

using ReferenceBytes = std::array<char, k_reference_size>;
using TokenFrameBytes = std::array<char, k_token_frame_size>;

ReferenceBytes encode_reference(const RingFrame& frame);
// An A or an X for `token`.
TokenFrameBytes encode_answer(FrameType type, const Token& token);

inline std::string_view view(const ReferenceBytes& bytes) { return {bytes.data(), bytes.size()}; }
inline std::string_view view(const TokenFrameBytes& bytes) { return {bytes.data(), bytes.size()}; }

}  // namespace asgi_bridge::bus::shm
