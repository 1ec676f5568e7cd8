#include "zmq/zmq_transport.hpp"

#include "zmq/again_on_eintr.hpp"

#include <sched.h>

#include <cstring>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include <boost/asio/post.hpp>

namespace asgi_bridge::bus {
namespace {

constexpr int k_high_water_mark = 100000;  // messages; credits bound what is really queued

zmq::socket_type socket_type_for(Role role) {
  return role == Role::gateway ? zmq::socket_type::router : zmq::socket_type::dealer;
}

// ZeroMQ's I/O thread runs as SCHED_BATCH, so that its wake-ups do not
// preempt the thread that feeds it: on a shared CPU (one core, containers
// with a CPU quota, the benchmark's pinning) each message handed to ZeroMQ
// would otherwise switch to the I/O thread at once and leave in a TCP write
// of its own; as SCHED_BATCH it runs when our thread waits and writes what
// has queued together. Only from SCHED_OTHER, which a process may always
// leave for SCHED_BATCH: libzmq aborts if the change fails.
zmq::context_t make_context() {
  zmq::context_t context(1);
  if (sched_getscheduler(0) == SCHED_OTHER) {
    zmq_ctx_set(context.handle(), ZMQ_THREAD_SCHED_POLICY, SCHED_BATCH);
  }
  return context;
}

}  // namespace

ZmqTransport::ZmqTransport(boost::asio::io_context& io, const std::string& endpoint,
                           const TransportOptions& options)
    : io_(io), role_(options.role), context_(make_context()), socket_(context_, socket_type_for(options.role)),
      rings_(options.role, options.shared_memory, options.max_message_size, options.shared_memory_counters,
             [this](std::string_view peer, std::string_view frame) {
               zmq::message_t message(frame.data(), frame.size());
               send_message(peer, message);
             }),
      readable_(io) {
  if (!shm::valid_capacity(options.shared_memory)) {
    throw std::invalid_argument("shared memory ring capacity must be 0 or a power of two from 65536 to 67108864");
  }
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::sndhwm, k_high_water_mark);
  socket_.set(zmq::sockopt::rcvhwm, k_high_water_mark);
  if (options.max_message_size > 0) {
    socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options.max_message_size));
  }
  // A worker is watched with or without CURVE: a gateway that requires CURVE
  // refuses a plain worker with a protocol error, after which libzmq gives up.
  if (options.curve.enabled() || role_ == Role::worker) {
    security_ = std::make_unique<ZmqSecurity>(io, context_, socket_, endpoint, options);
  }
  try {
    if (role_ == Role::gateway) {
      socket_.set(zmq::sockopt::router_mandatory, 1);  // unknown peer: an error, not a silent drop
      socket_.bind(endpoint);
      open_monitor(fmt::format("inproc://asgi-bridge-monitor-{}", static_cast<const void*>(this)));
    } else {
      socket_.set(zmq::sockopt::routing_id, options.identity);
      socket_.set(zmq::sockopt::reconnect_ivl, 100);
      socket_.set(zmq::sockopt::reconnect_ivl_max, 2000);
      socket_.connect(endpoint);
    }
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot " + std::string(role_ == Role::gateway ? "bind " : "connect ") +
                             endpoint + ": " + e.what());
  }
  // The descriptor belongs to ZeroMQ: released, never closed, in stop().
  readable_.assign(socket_.get(zmq::sockopt::fd));
}

ZmqTransport::~ZmqTransport() { stop(); }

void ZmqTransport::start(OnMessage on_message) {
  on_message_ = std::move(on_message);
  if (role_ == Role::worker) rings_.offer({});  // queued by the DEALER until connected
  schedule_drain();
  // The monitor is read before each batch of messages (drain()) and whenever
  // it signals; the first read arms that wait (CURVE's handshake events come
  // before any message).
  boost::asio::post(io_, [this, alive = alive_] {
    if (*alive) drain_monitor();
  });
}

SendStatus ZmqTransport::send(std::string_view peer, std::string_view payload) {
  if (auto status = send_through_ring(peer, {&payload, 1})) return *status;
  zmq::message_t message(payload.data(), payload.size());
  return send_message(peer, message);
}

// Below this size ZeroMQ's own copy is cheaper than a zero-copy message (which
// costs ZeroMQ an allocation of its own plus ours for the string).
constexpr std::size_t k_zero_copy_min = 8 * 1024;

SendStatus ZmqTransport::send_owned(std::string_view peer, std::string&& payload) {
  if (payload.size() < k_zero_copy_min) return send(peer, payload);
  std::string_view whole = payload;
  if (auto status = send_through_ring(peer, {&whole, 1})) return *status;
  return send_over_socket(peer, std::move(payload));
}

// Through the ring, each part is copied straight in; over the socket, the
// parts are joined (the copy the encoder would have made).
SendStatus ZmqTransport::send_parts(std::string_view peer, MessageParts&& parts) {
  if (parts.size() < k_zero_copy_min) return send(peer, std::move(parts).joined());
  const std::string_view pieces[] = {parts.head, parts.body, parts.tail};
  if (auto status = send_through_ring(peer, pieces)) return *status;
  return send_over_socket(peer, std::move(parts).joined());
}

// A 64 KiB request body is not copied a second time into ZeroMQ's memory: the
// message points into the string, which ZeroMQ's I/O thread frees once sent.
SendStatus ZmqTransport::send_over_socket(std::string_view peer, std::string&& payload) {
  auto* owned = new std::string(std::move(payload));
  zmq::message_t message(
      owned->data(), owned->size(), [](void*, void* hint) { delete static_cast<std::string*>(hint); }, owned);
  return send_message(peer, message);
}

std::optional<SendStatus> ZmqTransport::send_through_ring(std::string_view peer,
                                                          std::span<const std::string_view> payload) {
  std::size_t size = 0;
  for (auto piece : payload) size += piece.size();
  if (size < shm::k_ring_min_message || stopped_) return std::nullopt;
  auto reference = rings_.reference(ring_peer(peer), payload);
  if (!reference) return std::nullopt;
  zmq::message_t message(reference->data(), reference->size());
  auto status = send_message(peer, message);
  if (status == SendStatus::sent) rings_.sent_through(size);
  return status;
}

SendStatus ZmqTransport::send_message(std::string_view peer, zmq::message_t& message) {
  if (stopped_) return SendStatus::failed;
  try {
    if (role_ == Role::gateway) {
      if (security_ && !security_->may_send(peer)) return SendStatus::peer_unknown;  // revoked worker
      auto sent = again_on_eintr([&] {
        return socket_.send(zmq::buffer(peer.data(), peer.size()), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      });
      if (!sent) return SendStatus::would_block;
    }
    auto sent = again_on_eintr([&] { return socket_.send(message, zmq::send_flags::dontwait); });
    // A send may consume ZMQ_FD's edge: look for input again.
    schedule_drain();
    return sent ? SendStatus::sent : SendStatus::would_block;
  } catch (const zmq::error_t& e) {
    schedule_drain();
    return e.num() == EHOSTUNREACH ? SendStatus::peer_unknown : SendStatus::failed;
  }
}

void ZmqTransport::stop() {
  if (stopped_) return;
  stopped_ = true;
  *alive_ = false;
  boost::system::error_code ignored;
  readable_.cancel(ignored);
  readable_.release();
  if (security_) security_->stop();  // its sockets close before the context
  if (monitor_readable_) {
    monitor_readable_->cancel(ignored);
    monitor_readable_->release();
  }
  if (monitor_) monitor_->close();
  socket_.close();
  context_.close();
}

void ZmqTransport::reload_credentials() {
  if (security_) security_->reload();
}

void ZmqTransport::schedule_drain() {
  if (drain_scheduled_ || stopped_) return;
  drain_scheduled_ = true;
  boost::asio::post(io_, [this, alive = alive_] {
    if (!*alive) return;
    drain_scheduled_ = false;
    drain();
  });
}

// Reads every queued message, then waits for the next edge. Bounded per call,
// in messages and in bytes (a peer may send many large ones), so a flood on
// the bus cannot starve the rest of the bus thread (heartbeats, timers). Receiving
// until EAGAIN, rather than asking ZMQ_EVENTS before each message, costs one
// look at ZeroMQ's command pipe per batch instead of one per message (each is
// a poll and a getpid): the failing receive processes the pending commands,
// so once it fails the descriptor's next edge is guaranteed.
void ZmqTransport::drain() {
  constexpr int k_batch = 256;
  constexpr std::size_t k_batch_bytes = 4 * 1024 * 1024;
  std::size_t bytes = 0;
  for (int i = 0; i < k_batch; ++i) {
    if (stopped_) return;
    zmq::message_t first;
    if (!receive(first)) {
      wait_readable();
      return;
    }
    // Disconnections before the batch's first message: a descriptor the batch
    // shows reused by a new worker then has the old worker's DISCONNECTED
    // queued or already handled. Not before a receive that finds nothing (the
    // drain after every send mostly does): each look at the monitor is a
    // poll and a getpid inside libzmq.
    if (i == 0) drain_monitor();
    if (role_ == Role::gateway) {
      zmq::message_t second;
      if (!first.more() || !receive(second)) continue;
      while (second.more()) {  // a peer that sends extra frames: keep the first payload only
        zmq::message_t extra;
        if (!receive(extra)) break;
        if (!extra.more()) break;
      }
      if (security_ && !security_->admit(first.to_string_view(), second)) continue;  // revoked worker
      bytes += deliver(first, &second);
    } else {
      bytes += deliver(first, nullptr);
    }
    if (bytes >= k_batch_bytes) break;
  }
  schedule_drain();
}

bool ZmqTransport::receive(zmq::message_t& message) {
  return again_on_eintr([&] { return socket_.recv(message, zmq::recv_flags::dontwait).has_value(); });
}

void ZmqTransport::wait_readable() {
  if (readable_pending_) return;
  readable_pending_ = true;
  readable_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this, alive = alive_](const boost::system::error_code& ec) {
                         if (!*alive) return;
                         readable_pending_ = false;
                         if (!ec) drain();
                       });
}

// A transport frame (docs/protocol.md §1.1) is the rings' business; what
// reaches the callback is a message, from the socket or copied out of a ring.
std::size_t ZmqTransport::deliver(zmq::message_t& first, zmq::message_t* second) {
  if (!on_message_) return 0;
  std::string_view peer;
  auto payload = first.to_string_view();
  if (second) {
    peer = first.to_string_view();
    payload = second->to_string_view();
    note_peer_fd(peer, zmq_msg_get(second->handle(), ZMQ_SRCFD));
  }
  if (!shm::is_transport_frame(payload)) {
    on_message_(peer, payload);
    return payload.size();
  }
  auto message = rings_.receive(ring_peer(peer), payload);
  if (!message) return 0;
  on_message_(peer, *message);
  rings_.done_with_message();
  return message->size();
}

// --- gateway: disconnections ---------------------------------------------
//
// A killed worker's TCP connection closes at once, but without the monitor
// the gateway would notice only after three silent heartbeat intervals.

void ZmqTransport::open_monitor(const std::string& endpoint) {
  // One monitor per socket (libzmq): CURVE's handshake events share it.
  int events = ZMQ_EVENT_DISCONNECTED | (security_ ? ZmqSecurity::k_gateway_events : 0);
  if (zmq_socket_monitor(socket_.handle(), endpoint.c_str(), events) != 0) {
    throw zmq::error_t();
  }
  monitor_.emplace(context_, zmq::socket_type::pair);
  monitor_->set(zmq::sockopt::linger, 0);
  monitor_->connect(endpoint);
  monitor_readable_.emplace(io_, monitor_->get(zmq::sockopt::fd));  // ZeroMQ's: released in stop()
}

// Each event is two frames: 6 bytes (uint16 event, uint32 value: the
// descriptor) and the endpoint (the bound one, so useless to us).
void ZmqTransport::drain_monitor() {
  if (!monitor_) return;
  for (;;) {
    zmq::message_t event;
    if (!again_on_eintr([&] { return monitor_->recv(event, zmq::recv_flags::dontwait).has_value(); })) break;
    zmq::message_t endpoint;
    if (event.more()) again_on_eintr([&] { return monitor_->recv(endpoint, zmq::recv_flags::dontwait); });
    if (event.size() < 6) continue;
    std::uint16_t kind = 0;
    std::uint32_t value = 0;
    std::memcpy(&kind, event.data(), sizeof kind);
    std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof value);
    if (security_) security_->on_gateway_event(kind, value);
    if (kind == ZMQ_EVENT_DISCONNECTED) on_disconnected(static_cast<int>(value));
    if (stopped_) return;
  }
  wait_monitor();
}

void ZmqTransport::wait_monitor() {
  if (monitor_pending_ || stopped_) return;
  monitor_pending_ = true;
  monitor_readable_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                [this, alive = alive_](const boost::system::error_code& ec) {
                                  if (!*alive) return;
                                  monitor_pending_ = false;
                                  if (!ec) drain_monitor();
                                });
}

void ZmqTransport::note_peer_fd(std::string_view peer, int fd) {
  if (fd < 0) return;
  if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 1);
  auto& slot = fds_[static_cast<std::size_t>(fd)];
  if (slot.peer == peer) return;
  if (!slot.peer.empty()) {
    // The descriptor was reused, so the previous peer's connection closed;
    // its DISCONNECTED is still queued (drain() reads the monitor first).
    ++slot.stale;
    auto previous = std::exchange(slot.peer, std::string(peer));
    peer_closed(previous, fd);
  } else {
    slot.peer.assign(peer);
  }
  fd_of_peer_[slot.peer] = fd;
}

void ZmqTransport::on_disconnected(int fd) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  auto& slot = fds_[static_cast<std::size_t>(fd)];
  if (slot.stale > 0) {
    --slot.stale;
    return;
  }
  if (slot.peer.empty()) return;  // a peer that never sent a message
  peer_closed(std::exchange(slot.peer, std::string()), fd);
}

// Only if it is the peer's current connection: a worker that reconnected
// (same routing id, new descriptor) is alive.
void ZmqTransport::peer_closed(const std::string& peer, int fd) {
  auto it = fd_of_peer_.find(peer);
  if (it == fd_of_peer_.end() || it->second != fd) return;
  fd_of_peer_.erase(it);
  rings_.forget(peer);
  if (on_peer_gone_) on_peer_gone_(peer);
}

}  // namespace asgi_bridge::bus
