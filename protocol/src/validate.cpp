#include "validate.hpp"

#include <cstddef>
#include <cstring>

namespace asgi_bridge::protocol::detail {
namespace {

constexpr std::uint64_t k_high_bits = 0x8080808080808080ULL;

// Length of the sequence a lead byte starts, and the bits it contributes;
// 0 for a byte that cannot start a sequence.
struct Lead {
  std::size_t continuation_bytes;
  std::uint32_t bits;
  std::uint32_t minimum;  // smallest code point that needs this length
};
constexpr Lead lead_of(unsigned char c) {
  if ((c & 0xE0) == 0xC0) return {1, c & 0x1Fu, 0x80};
  if ((c & 0xF0) == 0xE0) return {2, c & 0x0Fu, 0x800};
  if ((c & 0xF8) == 0xF0) return {3, c & 0x07u, 0x10000};
  return {0, 0, 0};
}

}  // namespace

bool is_valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    if (end - p >= 8) {  // ASCII fast path, 8 bytes at a time
      std::uint64_t word;
      std::memcpy(&word, p, sizeof word);
      if ((word & k_high_bits) == 0) {
        p += 8;
        continue;
      }
    }
    if (*p < 0x80) {
      ++p;
      continue;
    }
    Lead lead = lead_of(*p);
    if (lead.continuation_bytes == 0 ||
        static_cast<std::size_t>(end - p) <= lead.continuation_bytes) {
      return false;
    }
    std::uint32_t code_point = lead.bits;
    for (std::size_t i = 1; i <= lead.continuation_bytes; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (p[i] & 0x3Fu);
    }
    if (code_point < lead.minimum || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    p += lead.continuation_bytes + 1;
  }
  return true;
}

bool is_valid_close_code(std::uint64_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

}  // namespace asgi_bridge::protocol::detail
