#include "zmq/zmq_transport.hpp"

#include <sched.h>

#include <stdexcept>

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
    : io_(io), role_(options.role), context_(make_context()), socket_(context_, socket_type_for(options.role)), readable_(io) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::sndhwm, k_high_water_mark);
  socket_.set(zmq::sockopt::rcvhwm, k_high_water_mark);
  if (options.max_message_size > 0) {
    socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options.max_message_size));
  }
  if (options.curve.enabled()) security_ = std::make_unique<ZmqSecurity>(io, context_, socket_, endpoint, options);
  try {
    if (role_ == Role::gateway) {
      socket_.set(zmq::sockopt::router_mandatory, 1);  // unknown peer: an error, not a silent drop
      socket_.bind(endpoint);
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
  schedule_drain();
}

SendStatus ZmqTransport::send(std::string_view peer, std::string_view payload) {
  if (stopped_) return SendStatus::failed;
  try {
    if (role_ == Role::gateway) {
      if (security_ && !security_->may_send(peer)) return SendStatus::peer_unknown;  // revoked worker
      auto sent = socket_.send(zmq::buffer(peer.data(), peer.size()),
                               zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      if (!sent) return SendStatus::would_block;
    }
    auto sent = socket_.send(zmq::buffer(payload.data(), payload.size()), zmq::send_flags::dontwait);
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

// Reads every queued message, then waits for the next edge. Bounded per call
// so a flood on the bus cannot starve the rest of the bus thread. Receiving
// until EAGAIN, rather than asking ZMQ_EVENTS before each message, costs one
// look at ZeroMQ's command pipe per batch instead of one per message (each is
// a poll and a getpid): the failing receive processes the pending commands,
// so once it fails the descriptor's next edge is guaranteed.
void ZmqTransport::drain() {
  constexpr int k_batch = 256;
  for (int i = 0; i < k_batch; ++i) {
    if (stopped_) return;
    zmq::message_t first;
    if (!socket_.recv(first, zmq::recv_flags::dontwait)) {
      wait_readable();
      return;
    }
    if (role_ == Role::gateway) {
      zmq::message_t second;
      if (!first.more() || !socket_.recv(second, zmq::recv_flags::dontwait)) continue;
      while (second.more()) {  // a peer that sends extra frames: keep the first payload only
        zmq::message_t extra;
        if (!socket_.recv(extra, zmq::recv_flags::dontwait)) break;
        if (!extra.more()) break;
      }
      if (security_ && !security_->admit(first.to_string_view(), second)) continue;  // revoked worker
      deliver(first, &second);
    } else {
      deliver(first, nullptr);
    }
  }
  schedule_drain();
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

void ZmqTransport::deliver(zmq::message_t& first, zmq::message_t* second) {
  if (!on_message_) return;
  if (second) {
    on_message_(first.to_string_view(), second->to_string_view());
  } else {
    on_message_({}, first.to_string_view());
  }
}

}  // namespace asgi_bridge::bus
