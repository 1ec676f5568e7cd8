#pragma once
// The ring of same-host shared memory (docs/protocol.md §1.1): a sealed
// memfd of a 4096-byte header and `capacity` bytes of messages, written by
// its producer, read by one consumer that maps it through /proc/PID/fd/FD.
// Positions count bytes from the ring's creation and never wrap; a message
// never straddles the ring's end. The consumer trusts nothing it reads from
// the file: every reference is checked against its own position, and a
// message is copied out before anyone decodes it.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "zmq/ring_frame.hpp"

namespace asgi_bridge::bus::shm {

inline constexpr std::uint64_t k_header_size = 4096;
inline constexpr std::uint64_t k_min_capacity = 64 * 1024;
inline constexpr std::uint64_t k_max_capacity = 64 * 1024 * 1024;

// 0 or a power of two within the bounds above (0: no ring).
bool valid_capacity(std::uint64_t capacity);

// A file descriptor and a shared mapping of the ring's whole file; closed and
// unmapped on destruction.
class RingFile {
 public:
  RingFile(int fd, std::uint64_t capacity);  // maps it; throws std::system_error
  RingFile(const RingFile&) = delete;
  RingFile& operator=(const RingFile&) = delete;
  ~RingFile();

  int fd() const { return fd_; }
  std::uint64_t capacity() const { return capacity_; }
  unsigned char* header() const { return base_; }
  unsigned char* at(std::uint64_t position) const { return base_ + k_header_size + (position & (capacity_ - 1)); }
  std::uint64_t load_tail() const;
  void store_tail(std::uint64_t tail);

 private:
  int fd_;
  std::uint64_t capacity_;
  unsigned char* base_ = nullptr;
};

// The producer's side: creates the ring, copies messages in.
class ProducerRing {
 public:
  // A new sealed memfd with a random token. Throws std::system_error.
  explicit ProducerRing(std::uint64_t capacity);

  enum class Write { written, full, broken };
  // Copies `message` in at a position the consumer has freed (written: the
  // R frame to send is in `reference`); full: no room now, send it over the
  // socket; broken: the consumer's tail is impossible, stop using the ring.
  // The message may come in pieces (a head, a body, a tail): it is their
  // concatenation, copied in piece by piece.
  Write write(std::span<const std::string_view> message, RingFrame& reference);
  Write write(std::string_view message, RingFrame& reference) { return write({&message, 1}, reference); }
  // The offer: an R of length 0.
  RingFrame offer() const;
  const Token& token() const { return token_; }

 private:
  RingFrame frame(std::uint64_t position, std::uint32_t length) const;

  Token token_;
  std::unique_ptr<RingFile> file_;
  std::uint32_t pid_;       // ours, in every frame: read once (a process never forks with a ring)
  std::uint64_t head_ = 0;  // the end of the last message written
};

// The consumer's side: the producer's ring, mapped, and our own position in it.
class ConsumerRing {
 public:
  // Opens and checks /proc/PID/fd/FD of the offer or reference; nullptr with
  // `error` set when it cannot be mapped (gone, not a sealed ring of that
  // size, another magic or token).
  static std::unique_ptr<ConsumerRing> map(const RingFrame& frame, std::string& error);

  // The message `reference` names, copied out into a buffer reused by the
  // next take (valid until then); empty with `error` set when the reference
  // is out of bounds (length over max_length, behind our position, beyond
  // the ring, straddling its end). Then our position moves past it and the
  // tail follows.
  std::string_view take(const RingFrame& reference, std::uint64_t max_length, std::string& error);
  // The same message in place, not copied (its bytes may still change if the
  // producer is hostile): our position moves past it, the tail stays until
  // give_back(), so an honest producer leaves those bytes alone until then.
  std::string_view lend(const RingFrame& reference, std::uint64_t max_length, std::string& error);
  void give_back() { file_->store_tail(position_); }
  const Token& token() const { return token_; }

 private:
  ConsumerRing(std::unique_ptr<RingFile> file, const Token& token);
  // Where the message `reference` names starts, once checked; null with `error` set.
  const unsigned char* find(const RingFrame& reference, std::uint64_t max_length, std::string& error) const;

  std::unique_ptr<RingFile> file_;
  Token token_;
  std::uint64_t position_;  // c: the end of the last message taken
  std::string buffer_;
};

}  // namespace asgi_bridge::bus::shm
