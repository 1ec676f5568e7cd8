#pragma once
// Same-host shared memory for the ZeroMQ transport (docs/protocol.md §1.1),
// per peer: the ring we write into (ours, offered, then accepted or refused)
// and the peer's ring we read from (mapped on its first reference). Bus
// thread only, like the transport that owns it.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "asgi_bridge/bus/transport.hpp"
#include "zmq/ring_frame.hpp"
#include "zmq/shared_ring.hpp"

namespace asgi_bridge::bus::shm {

// Smaller messages go over the socket: ZeroMQ's copy costs less than a
// reference frame plus two copies.
inline constexpr std::size_t k_ring_min_message = 16 * 1024;

class SameHostRings {
 public:
  // Sends a transport frame (an A, an X or an offer) to `peer` over the socket.
  using SendFrame = std::function<void(std::string_view peer, std::string_view frame)>;

  // capacity: of the rings we create (0: none). max_message: the longest
  // message we take from a peer's ring (0: no limit but the ring's).
  SameHostRings(Role role, std::uint64_t capacity, std::size_t max_message, SharedMemoryCounters* counters,
                SendFrame send_frame);

  // Worker: creates its ring for the gateway behind `peer` and offers it.
  void offer(std::string_view peer);
  // A message of k_ring_min_message bytes or more for `peer`: copied into our
  // ring if the peer accepted it and it has room; then the R frame to send
  // in its place (and sent_through() once it is sent).
  std::optional<ReferenceBytes> reference(std::string_view peer, std::string_view message);
  void sent_through(std::size_t bytes);
  // A transport frame from `peer`: the message an R names, copied out of the
  // ring (valid until the next call), or nothing (an answer, an offer, a
  // refused or bad reference: logged).
  std::optional<std::string_view> receive(std::string_view peer, std::string_view frame);
  // The peer is gone: unmap its ring, drop ours.
  void forget(std::string_view peer);

 private:
  enum class Offer { none, offered, accepted, retired };

  // At most k_burst warnings per peer per window, then a count.
  struct WarningBudget {
    std::chrono::steady_clock::time_point window_start{};
    unsigned passed = 0;
    std::uint64_t suppressed = 0;
  };

  struct Peer {
    std::unique_ptr<ProducerRing> producer;
    Offer offer = Offer::none;
    std::unique_ptr<ConsumerRing> consumer;
    WarningBudget warnings;
  };

  void create_and_offer(std::string_view peer, Peer& state);
  void on_answer(std::string_view peer, Peer& state, const RingFrame& frame);
  std::optional<std::string_view> on_reference(std::string_view peer, Peer& state, const RingFrame& frame);
  bool map(std::string_view peer, Peer& state, const RingFrame& frame);
  void warn(std::string_view peer, Peer& state, const std::string& line);
  std::string_view name(std::string_view peer) const;

  Role role_;
  std::uint64_t capacity_;
  std::uint64_t max_message_;
  SharedMemoryCounters own_counters_;
  SharedMemoryCounters& counters_;
  SendFrame send_frame_;
  std::unordered_map<std::string, Peer> peers_;
};

}  // namespace asgi_bridge::bus::shm
