// Fuzz target (d): a gateway's side of same-host shared memory
// (docs/protocol.md §1.1) against a hostile worker, who owns its ring's
// bytes, maps the gateway's ring, and sends transport frames at will. The
// input is a script of the worker's moves: scribble over its own ring's header
// and data, send a reference (to its ring, with any position and length) or
// any bytes as a frame, accept the gateway's ring, scribble over the gateway's
// tail, and have the gateway send a large message. Whatever the worker does,
// the gateway reads and writes nothing outside its mappings (ASan), hands on
// no message longer than its limit, and answers only with well-formed frames.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "zmq/ring_frame.hpp"
#include "zmq/same_host_rings.hpp"
#include "zmq/shared_ring.hpp"

using namespace asgi_bridge::bus;
using namespace asgi_bridge::bus::shm;

namespace {

constexpr std::uint64_t k_capacity = 64 * 1024;
constexpr std::size_t k_limit = 40 * 1024;  // the gateway's bus message limit
constexpr std::string_view k_worker = "wk-fuzz";

// A ring file of this process mapped a second time, as its other side (or a
// hostile one) sees it.
class RawMapping {
 public:
  RawMapping(std::uint32_t fd, std::uint64_t capacity) : size_(k_header_size + capacity) {
    int ours = ::open(fmt::format("/proc/self/fd/{}", fd).c_str(), O_RDWR | O_CLOEXEC);
    if (ours < 0) std::abort();
    base_ = static_cast<unsigned char*>(::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, ours, 0));
    ::close(ours);
    if (base_ == MAP_FAILED) std::abort();
  }
  RawMapping(const RawMapping&) = delete;
  RawMapping& operator=(const RawMapping&) = delete;
  ~RawMapping() { ::munmap(base_, size_); }
  // The header as its producer wrote it: put back before each input, so
  // that one input's scribbles do not decide the next one's.
  void save_header() { std::memcpy(header_, base_, sizeof header_); }
  void restore_header() { std::memcpy(base_, header_, sizeof header_); }
  void scribble(std::size_t offset, const std::uint8_t* data, std::size_t size) {
    offset %= size_;
    std::memcpy(base_ + offset, data, std::min(size, size_ - offset));
  }

 private:
  std::size_t size_;
  unsigned char* base_;
  unsigned char header_[k_header_size];
};

// Reads the script.
struct Script {
  const std::uint8_t* at;
  const std::uint8_t* end;
  template <typename T>
  T next() {
    T value = 0;
    for (std::size_t i = 0; i < sizeof(T) && at < end; ++i) value |= static_cast<T>(*at++) << (8 * i);
    return value;
  }
  std::size_t left() const { return static_cast<std::size_t>(end - at); }
};

struct World {
  ProducerRing worker_ring{k_capacity};  // the worker's ring, the gateway maps it
  RingFrame worker_offer = worker_ring.offer();
  RawMapping worker_bytes{worker_offer.fd, k_capacity};
  World() {
    spdlog::set_level(spdlog::level::off);
    worker_bytes.save_header();
  }
};

void check_answer(std::string_view frame) {
  auto parsed = parse_frame(frame);
  if (!parsed) std::abort();  // the gateway sent a malformed frame
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  world.worker_bytes.restore_header();
  std::optional<RingFrame> gateway_offer;
  SameHostRings gateway(Role::gateway, k_capacity, k_limit, nullptr,
                        [&](std::string_view, std::string_view frame) {
                          check_answer(frame);
                          auto parsed = parse_frame(frame);
                          if (parsed->type == FrameType::reference) gateway_offer = parsed;
                        });
  std::unique_ptr<RawMapping> gateway_bytes;
  Script script{data, data + size};
  std::string message(k_capacity, 'm');
  while (script.left() > 0) {
    switch (script.next<std::uint8_t>() % 6) {
      case 0: {  // the worker writes its own ring, header included
        auto offset = script.next<std::uint32_t>();
        auto length = std::min<std::size_t>(script.next<std::uint8_t>(), script.left());
        world.worker_bytes.scribble(offset, script.at, length);
        script.at += length;
        break;
      }
      case 1: {  // a reference into the worker's ring
        RingFrame reference = world.worker_offer;
        reference.position = script.next<std::uint64_t>();
        reference.length = script.next<std::uint32_t>();
        if (auto taken = gateway.receive(k_worker, view(encode_reference(reference)))) {
          if (taken->size() != reference.length || taken->size() > k_limit) std::abort();
        }
        break;
      }
      case 2: {  // any bytes as a transport frame (this process's pid only: no other's files)
        std::string frame(1, static_cast<char>(k_frame_marker));
        auto length = std::min<std::size_t>(script.next<std::uint8_t>(), script.left());
        frame.append(reinterpret_cast<const char*>(script.at), length);
        script.at += length;
        auto parsed = parse_frame(frame);
        if (parsed && parsed->type == FrameType::reference && parsed->pid != world.worker_offer.pid) break;
        if (auto taken = gateway.receive(k_worker, frame); taken && taken->size() > k_limit) std::abort();
        break;
      }
      case 3:  // the worker accepts the gateway's ring and maps it
        if (gateway_offer) {
          gateway.receive(k_worker, view(encode_answer(FrameType::accept, gateway_offer->token)));
          if (!gateway_bytes) gateway_bytes = std::make_unique<RawMapping>(gateway_offer->fd, gateway_offer->capacity);
        }
        break;
      case 4: {  // the worker writes the gateway's ring (its tail, or anything)
        auto offset = script.next<std::uint16_t>();
        auto length = std::min<std::size_t>(script.next<std::uint8_t>(), script.left());
        if (gateway_bytes) gateway_bytes->scribble(offset, script.at, length);
        script.at += length;
        break;
      }
      case 5: {  // the gateway sends a large message to the worker
        auto length = k_ring_min_message + script.next<std::uint16_t>() % (k_capacity - k_ring_min_message);
        if (auto reference = gateway.reference(k_worker, std::string_view(message).substr(0, length))) {
          auto parsed = parse_frame(view(*reference));
          if (!parsed || parsed->length != length) std::abort();
          gateway.sent_through(length);
        }
        break;
      }
    }
  }
  return 0;
}
