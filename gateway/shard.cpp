#include "shard.hpp"

#include <chrono>

#include <boost/asio/post.hpp>

#include "log.hpp"

namespace asgi_bridge::gateway {

Shard::Shard(unsigned index) : index_(index), work_(io_.get_executor()) {}

std::uint64_t Shard::track(std::weak_ptr<Drainable> session) {
  auto token = ++session_counter_;
  sessions_.emplace(token, std::move(session));
  ++live_sessions_;
  return token;
}

// From the bus on this very thread (one I/O thread): into the inbox at once,
// not through the mailbox's posted drain. The inbox only queues the event
// and wakes its session later, so no session code runs inside this call.
void Shard::post_event(std::uint64_t conn_id, SessionEvent event) {
  if (io_.get_executor().running_in_this_thread()) return deliver({conn_id, std::move(event)});
  deliveries_.push({conn_id, std::move(event)});
}

// Timed: with idle sockets written to in the loop itself, this is the
// gateway's side of a publish's latency (asgi_bridge_broadcast_fan_out_seconds).
void Shard::fan_out(const PublicationPtr& publication) {
  auto started = std::chrono::steady_clock::now();
  auto reached = broadcasts_.fan_out(publication);
  if (reached == 0) return;
  metrics_.observe_broadcast_fan_out(std::chrono::steady_clock::now() - started);
  if (fan_out_counter_) fan_out_counter_(reached);
}

void Shard::deliver(Delivery&& delivery) {
  // A miss means the client is gone: the dispatcher already forgot or is
  // about to forget the connection, so the late event is simply dropped.
  auto it = inboxes_.find(delivery.conn_id);
  if (it == inboxes_.end()) return;
  if (auto* message = std::get_if<WorkerMessage>(&delivery.event)) {
    if (it->second->taken_now(*message)) return;
    auto admit = it->second->admit_worker_message();
    if (admit == Inbox::Admit::overflow) {
      bus::LogLimiter::warn(log::bus(), log_limiter_, message->worker_id + ": queue",
                       "conn {}: worker {} sent {} messages the client has not taken; failing the connection",
                       delivery.conn_id, message->worker_id, Inbox::k_max_worker_messages);
    }
    if (admit != Inbox::Admit::yes) return;
  }
  it->second->push(std::move(delivery.event));
}

void Shard::post_drain() {
  boost::asio::post(io_, [this] {
    draining_ = true;
    auto sessions = sessions_;  // drain() may untrack
    for (auto& [token, weak] : sessions) {
      if (auto session = weak.lock()) session->drain();
    }
  });
}

void Shard::run_thread() {
  thread_ = std::thread([this] { io_.run(); });
}

void Shard::stop() {
  work_.reset();
  io_.stop();
}

void Shard::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace asgi_bridge::gateway
