#pragma once
// Same-host shared memory for the ZeroMQ transport (docs/protocol.md §1.1),
// per peer: the ring we write into (ours, offered, then accepted or refused)
// and the peer's ring we read from (mapped on its first reference). Bus
// thread only, like the transport that owns it.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "asgi_bridge/bus/log_limiter.hpp"
#include "asgi_bridge/bus/transport.hpp"
#include "bus_log.hpp"
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
  std::optional<ReferenceBytes> reference(std::string_view peer, std::span<const std::string_view> message);
  std::optional<ReferenceBytes> reference(std::string_view peer, std::string_view message) {
    return reference(peer, {&message, 1});
  }
  void sent_through(std::size_t bytes);
  // A transport frame from `peer`: the message an R names, or nothing (an
  // answer, an offer, a refused or bad reference: logged). The gateway gets a
  // copy out of the ring (valid until the next call): it decodes nothing a
  // worker can still write. A worker gets the ring's own bytes, in place
  // (its gateway is the one peer it trusts with what it runs): valid until
  // done_with_message(), which frees them for the gateway to reuse.
  std::optional<std::string_view> receive(std::string_view peer, std::string_view frame);
  void done_with_message();
  // The peer is gone: unmap its ring, drop ours.
  void forget(std::string_view peer);

 private:
  enum class Offer { none, offered, accepted, retired };

  struct Peer {
    std::unique_ptr<ProducerRing> producer;
    Offer offer = Offer::none;
    std::unique_ptr<ConsumerRing> consumer;
  };
  // Looked up by the string_view a message names its peer with, without a
  // std::string made per message.
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view name) const { return std::hash<std::string_view>{}(name); }
  };
  using Peers = std::unordered_map<std::string, Peer, NameHash, std::equal_to<>>;

  Peer& peer_state(std::string_view peer);

  void create_and_offer(std::string_view peer, Peer& state);
  void on_answer(std::string_view peer, Peer& state, const RingFrame& frame);
  std::optional<std::string_view> on_reference(std::string_view peer, Peer& state, const RingFrame& frame);
  bool map(std::string_view peer, Peer& state, const RingFrame& frame);
  template <typename... Args>
  void warn(std::string_view peer, fmt::format_string<Args...> format, Args&&... args) {
    LogLimiter::warn(bus_log(), limiter_, peer, format, std::forward<Args>(args)...);
  }
  std::string_view name(std::string_view peer) const;

  Role role_;
  std::uint64_t capacity_;
  std::uint64_t max_message_;
  SharedMemoryCounters own_counters_;
  SharedMemoryCounters& counters_;
  SendFrame send_frame_;
  Peers peers_;
  LogLimiter limiter_;  // per peer: a hostile one can send bad frames at will
  ConsumerRing* lent_ = nullptr;  // worker: the ring whose message is being read in place
};

}  // namespace asgi_bridge::bus::shm
