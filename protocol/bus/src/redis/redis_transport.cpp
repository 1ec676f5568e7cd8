#include "redis/redis_transport.hpp"

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
      commands_(io, url, "commands", nullptr),
      own_pops_(io, url, "own queue",
                [this](bool up) {
                  if (up) pop(own_pops_, own_queue_, false);
                }),
      shared_pops_(io, url, "shared queue", [this](bool up) { on_shared_pops_state(up); }),
      subscriber_(io, url, "groups",
                  [this](bool up) {
                    if (!up) return;
                    for (const auto& channel : channels_) subscriber_.subscribe(channel);
                  }),
      channel_prefix_(options.key_prefix + ":group:" + std::to_string(url.db) + ":") {
  subscriber_.set_push_handler(
      [this](std::string_view type, std::string_view channel, std::string_view data) { on_push(type, channel, data); });
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
  std::string key;
  if (peer.empty()) {
    key = shared_queue_;
  } else {
    key = queue_key(options_.role == Role::gateway ? "wk" : "gw", peer);
  }
  outbox_[key].emplace_back(payload);
  schedule_flush();
  return SendStatus::sent;
}

void RedisTransport::withdraw_shared(std::string_view payload) {
  if (!commands_.up()) return;
  commands_.command({"LREM", shared_queue_, "1", payload}, [](redisReply*) {});
}

void RedisTransport::set_free_capacity(std::size_t connections) {
  bool was_zero = free_capacity_ == 0;
  free_capacity_ = connections;
  if (was_zero && connections > 0 && shared_pops_.up()) pop(shared_pops_, shared_queue_, true);
  // Free capacity only shrinks by what we pop (no pop is under way then) or
  // to 0 when the worker drains: a pop under way now would hand it new
  // connections as it leaves, or lose them when it closes. Redis answers
  // the unblocked BLMPOP as a timeout, and nothing is popped twice or lost.
  if (connections == 0 && shared_popping_ && !shared_client_id_.empty() && commands_.up()) {
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
  pop(shared_pops_, shared_queue_, true);
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
    if (queued && key != shared_queue_) commands_.command({"PEXPIRE", key, k_queue_ttl_ms}, [](redisReply*) {});
    if (!queued) bus_log().warn("redis: {} messages to {} lost: not connected", count, key);
  }
  outbox_.clear();  // keys of peers long gone must not pile up
}

void RedisTransport::pop(RedisConnection& connection, const std::string& key, bool shared) {
  bool& popping = shared ? shared_popping_ : own_popping_;
  if (popping || stopped_) return;
  std::size_t count = k_pop_batch;
  if (shared) {
    if (free_capacity_ == 0) return;
    count = std::min(count, free_capacity_);
  }
  popping = true;
  std::string count_text = std::to_string(count);
  bool queued = connection.command(
      {"BLMPOP", k_pop_timeout, "1", key, "LEFT", "COUNT", count_text},
      [this, alive = alive_, &connection, key, shared](redisReply* reply) {
        if (!*alive) return;
        (shared ? shared_popping_ : own_popping_) = false;
        if (!reply) return;  // connection lost: popping resumes when it is back up
        if (reply->type == REDIS_REPLY_ERROR) {
          // Unknown command (Redis before 7), LOADING, READONLY after a
          // failover...: retried on a new connection, with backoff, rather
          // than never popping again.
          std::string error(reply->str, reply->len);
          bool unknown = error.find("unknown command") != std::string::npos;
          bus_log().error("redis: BLMPOP {}: {}{}", key, error, unknown ? " (Redis 7 or newer is required)" : "");
          connection.reset("BLMPOP failed");
          return;
        }
        on_popped(reply, shared);
        if (connection.up()) pop(connection, key, shared);
      });
  if (!queued) popping = false;
}

// BLMPOP answers nil on timeout, else [key, [message, ...]]. The worker
// lowers its free capacity as it takes each new connection; one popped when
// there is none left (the worker began draining while the pop was under way)
// goes back to the head of the shared queue, in order, for another worker.
void RedisTransport::on_popped(redisReply* reply, bool shared) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) return;
  redisReply* messages = reply->element[1];
  if (messages->type != REDIS_REPLY_ARRAY) return;
  std::size_t i = 0;
  for (; i < messages->elements && !stopped_; ++i) {
    if (shared && free_capacity_ == 0) break;
    redisReply* message = messages->element[i];
    if (message->type != REDIS_REPLY_STRING) continue;
    if (on_message_) on_message_({}, std::string_view(message->str, message->len));
  }
  if (!shared || stopped_ || i >= messages->elements) return;
  std::vector<std::string_view> back{"LPUSH", shared_queue_};
  for (std::size_t k = messages->elements; k-- > i;) {  // LPUSH a b c leaves c b a: last first
    back.emplace_back(messages->element[k]->str, messages->element[k]->len);
  }
  auto count = back.size() - 2;
  bool queued = commands_.command(back, [count, alive = alive_](redisReply* answer) {
    if (*alive && (!answer || answer->type == REDIS_REPLY_ERROR)) {
      bus_log().warn("redis: {} new connection(s) popped while draining lost: {}", count,
                     answer ? std::string(answer->str, answer->len) : "connection lost");
    }
  });
  if (queued) {
    bus_log().debug("redis: {} new connection(s) popped while draining given back", count);
  } else {
    bus_log().warn("redis: {} new connection(s) popped while draining lost: not connected", count);
  }
}

}  // namespace asgi_bridge::bus
