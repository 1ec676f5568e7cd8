#pragma once
// The HTTP grammar of header names and values (RFC 9110 §5.5, §5.6.2), shared
// by the gateway's request-head and response checks, the codec and the C++
// worker SDK so that they cannot disagree on what a token or a value is.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace asgi_bridge::protocol::http {

namespace detail {

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
// "_" / "`" / "|" / "~" / DIGIT / ALPHA
constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) table[static_cast<unsigned char>(c)] = true;
  return table;
}

// field-value bytes: VCHAR, obs-text (0x80-0xFF), SP and HTAB; never NUL, CR,
// LF, DEL or another control character.
constexpr std::array<bool, 256> make_field_value_table() {
  std::array<bool, 256> table{};
  for (int c = 0x20; c < 0x100; ++c) table[c] = c != 0x7F;
  table['\t'] = true;
  return table;
}

}  // namespace detail

inline constexpr std::array<bool, 256> k_tchar = detail::make_tchar_table();
inline constexpr std::array<bool, 256> k_field_value_byte = detail::make_field_value_table();

constexpr bool is_tchar(char c) { return k_tchar[static_cast<unsigned char>(c)]; }

// token = 1*tchar: a header name, a method, a transfer coding.
constexpr bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

constexpr bool is_field_value_byte(char c) { return k_field_value_byte[static_cast<unsigned char>(c)]; }

// OWS = *( SP / HTAB ), around a field value and between list elements.
constexpr bool is_ows(char c) { return c == ' ' || c == '\t'; }

constexpr std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Field names and codings compare case-insensitively, in ASCII (RFC 9110 §5.1).
constexpr bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

// A whole field value of RFC 9110 §5.5 (empty is allowed). Values are most of
// a request head's bytes: eight at a time while none is below 0x20 or DEL (the
// word test never misses one); the byte loop decides from the first word that
// may hold one, HTAB being allowed.
inline bool is_field_value(std::string_view value) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= value.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, value.data() + i, sizeof word);
    std::uint64_t below_space = (word - ones * 0x20) & ~word & highs;
    std::uint64_t del = word ^ (ones * 0x7F);
    del = (del - ones) & ~del & highs;
    if ((below_space | del) != 0) break;
  }
  return std::all_of(value.begin() + static_cast<std::ptrdiff_t>(i), value.end(), is_field_value_byte);
}

// The looser rule of the bus (docs/protocol.md §4.3): a value that cannot
// split a message, i.e. no CR, LF or NUL. Three memchr scans (vectorised by
// libc) beat one find_first_of, which tests each byte against each of the three.
inline bool is_safe_field_value(std::string_view value) {
  if (value.empty()) return true;
  for (int c : {'\r', '\n', '\0'}) {
    if (std::memchr(value.data(), c, value.size()) != nullptr) return false;
  }
  return true;
}

}  // namespace asgi_bridge::protocol::http
