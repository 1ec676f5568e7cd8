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
// process's queue and, on a worker, one for the shared queue of new
// connections, popped only while the worker has free capacity. A worker whose
// free capacity drops to 0 (it drains) has its pending pop of the shared
// queue cut short with CLIENT UNBLOCK, and what a pop brings beyond the free
// capacity goes back to the head of the queue: no new connection reaches a
// worker that is leaving. Broadcast groups use Redis pub/sub: a message is
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
  void withdraw_shared(std::string_view payload) override;
  void set_free_capacity(std::size_t connections) override;
  SendStatus publish(std::string_view group, std::string_view payload) override;
  void subscribe(std::string_view group) override;
  void unsubscribe(std::string_view group) override;

 private:
  std::string queue_key(std::string_view kind, std::string_view id) const;
  void schedule_flush();
  void flush();
  void pop(RedisConnection& connection, const std::string& key, bool shared);
  void on_popped(redisReply* reply, bool shared);
  void on_shared_pops_state(bool up);
  std::string group_channel(std::string_view group) const;
  void on_push(std::string_view type, std::string_view channel, std::string_view data);

  boost::asio::io_context& io_;
  TransportOptions options_;
  std::string own_queue_;
  std::string shared_queue_;
  RedisConnection commands_;
  RedisConnection own_pops_;
  RedisConnection shared_pops_;
  RedisConnection subscriber_;
  std::string channel_prefix_;                   // PREFIX:group:DB:
  std::set<std::string, std::less<>> channels_;  // of the groups subscribed to
  bool subscriber_started_ = false;
  OnMessage on_message_;
  std::unordered_map<std::string, std::vector<std::string>> outbox_;
  bool flush_scheduled_ = false;
  bool own_popping_ = false;
  bool shared_popping_ = false;
  std::size_t free_capacity_ = 0;
  std::string shared_client_id_;  // CLIENT ID of shared_pops_, to unblock its pop
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace asgi_bridge::bus
