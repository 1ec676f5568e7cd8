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
#include <utility>
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
  // Any thread: a publish made at this gateway (POST /publish), already
  // checked with publication_problem(); reaches every gateway of the bus.
  void publish(PublicationPtr publication);
  // Redis: workers pull new connections; valid after start().
  bool workers_pull() const { return shared_queue_; }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::string_view k_said_bye = "said bye";

  // Capacity per kind (docs/protocol.md §2.3): a worker that announces
  // ws_capacity counts WebSockets apart from HTTP requests (an idle WebSocket
  // must not hold an HTTP slot); one that does not counts both in `capacity`.
  struct Worker {
    std::uint32_t capacity = 0;
    std::optional<std::uint32_t> ws_capacity;
    std::uint32_t in_flight = 0;     // HTTP requests assigned to it
    std::uint32_t ws_in_flight = 0;  // WebSockets assigned to it
    bool draining = false;
    Clock::time_point last_seen;
    std::uint64_t last_assigned = 0;
    std::uint64_t group_bytes = 0;     // group messages relayed to it this second

    std::uint32_t& assigned(bool websocket) { return websocket ? ws_in_flight : in_flight; }
    void finished(bool websocket) {
      auto& count = assigned(websocket);
      count -= count > 0 ? 1 : 0;
    }
    // What a new connection of this kind counts against: {used, limit}.
    std::pair<std::uint64_t, std::uint64_t> load(bool websocket) const {
      if (!ws_capacity) return {std::uint64_t{in_flight} + ws_in_flight, capacity};
      return websocket ? std::pair<std::uint64_t, std::uint64_t>{ws_in_flight, *ws_capacity}
                       : std::pair<std::uint64_t, std::uint64_t>{in_flight, capacity};
    }
  };
  struct Connection {
    std::string owner;                 // empty while waiting for a worker
    std::vector<std::string> queued;   // messages held until a worker is chosen
    std::string first;                 // kept until acknowledged, for one re-dispatch
    bool websocket = false;            // counted against WebSocket capacity
    bool redispatchable = false;
    bool redispatched = false;
    bool acknowledged = false;
    // Payload bytes the worker sent that our credits have not acknowledged:
    // the byte window we granted bounds it (docs/protocol.md §5).
    std::uint64_t unacked_bytes = 0;
    bool trailers = false;             // its response start announced trailers
    bool finished = false;             // the worker sent its last event for it
    bool orphaned = false;             // its worker left after finishing it; the session ends it
    // Redis: the session ended before any worker claimed it; kept (with what the
    // session sent last, its disconnect) for a claim until the dispatch deadline.
    bool ended = false;
    Clock::time_point deadline;        // dispatch deadline while waiting

    bus::NewConnection kind() const { return websocket ? bus::NewConnection::websocket : bus::NewConnection::http; }
  };

  void submit(ToBus&& message);
  void on_first(ToBus&& message);
  void on_session_message(ToBus&& message);
  void on_end(std::uint64_t conn_id);
  void on_bus_message(std::string_view peer, std::string_view payload);
  void on_worker_status(const std::string& worker_id, const protocol::Envelope& envelope);
  void on_connection_message(const std::string& worker_id, protocol::Envelope&& envelope);
  bool within_window(const std::string& worker_id, std::uint64_t conn_id, Connection& connection,
                     const protocol::Envelope& envelope);
  bool group_budget_allows(Worker& worker, std::size_t bytes);
  void relay_group(const std::string& origin, const protocol::Envelope& envelope, std::string_view payload);
  void on_publish(const std::string& origin, protocol::Envelope&& envelope);
  void on_redis_broadcast(std::string_view channel, bool text, std::string_view data);
  void publish_here(const PublicationPtr& publication);
  void fan_out(PublicationPtr publication, std::string_view origin);
  void relay_publish(const PublicationPtr& publication);

  void offer_to_shared_queue(std::uint64_t conn_id, const Connection& connection);
  void claim(std::uint64_t conn_id, Connection& connection, const std::string& worker_id);
  void dispatch_waiting();
  Worker* pick_worker(bool websocket, std::string& id_out);
  void assign(std::uint64_t conn_id, Connection& connection, const std::string& worker_id, Worker& worker);
  void worker_lost(const std::string& worker_id, std::string_view why);
  void log_departure(const std::string& worker_id, std::string_view why, std::size_t finished, std::size_t requeued,
                     std::size_t failed);
  void fail(std::uint64_t conn_id, BusFailure failure);
  void fail_malformed(const std::string& worker_id, std::optional<std::uint64_t> conn_id);
  void reject(const std::string& worker_id, std::uint64_t conn_id, const char* why);
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
  Clock::time_point group_second_;      // start of the second group budgets count in
  LogLimiter limiter_;                  // warnings a worker can repeat, per worker and reason
  std::uint64_t relays_ = 0;            // ZeroMQ: admin publishes relayed, to rotate the relaying worker
};

}  // namespace asgi_bridge::gateway
