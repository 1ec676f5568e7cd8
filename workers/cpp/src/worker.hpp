#pragma once
// The worker process: the bus thread and its app threads.
//
// The bus thread runs `bus_io_`: the transports (one GatewayLink per --bus
// URL), the gateways met on them, heartbeats and liveness, signals and
// draining, capacity, and the routing table that says which shard runs which
// connection. A ZeroMQ link has one gateway, which chose us for each new
// connection after our `ready`; a shared link (Redis) has any number, and we
// take new connections ourselves while we have free capacity, claim each at
// once, and heartbeat only the gateways we have (or just had) connections with. App coroutines run on shards; with --threads N > 1 each shard
// has its own io_context and thread. The two sides exchange only owned values
// through asio::post (decoded envelopes one way, encoded messages and
// "finished" the other), so no lock guards any of it. Broadcast groups
// (groups.hpp) reach the bus thread the same way: Groups calls our GroupBus
// methods from any thread, and they post.
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/common.h>

#include "asgi_bridge/protocol/envelope.hpp"
#include "asgi_bridge/worker/app.hpp"
#include "asgi_bridge/worker/broadcast.hpp"
#include "asgi_bridge/worker/groups.hpp"
#include "asgi_bridge/worker/options.hpp"
#include "conn_key.hpp"
#include "gateway_link.hpp"
#include "group_sequences.hpp"
#include "recent_connections.hpp"
#include "shard.hpp"

namespace asgi_bridge::worker::detail {

class Worker : private GroupBus, private BroadcastBus {
 public:
  Worker(App app, Options options);
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Serves until drained; returns the exit code.
  int run();

 private:
  using Clock = std::chrono::steady_clock;
  using WorkGuard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  enum class Phase { serving, draining, shutting_down, done };

  struct Gateway {
    std::size_t link = 0;  // where it spoke: where its replies go
    Clock::time_point last_seen;
    // Shared links: when we last had a connection of it; it hears our
    // heartbeats until 3 intervals after.
    Clock::time_point last_busy;
  };
  struct Route {
    Shard* shard = nullptr;
    std::size_t link = 0;
    std::uint64_t next_seq = 1;  // of the gateway's next event (the first was 0)
    bool websocket = false;      // counts against --websocket-capacity, not --concurrency
    bool launched = false;       // its app holds one of the slots of its kind
  };

  void make_shards();
  void open_links();
  void stop_threads();

  // From gateways.
  void on_message(std::size_t link, std::string_view payload);
  void meet(const std::string& gateway_id, std::size_t link);
  void claim(std::size_t link, const ConnKey& key);
  void on_event(std::size_t link, protocol::Envelope&& envelope);
  void open(std::size_t link, protocol::Envelope&& envelope);
  void to_connection(protocol::Envelope&& envelope);
  // Hands a later event, credit or error to the connection's shard.
  void deliver(Shard* shard, ConnKey&& key, protocol::Envelope&& envelope);
  // --threads 1: the one shard runs on this thread, and is called at once
  // instead of through a post (no allocation, lock or move of the envelope).
  // Nothing a shard does inline calls back into the Worker, but for sends
  // and a finished connection (see make_shards()).
  bool shard_on_bus_thread() const { return app_ios_.empty(); }
  void gateway_gone(const std::string& gateway_id, std::string_view why, spdlog::level::level_enum level);
  void reply_error(std::size_t link, const ConnKey& key, std::string message);
  void on_group(protocol::Envelope&& envelope);

  // Broadcast groups (GroupBus: any thread; each posts to the bus thread).
  void publish(const std::string& group, protocol::WebSocketSend message) override;
  void subscribe(const std::string& group) override;
  void unsubscribe(const std::string& group) override;
  void publish_now(const std::string& group, protocol::WebSocketSend&& message);

  // Gateway broadcast channels (BroadcastBus: any thread; posts to the bus thread).
  void publish_channel(const std::string& channel, protocol::WebSocketSend message) override;
  void relay_publish(std::size_t link, std::string_view payload);

  // Capacity.
  void launch(const ConnKey& key, Route& route);
  void launch_waiting();
  std::size_t limit(bool websocket) const;
  void connection_finished(const ConnKey& key);  // posted by shards
  void update_free_capacity();                   // tells the shared links

  // To gateways.
  void send(std::size_t link, const std::string& gateway_id, std::string_view bytes);
  void send(std::size_t link, const std::string& gateway_id, bus::MessageParts&& message);
  void announce_to(std::size_t link);  // ZeroMQ: ready (and drain, once draining)
  // Heartbeat, drain or bye to every gateway: on a ZeroMQ link its one
  // gateway; on a shared link the gateways we know (heartbeats: only those
  // we had connections with in the last 3 intervals).
  void broadcast(protocol::Kind kind);
  std::string status_message(protocol::Kind kind) const;

  // Time and shutdown.
  void schedule_tick();
  void tick();
  void wait_for_signal();
  void begin_drain();
  void shut_down_connections();
  void finish();

  App app_;
  Options options_;
  std::string worker_id_;
  // Run by one thread only (other threads post to it, which stays safe): the
  // hint lets a handler's own posts skip the scheduler's lock and wake-ups.
  boost::asio::io_context bus_io_{1};
  // App threads (none with --threads 1: the one shard uses bus_io_).
  std::vector<std::unique_ptr<boost::asio::io_context>> app_ios_;
  std::vector<WorkGuard> work_guards_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::size_t next_shard_ = 0;
  std::vector<std::unique_ptr<GatewayLink>> links_;
  std::unordered_map<std::string, Gateway> gateways_;
  std::unordered_set<std::string> departed_;  // said bye: their stragglers are ignored
  // Every connection we own, running or waiting; its size is our `active`.
  // Counts below are per kind, indexed by Route::websocket: HTTP requests
  // against --concurrency, WebSockets against --websocket-capacity.
  std::unordered_map<ConnKey, Route, ConnKeyHash> routes_;
  std::size_t owned_[2] = {0, 0};
  std::deque<ConnKey> waiting_[2];  // first events beyond the limit, in arrival order
  std::size_t running_[2] = {0, 0};
  RecentConnections recent_{4096};
  std::uint64_t next_group_seq_ = 0;  // of our next group message
  GroupSequences group_sequences_;    // of other workers' group messages
  boost::asio::steady_timer ticker_;
  boost::asio::steady_timer shutdown_timer_;
  boost::asio::signal_set signals_;
  Phase phase_ = Phase::serving;
};

}  // namespace asgi_bridge::worker::detail
