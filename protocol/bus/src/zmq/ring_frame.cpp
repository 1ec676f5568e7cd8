#include "zmq/ring_frame.hpp"

#include <cstring>

namespace asgi_bridge::bus::shm {
namespace {

// Little-endian whatever the host (the wire's order, docs/protocol.md §1.1).
template <typename T>
void put(char*& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) *out++ = static_cast<char>((value >> (8 * i)) & 0xFF);
}

template <typename T>
T get(const char*& in) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(static_cast<unsigned char>(*in++)) << (8 * i);
  return value;
}

void put_token(char*& out, const Token& token) {
  std::memcpy(out, token.data(), token.size());
  out += token.size();
}

Token get_token(const char*& in) {
  Token token;
  std::memcpy(token.data(), in, token.size());
  in += token.size();
  return token;
}

}  // namespace

std::optional<RingFrame> parse_frame(std::string_view frame) {
  if (frame.size() < 2 || !is_transport_frame(frame)) return std::nullopt;
  RingFrame parsed;
  const char* in = frame.data() + 2;
  switch (static_cast<FrameType>(frame[1])) {
    case FrameType::reference:
      if (frame.size() != k_reference_size) return std::nullopt;
      parsed.pid = get<std::uint32_t>(in);
      parsed.fd = get<std::uint32_t>(in);
      parsed.token = get_token(in);
      parsed.capacity = get<std::uint64_t>(in);
      parsed.position = get<std::uint64_t>(in);
      parsed.length = get<std::uint32_t>(in);
      return parsed;
    case FrameType::accept:
    case FrameType::refuse:
      if (frame.size() != k_token_frame_size) return std::nullopt;
      parsed.type = static_cast<FrameType>(frame[1]);
      parsed.token = get_token(in);
      return parsed;
  }
  return std::nullopt;
}

ReferenceBytes encode_reference(const RingFrame& frame) {
  ReferenceBytes bytes;
  char* out = bytes.data();
  put(out, k_frame_marker);
  put(out, static_cast<unsigned char>(FrameType::reference));
  put(out, frame.pid);
  put(out, frame.fd);
  put_token(out, frame.token);
  put(out, frame.capacity);
  put(out, frame.position);
  put(out, frame.length);
  return bytes;
}

TokenFrameBytes encode_answer(FrameType type, const Token& token) {
  TokenFrameBytes bytes;
  char* out = bytes.data();
  put(out, k_frame_marker);
  put(out, static_cast<unsigned char>(type));
  put_token(out, token);
  return bytes;
}

}  // namespace asgi_bridge::bus::shm
