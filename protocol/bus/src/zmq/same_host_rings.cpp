#include "zmq/same_host_rings.hpp"

#include <limits>
#include <utility>

namespace asgi_bridge::bus::shm {
namespace {

void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // one writer
}

}  // namespace

SameHostRings::SameHostRings(Role role, std::uint64_t capacity, std::size_t max_message,
                             SharedMemoryCounters* counters, SendFrame send_frame)
    : role_(role), capacity_(capacity),
      max_message_(max_message == 0 ? std::numeric_limits<std::uint64_t>::max() : max_message),
      counters_(counters ? *counters : own_counters_), send_frame_(std::move(send_frame)) {}

std::string_view SameHostRings::name(std::string_view peer) const {
  return role_ == Role::gateway ? peer : std::string_view("the gateway");
}

void SameHostRings::offer(std::string_view peer) {
  auto& state = peer_state(peer);
  if (capacity_ > 0 && state.offer == Offer::none) create_and_offer(peer, state);
}

void SameHostRings::create_and_offer(std::string_view peer, Peer& state) {
  try {
    state.producer = std::make_unique<ProducerRing>(capacity_);
  } catch (const std::exception& e) {
    state.offer = Offer::retired;  // not again for this peer: everything goes over the socket
    bus_log().warn("bus: no shared-memory ring for {}: {}", name(peer), e.what());
    return;
  }
  state.offer = Offer::offered;
  send_frame_(peer, view(encode_reference(state.producer->offer())));
}

std::optional<ReferenceBytes> SameHostRings::reference(std::string_view peer,
                                                       std::span<const std::string_view> message) {
  auto found = peers_.find(peer);
  if (found == peers_.end() || found->second.offer != Offer::accepted) return std::nullopt;
  auto& state = found->second;
  RingFrame frame;
  switch (state.producer->write(message, frame)) {
    case ProducerRing::Write::written: return encode_reference(frame);
    case ProducerRing::Write::full: return std::nullopt;
    case ProducerRing::Write::broken: break;
  }
  state.offer = Offer::retired;
  state.producer.reset();
  bus_log().warn("bus: {} broke our shared-memory ring (impossible tail): it is no longer used", name(peer));
  return std::nullopt;
}

void SameHostRings::sent_through(std::size_t bytes) {
  add(counters_.sent_messages, 1);
  add(counters_.sent_bytes, bytes);
}

std::optional<std::string_view> SameHostRings::receive(std::string_view peer, std::string_view bytes) {
  auto frame = parse_frame(bytes);
  auto& state = peer_state(peer);
  if (!frame) {
    warn(peer, "bus: malformed shared-memory frame ({} bytes) from {}", bytes.size(), name(peer));
    return std::nullopt;
  }
  if (frame->type == FrameType::reference) return on_reference(peer, state, *frame);
  on_answer(peer, state, *frame);
  return std::nullopt;
}

// An A or an X for a ring that is not our current one is old news: ignored.
void SameHostRings::on_answer(std::string_view peer, Peer& state, const RingFrame& frame) {
  if (!state.producer || state.producer->token() != frame.token || state.offer != Offer::offered) return;
  if (frame.type == FrameType::accept) {
    state.offer = Offer::accepted;
    bus_log().info("bus: {} accepted our shared-memory ring", name(peer));
  } else {
    state.offer = Offer::retired;
    state.producer.reset();
    bus_log().info("bus: {} refused our shared-memory ring: large messages go over the socket", name(peer));
  }
}

std::optional<std::string_view> SameHostRings::on_reference(std::string_view peer, Peer& state,
                                                            const RingFrame& frame) {
  bool mapped = state.consumer && state.consumer->token() == frame.token;
  if (!mapped && !map(peer, state, frame)) {
    return std::nullopt;  // a message it named is lost: its connection fails on the sequence gap
  }
  if (frame.length == 0) return std::nullopt;  // an offer
  std::string error;
  std::string_view message;
  if (role_ == Role::worker) {
    message = state.consumer->lend(frame, max_message_, error);
    if (error.empty()) lent_ = state.consumer.get();
  } else {
    message = state.consumer->take(frame, max_message_, error);
  }
  if (!error.empty()) {
    warn(peer, "bus: bad shared-memory reference from {} dropped: {}", name(peer), error);
    return std::nullopt;
  }
  add(counters_.received_messages, 1);
  add(counters_.received_bytes, message.size());
  return message;
}

// Maps the peer's newest ring (replacing the one before) and answers A; a
// gateway then offers its own ring to that worker. X when it cannot.
bool SameHostRings::map(std::string_view peer, Peer& state, const RingFrame& frame) {
  std::string error;
  auto ring = ConsumerRing::map(frame, error);
  if (!ring) {
    warn(peer, "bus: cannot map the shared-memory ring of {}: {}", name(peer), error);
    send_frame_(peer, view(encode_answer(FrameType::refuse, frame.token)));
    return false;
  }
  state.consumer = std::move(ring);
  bus_log().info("bus: mapped the shared-memory ring of {} ({} bytes)", name(peer), frame.capacity);
  send_frame_(peer, view(encode_answer(FrameType::accept, frame.token)));
  if (role_ == Role::gateway && capacity_ > 0 && state.offer == Offer::none) create_and_offer(peer, state);
  return true;
}

SameHostRings::Peer& SameHostRings::peer_state(std::string_view peer) {
  auto found = peers_.find(peer);
  return found != peers_.end() ? found->second : peers_[std::string(peer)];
}

void SameHostRings::done_with_message() {
  if (lent_ != nullptr) std::exchange(lent_, nullptr)->give_back();
}

void SameHostRings::forget(std::string_view peer) {
  auto found = peers_.find(peer);
  if (found == peers_.end()) return;
  if (found->second.consumer.get() == lent_) lent_ = nullptr;
  peers_.erase(found);
}

}  // namespace asgi_bridge::bus::shm
