#pragma once
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "asgi_bridge/bus/transport.hpp"
#include "redis/redis_connection.hpp"

namespace asgi_bridge::bus {

// The bus over Redis lists (docs/redis.md). One connection sends pipelined
// batches; blocking pops run on their own connections: one for this
// process's queue and, on a worker, one for the shared queues of new
// connections (HTTP and WebSocket), each popped only while the worker has
// free capacity of its kind. When the queues worth popping change (a kind
// fills up or frees, the worker drains) the pending pop is cut short with
// CLIENT UNBLOCK and a new one asks for the right queues; what a pop brings
// beyond the free capacity goes back to the head of its queue: no new
// connection reaches a worker that is leaving. Broadcast groups use Redis pub/sub: a message is
// PUBLISHed on the group's channel, and a worker holds a subscriber
// connection of its own, subscribed to the groups it has members in (again
// after each reconnect).
class RedisTransport final : public Transport {
 public:
  RedisTransport(boost::asio::io_context& io, const RedisUrl& url, const TransportOptions& options);
  ~RedisTransport() override;

  void start(OnMessage on_message) override;
  SendStatus send(std::string_view peer, std::string_view payload) override;
  void stop() override;
  bool has_shared_queue() const override { return true; }
  SendStatus offer_shared(NewConnection kind, std::string_view payload) override;
  void withdraw_shared(NewConnection kind, std::string_view payload) override;
  void set_free_capacity(std::size_t http, std::size_t websockets) override;
  SendStatus publish(std::string_view group, std::string_view payload) override;
  void subscribe(std::string_view group) override;
  void unsubscribe(std::string_view group) override;
  void watch_broadcasts(OnBroadcast on_broadcast) override { on_broadcast_ = std::move(on_broadcast); }
  SendStatus broadcast(std::string_view channel, bool text, std::string_view data) override;

 private:
  std::string queue_key(std::string_view kind, std::string_view id) const;
  void schedule_flush();
  void flush();
  void pop(RedisConnection& connection, const std::vector<std::string>& keys, std::size_t count, bool shared);
  void pop_shared();
  unsigned wanted_shared() const;
  std::size_t& free_capacity(std::string_view shared_key);
  void on_popped(redisReply* reply, bool shared);
  void on_shared_pops_state(bool up);
  std::string group_channel(std::string_view group) const;
  void on_push(std::string_view type, std::string_view channel, std::string_view data);
  void on_subscriber_up();
  void on_broadcast_push(std::string_view channel, std::string_view data);

  boost::asio::io_context& io_;
  TransportOptions options_;
  std::string own_queue_;
  std::string shared_queue_;     // PREFIX:{new}: HTTP requests
  std::string shared_ws_queue_;  // PREFIX:{new}:ws, in the same hash slot
  RedisConnection commands_;
  RedisConnection own_pops_;
  RedisConnection shared_pops_;
  RedisConnection subscriber_;
  std::string channel_prefix_;                   // PREFIX:group:DB:
  std::set<std::string, std::less<>> channels_;  // of the groups subscribed to
  bool subscriber_started_ = false;
  OnMessage on_message_;
  OnBroadcast on_broadcast_;                     // gateway: publishes on the broadcast channels
  std::string broadcast_text_prefix_;            // PREFIX:broadcast:
  std::string broadcast_bin_prefix_;             // PREFIX:broadcast-bin:
  std::unordered_map<std::string, std::vector<std::string>> outbox_;
  bool flush_scheduled_ = false;
  bool own_popping_ = false;
  bool shared_popping_ = false;
  std::size_t free_http_ = 0;
  std::size_t free_ws_ = 0;
  unsigned popping_shared_ = 0;  // the queues of the pop under way (bits: 1 HTTP, 2 WebSocket)
  bool websocket_first_ = false;  // both wanted: which queue the next pop asks first (fairness)
  bool unblocking_ = false;       // a CLIENT UNBLOCK of the pop under way is on its way
  std::string shared_client_id_;  // CLIENT ID of shared_pops_, to unblock its pop
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace asgi_bridge::bus
