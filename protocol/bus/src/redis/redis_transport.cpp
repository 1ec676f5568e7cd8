#include "redis/redis_transport.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <hiredis/hiredis.h>

#include "bus_log.hpp"

namespace asgi_bridge::bus {
namespace {

constexpr std::string_view k_pop_timeout = "1";       // seconds: keeps a lost connection noticed
constexpr std::size_t k_pop_batch = 128;
constexpr std::string_view k_queue_ttl_ms = "30000";  // a dead process's queue disappears

}  // namespace

RedisTransport::RedisTransport(boost::asio::io_context& io, const RedisUrl& url, const TransportOptions& options)
    : io_(io),
      options_(options),
      own_queue_(queue_key(options.role == Role::gateway ? "gw" : "wk", options.identity)),
      shared_queue_(options.key_prefix + ":{new}"),
      shared_ws_queue_(options.key_prefix + ":{new}:ws"),
      commands_(io, url, "commands", nullptr),
      own_pops_(io, url, "own queue",
                [this](bool up) {
                  if (up) pop(own_pops_, {own_queue_}, k_pop_batch, false);
                }),
      shared_pops_(io, url, "shared queue", [this](bool up) { on_shared_pops_state(up); }),
      subscriber_(io, url, "groups",
                  [this](bool up) {
                    if (up) on_subscriber_up();
                  }),
      channel_prefix_(options.key_prefix + ":group:" + std::to_string(url.db) + ":"),
      broadcast_text_prefix_(options.key_prefix + ":broadcast:"),
      broadcast_bin_prefix_(options.key_prefix + ":broadcast-bin:") {
  subscriber_.set_push_handler(
      [this](std::string_view type, std::string_view channel, std::string_view data) { on_push(type, channel, data); });
  subscriber_.set_refusal_handler([](std::string_view why) {
    bus_log().warn("redis groups: subscription refused ({}): no group or broadcast message from Redis reaches "
                   "this process until it restarts with a user allowed to (docs/redis.md)",
                   why);
  });
}

RedisTransport::~RedisTransport() { stop(); }

std::string RedisTransport::queue_key(std::string_view kind, std::string_view id) const {
  return options_.key_prefix + ":{" + std::string(kind) + ":" + std::string(id) + "}";
}

void RedisTransport::start(OnMessage on_message) {
  on_message_ = std::move(on_message);
  commands_.connect();
  own_pops_.connect();
  if (options_.role == Role::worker) shared_pops_.connect();
  if (on_broadcast_ && !subscriber_started_) {
    subscriber_started_ = true;
    subscriber_.connect();
  }
}

// Again after every reconnect: Redis forgets a connection's subscriptions.
void RedisTransport::on_subscriber_up() {
  for (const auto& channel : channels_) subscriber_.subscribe(channel);
  if (on_broadcast_) {
    subscriber_.psubscribe(broadcast_text_prefix_ + "*");
    subscriber_.psubscribe(broadcast_bin_prefix_ + "*");
  }
}

SendStatus RedisTransport::broadcast(std::string_view channel, bool text, std::string_view data) {
  if (stopped_ || !commands_.up()) return SendStatus::failed;
  auto name = (text ? broadcast_text_prefix_ : broadcast_bin_prefix_) + std::string(channel);
  bool queued = commands_.command({"PUBLISH", name, data}, [name, alive = alive_](redisReply* reply) {
    if (*alive && (!reply || reply->type == REDIS_REPLY_ERROR)) {
      bus_log().warn("redis: PUBLISH {} lost: {}", name, reply ? std::string(reply->str, reply->len) : "connection lost");
    }
  });
  return queued ? SendStatus::sent : SendStatus::failed;
}

void RedisTransport::on_broadcast_push(std::string_view channel, std::string_view data) {
  std::string_view prefix = broadcast_text_prefix_;
  bool text = channel.substr(0, prefix.size()) == prefix;
  if (!text) prefix = broadcast_bin_prefix_;
  if (channel.substr(0, prefix.size()) != prefix) return;
  on_broadcast_(channel.substr(prefix.size()), text, data);
}

void RedisTransport::stop() {
  if (stopped_) return;
  // What was sent in this turn of the loop (a gateway's or a worker's bye)
  // still leaves: close() writes it before closing.
  if (flush_scheduled_) flush();
  stopped_ = true;
  *alive_ = false;
  commands_.close();
  own_pops_.close();
  shared_pops_.close();
  subscriber_.close();
}

SendStatus RedisTransport::send(std::string_view peer, std::string_view payload) {
  if (stopped_ || !commands_.up()) return SendStatus::failed;
  if (peer.empty()) return SendStatus::peer_unknown;
  outbox_[queue_key(options_.role == Role::gateway ? "wk" : "gw", peer)].emplace_back(payload);
  schedule_flush();
  return SendStatus::sent;
}

SendStatus RedisTransport::offer_shared(NewConnection kind, std::string_view payload) {
  if (stopped_ || !commands_.up()) return SendStatus::failed;
  outbox_[kind == NewConnection::websocket ? shared_ws_queue_ : shared_queue_].emplace_back(payload);
  schedule_flush();
  return SendStatus::sent;
}

void RedisTransport::withdraw_shared(NewConnection kind, std::string_view payload) {
  if (!commands_.up()) return;
  const auto& key = kind == NewConnection::websocket ? shared_ws_queue_ : shared_queue_;
  commands_.command({"LREM", key, "1", payload}, [](redisReply*) {});
}

// Bits of the shared queues worth popping now: 1 HTTP, 2 WebSocket.
unsigned RedisTransport::wanted_shared() const { return (free_http_ > 0 ? 1u : 0u) | (free_ws_ > 0 ? 2u : 0u); }

std::size_t& RedisTransport::free_capacity(std::string_view shared_key) {
  return shared_key == shared_ws_queue_ ? free_ws_ : free_http_;
}

void RedisTransport::set_free_capacity(std::size_t http, std::size_t websockets) {
  bool was_idle = wanted_shared() == 0;
  free_http_ = http;
  free_ws_ = websockets;
  if (was_idle && shared_pops_.up()) pop_shared();
  // Free capacity only shrinks by what we pop (no pop is under way then), or
  // a kind fills up or frees as connections end, or everything goes to 0 when
  // the worker drains. A pop under way for other queues than those worth
  // popping now would hand us connections we cannot take (or lose them when
  // we close), or leave a kind that just freed unserved for up to a second:
  // cut it short and ask again. Redis answers the unblocked BLMPOP as a
  // timeout, and nothing is popped twice or lost.
  if (shared_popping_ && popping_shared_ != wanted_shared() && !unblocking_ && !shared_client_id_.empty() &&
      commands_.up()) {
    unblocking_ = true;
    commands_.command({"CLIENT", "UNBLOCK", shared_client_id_}, [](redisReply*) {});
  }
}

// --- broadcast groups --------------------------------------------------------------

// One channel per group: PREFIX:group:DB:{NAME}. Pub/sub ignores SELECT, so
// the database is in the name: buses on one server stay apart, as their
// queues do. The braces mirror the keys' hash tags.
std::string RedisTransport::group_channel(std::string_view group) const {
  return channel_prefix_ + "{" + std::string(group) + "}";
}

SendStatus RedisTransport::publish(std::string_view group, std::string_view payload) {
  if (stopped_ || !commands_.up()) return SendStatus::failed;
  auto channel = group_channel(group);
  bool queued = commands_.command({"PUBLISH", channel, payload}, [channel, alive = alive_](redisReply* reply) {
    if (*alive && (!reply || reply->type == REDIS_REPLY_ERROR)) {
      bus_log().debug("redis: PUBLISH {} lost: {}", channel, reply ? std::string(reply->str, reply->len) : "connection lost");
    }
  });
  return queued ? SendStatus::sent : SendStatus::failed;
}

void RedisTransport::subscribe(std::string_view group) {
  auto [it, added] = channels_.insert(group_channel(group));
  if (!added || stopped_) return;
  if (!subscriber_started_) {
    subscriber_started_ = true;
    subscriber_.connect();  // subscribes to channels_ once up
    return;
  }
  subscriber_.subscribe(*it);  // or when it is back up
}

void RedisTransport::unsubscribe(std::string_view group) {
  auto it = channels_.find(group_channel(group));
  if (it == channels_.end()) return;
  subscriber_.unsubscribe(*it);
  channels_.erase(it);
}

void RedisTransport::on_push(std::string_view type, std::string_view channel, std::string_view data) {
  if (stopped_) return;
  if (type == "message") {
    if (on_message_) on_message_({}, data);
  } else if (type == "pmessage") {
    if (on_broadcast_) on_broadcast_push(channel, data);
  } else if (type == "unsubscribe" && channels_.count(channel) != 0) {
    // Left and joined again before Redis confirmed the leave: hiredis forgets
    // the channel on that confirmation, so subscribe anew.
    subscriber_.subscribe(channel);
  }
}

void RedisTransport::on_shared_pops_state(bool up) {
  shared_client_id_.clear();
  if (!up) return;
  // Pipelined ahead of the first pop: the id is known before it could be needed.
  shared_pops_.command({"CLIENT", "ID"}, [this, alive = alive_](redisReply* reply) {
    if (*alive && reply && reply->type == REDIS_REPLY_INTEGER) shared_client_id_ = std::to_string(reply->integer);
  });
  pop_shared();
}

// Everything sent in one turn of the event loop leaves as one pipeline:
// one RPUSH per destination with all its messages.
void RedisTransport::schedule_flush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  boost::asio::post(io_, [this, alive = alive_] {
    if (!*alive) return;
    flush_scheduled_ = false;
    flush();
  });
}

void RedisTransport::flush() {
  for (auto& [key, messages] : outbox_) {
    if (messages.empty()) continue;
    std::vector<std::string_view> argv{"RPUSH", key};
    for (const auto& message : messages) argv.emplace_back(message);
    auto count = messages.size();
    bool queued = commands_.command(argv, [key, count, alive = alive_](redisReply* reply) {
      if (!*alive) return;  // stopped: close() wrote what it could, nobody waits for the answer
      if (!reply || reply->type == REDIS_REPLY_ERROR) {
        bus_log().warn("redis: {} messages to {} lost: {}", count, key,
                       reply ? std::string(reply->str, reply->len) : "connection lost");
      }
    });
    bool shared = key == shared_queue_ || key == shared_ws_queue_;
    if (queued && !shared) commands_.command({"PEXPIRE", key, k_queue_ttl_ms}, [](redisReply*) {});
    if (!queued) bus_log().warn("redis: {} messages to {} lost: not connected", count, key);
  }
  outbox_.clear();  // keys of peers long gone must not pile up
}

// The shared queues worth popping, in one BLMPOP (same hash slot), at most
// the smaller free capacity at once; with both wanted, each pop asks the
// other first, so that a busy queue does not starve the other.
void RedisTransport::pop_shared() {
  auto wanted = wanted_shared();
  if (shared_popping_ || stopped_ || wanted == 0) return;
  std::vector<std::string> keys;
  std::size_t count = k_pop_batch;
  if (wanted & 1u) {
    keys.push_back(shared_queue_);
    count = std::min(count, free_http_);
  }
  if (wanted & 2u) {
    keys.insert(websocket_first_ ? keys.begin() : keys.end(), shared_ws_queue_);
    count = std::min(count, free_ws_);
  }
  if (wanted == 3u) websocket_first_ = !websocket_first_;
  popping_shared_ = wanted;
  unblocking_ = false;
  pop(shared_pops_, keys, count, true);
}

void RedisTransport::pop(RedisConnection& connection, const std::vector<std::string>& keys, std::size_t count,
                         bool shared) {
  bool& popping = shared ? shared_popping_ : own_popping_;
  if (popping || stopped_) return;
  popping = true;
  std::string count_text = std::to_string(count);
  std::string key_count = std::to_string(keys.size());
  std::vector<std::string_view> argv{"BLMPOP", k_pop_timeout, key_count};
  for (const auto& key : keys) argv.emplace_back(key);
  for (std::string_view word : {std::string_view("LEFT"), std::string_view("COUNT"), std::string_view(count_text)}) {
    argv.push_back(word);
  }
  bool queued = connection.command(argv, [this, alive = alive_, &connection, keys, count, shared](redisReply* reply) {
    if (!*alive) return;
    (shared ? shared_popping_ : own_popping_) = false;
    if (!reply) return;  // connection lost: popping resumes when it is back up
    if (reply->type == REDIS_REPLY_ERROR) {
      // Unknown command (Redis before 7), LOADING, READONLY after a
      // failover...: retried on a new connection, with backoff, rather
      // than never popping again.
      std::string error(reply->str, reply->len);
      bool unknown = error.find("unknown command") != std::string::npos;
      bus_log().error("redis: BLMPOP {}: {}{}", keys.front(), error, unknown ? " (Redis 7 or newer is required)" : "");
      connection.reset("BLMPOP failed");
      return;
    }
    on_popped(reply, shared);
    if (!connection.up()) return;
    if (shared) {
      pop_shared();
    } else {
      pop(connection, keys, count, false);
    }
  });
  if (!queued) popping = false;
}

// BLMPOP answers nil on timeout, else [key, [message, ...]]. The worker
// lowers its free capacity as it takes each new connection; one popped when
// there is none left of its kind (the last slot went to another connection,
// or the worker began draining, while the pop was under way) goes back to the
// head of its shared queue, in order, for another worker.
void RedisTransport::on_popped(redisReply* reply, bool shared) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return;
  redisReply* from = reply->element[0];
  redisReply* messages = reply->element[1];
  if (messages->type != REDIS_REPLY_ARRAY || from->type != REDIS_REPLY_STRING) return;
  std::string key(from->str, from->len);
  std::size_t i = 0;
  for (; i < messages->elements && !stopped_; ++i) {
    if (shared && free_capacity(key) == 0) break;
    redisReply* message = messages->element[i];
    if (message->type != REDIS_REPLY_STRING) continue;
    if (on_message_) on_message_({}, std::string_view(message->str, message->len));
  }
  if (!shared || stopped_ || i >= messages->elements) return;
  std::vector<std::string_view> back{"LPUSH", key};
  for (std::size_t k = messages->elements; k-- > i;) {  // LPUSH a b c leaves c b a: last first
    back.emplace_back(messages->element[k]->str, messages->element[k]->len);
  }
  auto count = back.size() - 2;
  bool queued = commands_.command(back, [count, alive = alive_](redisReply* answer) {
    if (*alive && (!answer || answer->type == REDIS_REPLY_ERROR)) {
      bus_log().warn("redis: {} new connection(s) popped beyond the free capacity lost: {}", count,
                     answer ? std::string(answer->str, answer->len) : "connection lost");
    }
  });
  if (queued) {
    bus_log().debug("redis: {} new connection(s) popped beyond the free capacity given back", count);
  } else {
    bus_log().warn("redis: {} new connection(s) popped beyond the free capacity lost: not connected", count);
  }
}

}  // namespace asgi_bridge::bus
