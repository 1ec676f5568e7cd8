#pragma once
// Runs on the bus thread. Owns the transport and everything about workers:
// who is alive and with what capacity, which worker owns which connection,
// and which new connections still wait for a worker. Sessions talk to it only
// by posting ToBus messages; it answers by posting SessionEvents to shards.
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "asgi_bridge/bus/transport.hpp"
#include "config.hpp"
#include "log_limiter.hpp"
#include "mailbox.hpp"
#include "metrics.hpp"
#include "session_event.hpp"
#include "shard.hpp"

namespace asgi_bridge::gateway {

class Dispatcher {
 public:
  Dispatcher(boost::asio::io_context& io, const Config& config, std::vector<Shard*> shards);

  const std::string& gateway_id() const { return gateway_id_; }
  // Opens the bus (binds); throws with a clear message when it cannot.
  void start();
  // Any thread.
  void post(ToBus message);
  // Bus thread: says bye to every worker and closes the bus.
  void stop();
  // Bus thread (SIGHUP): rereads the bus's key files (the CURVE allow-list).
  void reload_credentials();
  // Any thread (atomics inside).
  Metrics& metrics() { return metrics_; }
  // Redis: workers pull new connections; valid after start().
  bool workers_pull() const { return shared_queue_; }

 private:
  using Clock = std::chrono::steady_clock;

  struct Worker {
    std::uint32_t capacity = 0;
    std::uint32_t in_flight = 0;
    bool draining = false;
    Clock::time_point last_seen;
    std::uint64_t last_assigned = 0;
  };
  struct Connection {
    std::string owner;                 // empty while waiting for a worker
    std::vector<std::string> queued;   // messages held until a worker is chosen
    std::string first;                 // kept until acknowledged, for one re-dispatch
    bool redispatchable = false;
    bool redispatched = false;
    bool acknowledged = false;
    // Redis: the session ended before any worker claimed it; kept (with what the
    // session sent last, its disconnect) for a claim until the dispatch deadline.
    bool ended = false;
    Clock::time_point deadline;        // dispatch deadline while waiting
  };

  void submit(ToBus&& message);
  void on_first(ToBus&& message);
  void on_session_message(ToBus&& message);
  void on_end(std::uint64_t conn_id);
  void on_bus_message(std::string_view peer, std::string_view payload);
  void on_worker_status(const std::string& worker_id, const protocol::Envelope& envelope);
  void on_connection_message(const std::string& worker_id, protocol::Envelope&& envelope);
  void relay_group(const std::string& origin, const protocol::Envelope& envelope, std::string_view payload);

  void offer_to_shared_queue(std::uint64_t conn_id, const Connection& connection);
  void claim(std::uint64_t conn_id, Connection& connection, const std::string& worker_id);
  void dispatch_waiting();
  Worker* pick_worker(std::string& id_out);
  void assign(std::uint64_t conn_id, Connection& connection, const std::string& worker_id, Worker& worker);
  void worker_lost(const std::string& worker_id, std::string_view why);
  void fail(std::uint64_t conn_id, BusFailure failure);
  void fail_malformed(const std::string& worker_id, std::optional<std::uint64_t> conn_id);
  void send_to(const std::string& worker_id, std::string_view bytes, std::uint64_t conn_id);
  void tick();
  void publish_worker_gauges();
  void schedule_tick();
  void log_refused_worker(std::string_view address, std::string_view reason);

  boost::asio::io_context& io_;
  Mailbox<ToBus> from_sessions_;  // batched: one wake-up carries many
  const Config& config_;
  std::vector<Shard*> shards_;
  std::string gateway_id_;
  std::unique_ptr<bus::Transport> transport_;
  Metrics metrics_;
  bool shared_queue_ = false;  // Redis: workers pull new connections themselves
  std::string heartbeat_bytes_;
  boost::asio::steady_timer ticker_;
  Clock::time_point next_heartbeat_;
  std::uint64_t assignments_ = 0;
  std::unordered_map<std::string, Worker> workers_;
  std::unordered_map<std::uint64_t, Connection> connections_;
  std::deque<std::uint64_t> waiting_;  // conn ids in arrival order; stale ids are skipped
  LogLimiter refused_log_;  // refused CURVE handshakes: anyone who reaches the bus port can cause them
};

}  // namespace asgi_bridge::gateway
