#pragma once
// Runs on the bus thread. Owns the transport and everything about workers:
// who is alive and with what capacity, which worker owns which connection,
// and which new connections still wait for a worker. Sessions talk to it only
// by posting ToBus messages; it answers by posting SessionEvents to shards.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
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
#include "asgi_bridge/bus/log_limiter.hpp"
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
    // From its `drain` on: the connections it had then, and how it ended
    // them itself, for the line logged when it leaves.
    std::size_t at_drain = 0;
    std::size_t errors_while_draining = 0;         // `error`: 500, abort or 1011
    std::map<int, std::size_t> closes_while_draining;  // WebSocket closes, by code

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
    std::vector<bus::MessageParts> queued;  // messages held until a worker is chosen
    // The first event, kept until acknowledged when it may be sent twice or
    // offered (re-dispatchable, Redis's shared queue). Else empty: sent once,
    // it leads `queued` (its body perhaps apart).
    std::string first;
    bool websocket = false;            // counted against WebSocket capacity
    bool redispatchable = false;
    bool redispatched = false;
    bool acknowledged = false;
    // Payload bytes the worker sent that our credits have not acknowledged:
    // the byte window we granted bounds it (docs/protocol.md §5).
    std::uint64_t unacked_bytes = 0;
    std::uint64_t window = protocol::k_default_byte_window;  // as its first event granted
    bool trailers = false;             // its response start announced trailers
    bool answered = false;             // response started, WebSocket accepted or denied
    bool finished = false;             // the worker sent its last event for it
    bool orphaned = false;             // its worker left after finishing it; the session ends it
    // Redis: the session ended before any worker claimed it; kept (with what the
    // session sent last, its disconnect) for a claim until the dispatch deadline.
    bool ended = false;
    bool offered = true;               // Redis: its first event is in the shared queue
    Clock::time_point deadline;        // dispatch deadline while waiting
    Clock::time_point arrived;         // for the dispatch wait metric
    Clock::time_point sent;            // its first event went to its worker (ZeroMQ), for the bus round trip

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

  void offer_to_shared_queue(std::uint64_t conn_id, Connection& connection);
  void offer_again();
  void claim(std::uint64_t conn_id, Connection& connection, const std::string& worker_id);
  void dispatch_waiting();
  Worker* pick_worker(bool websocket, std::string& id_out);
  void assign(std::uint64_t conn_id, Connection& connection, const std::string& worker_id, Worker& worker);
  void worker_lost(const std::string& worker_id, std::string_view why);
  // How a departing worker's connections ended when it left.
  struct Departure {
    std::size_t finished = 0;    // its last event is being written: nothing lost
    std::size_t requeued = 0;    // re-dispatched to another worker
    std::size_t unanswered = 0;  // failed before an answer: 502
    std::size_t aborted = 0;     // HTTP response cut short
    std::size_t websockets = 0;  // open WebSocket closed 1011
    std::size_t failed() const { return unanswered + aborted + websockets; }
  };
  void note_while_draining(Worker& worker, const protocol::Envelope& envelope);
  void log_departure(const std::string& worker_id, std::string_view why, const Worker& worker,
                     const Departure& departure);
  void fail(std::uint64_t conn_id, BusFailure failure);
  void fail_malformed(const std::string& worker_id, std::optional<std::uint64_t> conn_id);
  void reject(const std::string& worker_id, std::uint64_t conn_id, const char* why);
  void send_to(const std::string& worker_id, std::string_view bytes, std::uint64_t conn_id);
  void send_to(const std::string& worker_id, bus::MessageParts&& message, std::uint64_t conn_id);
  void on_send_status(const std::string& worker_id, bus::SendStatus status, std::uint64_t conn_id);
  void tick();
  void publish_worker_gauges();
  void publish_worker_list();
  void publish_queue_depth();
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
  bool unoffered_ = false;  // Redis: some waiting connection could not be offered yet
  Clock::time_point group_second_;      // start of the second group budgets count in
  bus::LogLimiter limiter_;                  // warnings a worker can repeat, per worker and reason
  std::uint64_t relays_ = 0;            // ZeroMQ: admin publishes relayed, to rotate the relaying worker
  std::vector<Metrics::WorkerGauge> worker_list_;  // reused: no allocation once the ids are known
};

}  // namespace asgi_bridge::gateway
