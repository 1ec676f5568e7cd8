#pragma once
// One I/O thread with its own io_context. A connection lives on one shard for
// its whole life, so nothing a session touches needs a lock. The shard maps
// connection ids to session inboxes; the id's low byte is the shard index, so
// the bus thread finds a connection's shard without a table.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "broadcast.hpp"
#include "disconnect_sweep.hpp"
#include "inbox.hpp"
#include "asgi_bridge/bus/log_limiter.hpp"
#include "mailbox.hpp"
#include "metrics.hpp"

namespace asgi_bridge::gateway {

// Anything living on a shard that must react to a graceful shutdown.
class Drainable {
 public:
  virtual ~Drainable() = default;
  virtual void drain() = 0;  // stop taking new work; finish what is in flight
};

class Shard {
 public:
  static constexpr unsigned k_max_shards = 256;

  explicit Shard(unsigned index);
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  boost::asio::io_context& io() { return io_; }
  unsigned index() const { return index_; }
  static unsigned index_of(std::uint64_t conn_id) { return conn_id % k_max_shards; }

  // Shard thread only.
  std::uint64_t new_conn_id() { return (++conn_counter_ * k_max_shards) + index_; }
  void attach(std::uint64_t conn_id, std::shared_ptr<Inbox> inbox) { inboxes_[conn_id] = std::move(inbox); }
  void detach(std::uint64_t conn_id) { inboxes_.erase(conn_id); }
  std::uint64_t track(std::weak_ptr<Drainable> session);
  void untrack(std::uint64_t token) {
    if (token != 0 && sessions_.erase(token) > 0) --live_sessions_;
  }
  bool draining() const { return draining_; }
  // Shard thread: for warnings a peer can repeat (a worker's invalid events...).
  bus::LogLimiter& log_limiter() { return log_limiter_; }
  // Shard thread writes (its sessions), any thread reads (a scrape).
  ShardMetrics& metrics() { return metrics_; }
  const ShardMetrics& metrics() const { return metrics_; }
  // Any thread: how many sessions live on this shard.
  std::size_t session_count() const { return live_sessions_.load(std::memory_order_relaxed); }

  // Any thread: hands an event to the connection's session, if it still exists.
  void post_event(std::uint64_t conn_id, SessionEvent event);
  // Shard thread: this shard's broadcast subscriptions.
  BroadcastRegistry& broadcasts() { return broadcasts_; }
  // Shard thread: starts the disconnect watchers of slow HTTP/1.1 responses.
  DisconnectSweep& disconnect_sweep() { return disconnect_sweep_; }
  // Any thread: a publish for this shard's subscribers, in the order posted.
  void post_publish(PublicationPtr publication) { publications_.push(std::move(publication)); }
  // Before the thread runs: told how many sockets each publish reached (metrics).
  void on_fan_out(std::function<void(std::size_t)> counter) { fan_out_counter_ = std::move(counter); }
  // Any thread: every session drains; new ones are refused.
  void post_drain();

  void run_thread();
  void stop();
  void join();
  // After join(): destroys every handler still pending (the sessions they
  // keep alive end now, while what they refer to still exists); the
  // io_context itself lives on until the shard is destroyed.
  void shut_down() { io_.shut_down(); }

 private:
  // shutdown() is protected in Asio: the public destructor is its only caller.
  class Context : public boost::asio::io_context {
   public:
    using io_context::io_context;
    void shut_down() { shutdown(); }
  };
  struct Delivery {
    std::uint64_t conn_id = 0;
    SessionEvent event;
  };
  void deliver(Delivery&& delivery);
  void fan_out(const PublicationPtr& publication);

  unsigned index_;
  Context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
  Mailbox<Delivery> deliveries_{io_, [this](Delivery&& delivery) { deliver(std::move(delivery)); }};
  BroadcastRegistry broadcasts_;
  DisconnectSweep disconnect_sweep_{io_};
  std::function<void(std::size_t)> fan_out_counter_;
  Mailbox<PublicationPtr> publications_{io_, [this](PublicationPtr&& publication) { fan_out(publication); }};
  std::uint64_t conn_counter_ = 0;
  std::uint64_t session_counter_ = 0;
  bool draining_ = false;
  std::unordered_map<std::uint64_t, std::shared_ptr<Inbox>> inboxes_;
  std::unordered_map<std::uint64_t, std::weak_ptr<Drainable>> sessions_;
  std::atomic<std::size_t> live_sessions_{0};
  bus::LogLimiter log_limiter_;
  ShardMetrics metrics_;
};

}  // namespace asgi_bridge::gateway
