#include "zmq/shared_ring.hpp"

#include "asgi_bridge/bus/transport.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace asgi_bridge::bus::shm {
namespace {

static_assert(std::endian::native == std::endian::little, "the ring's header is little-endian, read in place");

constexpr char k_magic[8] = {'A', 'B', 'R', 'I', 'N', 'G', '1', '\0'};
constexpr std::size_t k_token_offset = 8;
constexpr std::size_t k_capacity_offset = 24;
constexpr std::size_t k_tail_offset = 64;

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

// Owns a descriptor until a RingFile takes it.
struct Descriptor {
  int fd;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

std::uint64_t file_size(std::uint64_t capacity) { return k_header_size + capacity; }

}  // namespace

bool valid_capacity(std::uint64_t capacity) {
  return capacity == 0 || (std::has_single_bit(capacity) && capacity >= k_min_capacity && capacity <= k_max_capacity);
}

}  // namespace asgi_bridge::bus::shm

namespace asgi_bridge::bus {

std::string shared_memory_problem(std::string_view bytes) {
  std::uint64_t value = 0;
  auto end = bytes.data() + bytes.size();
  auto [at, error] = std::from_chars(bytes.data(), end, value);
  if (error == std::errc() && at == end && !bytes.empty() && shm::valid_capacity(value)) return {};
  return fmt::format("expected 0 (no ring) or a power of two from {} to {} bytes, got '{}'", shm::k_min_capacity,
                     shm::k_max_capacity, bytes);
}

}  // namespace asgi_bridge::bus

namespace asgi_bridge::bus::shm {

RingFile::RingFile(int fd, std::uint64_t capacity) : fd_(fd), capacity_(capacity) {
  void* base = ::mmap(nullptr, file_size(capacity), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int error = errno;
    ::close(fd);
    throw std::system_error(error, std::generic_category(), "mmap");
  }
  base_ = static_cast<unsigned char*>(base);
}

RingFile::~RingFile() {
  ::munmap(base_, file_size(capacity_));
  ::close(fd_);
}

// Written by the consumer only after its copy is complete (release), read by
// the producer before it overwrites anything (acquire).
std::uint64_t RingFile::load_tail() const {
  return __atomic_load_n(reinterpret_cast<std::uint64_t*>(base_ + k_tail_offset), __ATOMIC_ACQUIRE);
}

void RingFile::store_tail(std::uint64_t tail) {
  __atomic_store_n(reinterpret_cast<std::uint64_t*>(base_ + k_tail_offset), tail, __ATOMIC_RELEASE);
}

// --- producer ----------------------------------------------------------------

ProducerRing::ProducerRing(std::uint64_t capacity) : pid_(static_cast<std::uint32_t>(::getpid())) {
  if (capacity == 0 || !valid_capacity(capacity)) throw std::invalid_argument("ring capacity out of bounds");
  if (::getrandom(token_.data(), token_.size(), 0) != static_cast<ssize_t>(token_.size())) throw_errno("getrandom");
  Descriptor fd{::memfd_create("asgi-bridge-ring", MFD_ALLOW_SEALING | MFD_CLOEXEC)};
  if (fd.fd < 0) throw_errno("memfd_create");
  if (::fchmod(fd.fd, 0600) != 0) throw_errno("fchmod");
  if (::ftruncate(fd.fd, static_cast<off_t>(file_size(capacity))) != 0) throw_errno("ftruncate");
  // Neither side may truncate the file under the other's mapping (SIGBUS).
  if (::fcntl(fd.fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) throw_errno("F_ADD_SEALS");
  file_ = std::make_unique<RingFile>(fd.release(), capacity);
  auto* header = file_->header();
  std::memcpy(header, k_magic, sizeof k_magic);
  std::memcpy(header + k_token_offset, token_.data(), token_.size());
  std::memcpy(header + k_capacity_offset, &capacity, sizeof capacity);
}

RingFrame ProducerRing::frame(std::uint64_t position, std::uint32_t length) const {
  RingFrame frame;
  frame.pid = pid_;
  frame.fd = static_cast<std::uint32_t>(file_->fd());
  frame.token = token_;
  frame.capacity = file_->capacity();
  frame.position = position;
  frame.length = length;
  return frame;
}

RingFrame ProducerRing::offer() const { return frame(head_, 0); }

ProducerRing::Write ProducerRing::write(std::span<const std::string_view> message, RingFrame& reference) {
  auto capacity = file_->capacity();
  auto tail = file_->load_tail();
  if (tail > head_ || head_ - tail > capacity) return Write::broken;
  std::uint64_t size = 0;
  for (auto piece : message) size += piece.size();
  if (size > capacity) return Write::full;
  auto position = head_;
  auto offset = position & (capacity - 1);
  if (offset + size > capacity) position += capacity - offset;  // never across the end
  if (position + size - tail > capacity) return Write::full;
  auto* at = file_->at(position);
  for (auto piece : message) at = static_cast<unsigned char*>(std::memcpy(at, piece.data(), piece.size())) + piece.size();
  head_ = position + size;
  reference = frame(position, static_cast<std::uint32_t>(size));
  return Write::written;
}

// --- consumer ----------------------------------------------------------------

ConsumerRing::ConsumerRing(std::unique_ptr<RingFile> file, const Token& token)
    : file_(std::move(file)), token_(token), position_(file_->load_tail()) {}

std::unique_ptr<ConsumerRing> ConsumerRing::map(const RingFrame& frame, std::string& error) {
  if (frame.capacity == 0 || !valid_capacity(frame.capacity)) {
    error = fmt::format("capacity {} out of bounds", frame.capacity);
    return nullptr;
  }
  auto path = fmt::format("/proc/{}/fd/{}", frame.pid, frame.fd);
  // Looked at through O_PATH first (the flags of docs/protocol.md §1.1 come
  // after): a device or FIFO the peer points at is never really opened, as
  // an open alone can have effects on a device.
  Descriptor place{::open(path.c_str(), O_PATH | O_CLOEXEC)};
  struct stat status {};
  if (place.fd < 0) {
    error = fmt::format("cannot open {}: {}", path, std::strerror(errno));
    return nullptr;
  }
  if (::fstat(place.fd, &status) != 0 || !S_ISREG(status.st_mode)) {
    error = path + " is not a regular file";
    return nullptr;
  }
  // Reopened through our own O_PATH descriptor: the very file we looked at,
  // whatever the peer has put at its descriptor number since.
  auto ours = fmt::format("/proc/self/fd/{}", place.fd);
  Descriptor fd{::open(ours.c_str(), O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)};
  if (fd.fd < 0) {
    error = fmt::format("cannot open {}: {}", path, std::strerror(errno));
    return nullptr;
  }
  int seals = ::fcntl(fd.fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
    error = path + " is not sealed against shrinking";
    return nullptr;
  }
  // The size once sealed: from now on it cannot shrink under our mapping.
  if (::fstat(fd.fd, &status) != 0 || static_cast<std::uint64_t>(status.st_size) != file_size(frame.capacity)) {
    error = fmt::format("{} has {} bytes, not 4096 + {}", path, status.st_size, frame.capacity);
    return nullptr;
  }
  std::unique_ptr<RingFile> file;
  try {
    file = std::make_unique<RingFile>(fd.release(), frame.capacity);
  } catch (const std::system_error& e) {
    error = fmt::format("cannot map {}: {}", path, e.what());
    return nullptr;
  }
  const auto* header = file->header();
  std::uint64_t capacity = 0;
  std::memcpy(&capacity, header + k_capacity_offset, sizeof capacity);
  if (std::memcmp(header, k_magic, sizeof k_magic) != 0 || capacity != frame.capacity) {
    error = path + " is not a ring of that capacity (magic or capacity)";
    return nullptr;
  }
  if (std::memcmp(header + k_token_offset, frame.token.data(), frame.token.size()) != 0) {
    error = path + " holds another ring (token)";
    return nullptr;
  }
  return std::unique_ptr<ConsumerRing>(new ConsumerRing(std::move(file), frame.token));
}

// Checked against our own position, never against the shared tail, which the
// producer could write.
const unsigned char* ConsumerRing::find(const RingFrame& reference, std::uint64_t max_length,
                                        std::string& error) const {
  auto capacity = file_->capacity();
  auto p = reference.position;
  auto length = reference.length;
  if (length > max_length) {
    error = fmt::format("length {} over the limit {}", length, max_length);
  } else if (p < position_) {
    error = fmt::format("position {} behind ours {}", p, position_);
  } else if (p - position_ >= capacity) {
    error = fmt::format("position {} a ring or more ahead of ours {}", p, position_);
  } else if ((p & (capacity - 1)) + length > capacity) {
    error = fmt::format("{} bytes at {} cross the ring's end", length, p);
  } else {
    return file_->at(p);
  }
  return nullptr;
}

std::string_view ConsumerRing::take(const RingFrame& reference, std::uint64_t max_length, std::string& error) {
  const auto* at = find(reference, max_length, error);
  if (at == nullptr) return {};
  buffer_.assign(reinterpret_cast<const char*>(at), reference.length);
  position_ = reference.position + reference.length;
  file_->store_tail(position_);
  return buffer_;
}

std::string_view ConsumerRing::lend(const RingFrame& reference, std::uint64_t max_length, std::string& error) {
  const auto* at = find(reference, max_length, error);
  if (at == nullptr) return {};
  position_ = reference.position + reference.length;
  return {reinterpret_cast<const char*>(at), reference.length};
}

}  // namespace asgi_bridge::bus::shm
