#pragma once
// One hiredis async connection driven by an Asio io_context, reconnecting with
// backoff. hiredis owns and frees its context (after a disconnect, inside its
// own calls), so every path below re-checks `context_` and the alive flag
// after handing control to hiredis.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace boost::asio::ssl {
class context;
}

#include "redis/redis_url.hpp"

struct redisAsyncContext;
struct redisReply;

namespace asgi_bridge::bus {

class TlsRelay;

class RedisConnection {
 public:
  // reply is null when the connection was lost before the answer came.
  using Callback = std::function<void(redisReply* reply)>;
  // Called on the io_context each time the connection comes up (true) or goes down (false).
  using StateHandler = std::function<void(bool up)>;
  // Pub/sub: every push of a subscribed connection, e.g. ("message", channel,
  // payload), ("pmessage", channel, payload) or ("unsubscribe", channel, "").
  using PushHandler = std::function<void(std::string_view type, std::string_view channel, std::string_view data)>;

  RedisConnection(boost::asio::io_context& io, RedisUrl url, std::string name, StateHandler on_state);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  void connect();
  bool up() const { return up_; }
  // Queues a command (sent once connected). Returns false when not connected.
  bool command(const std::vector<std::string_view>& argv, Callback callback);
  // SUBSCRIBE / UNSUBSCRIBE one channel; what the channel brings goes to the
  // push handler (set once, before connect()). False when not connected.
  void set_push_handler(PushHandler handler) { on_push_ = std::move(handler); }
  // Redis refused a SUBSCRIBE (NOPERM: an ACL without it) and hiredis dropped
  // the connection: with a handler, it is told why and the connection is not
  // retried (it would be refused again, ten times a second).
  using RefusalHandler = std::function<void(std::string_view why)>;
  void set_refusal_handler(RefusalHandler handler) { on_refused_ = std::move(handler); }
  bool subscribe(std::string_view channel) { return pubsub("SUBSCRIBE", channel); }
  bool unsubscribe(std::string_view channel) { return pubsub("UNSUBSCRIBE", channel); }
  // PSUBSCRIBE: its messages reach the push handler as ("pmessage", channel, payload).
  bool psubscribe(std::string_view pattern) { return pubsub("PSUBSCRIBE", pattern); }
  // Drops the connection (logged once, as any loss) and reconnects with
  // backoff: for a server that answers errors a new connection may cure
  // (LOADING, READONLY after a failover...).
  void reset(const std::string& why);
  // Writes what is already queued (best effort, at most 100 ms), then closes.
  void close();

 private:
  static void on_connect(const redisAsyncContext* context, int status);
  static void on_disconnect(const redisAsyncContext* context, int status);
  static void add_read(void* self);
  static void del_read(void* self);
  static void add_write(void* self);
  static void del_write(void* self);
  static void cleanup(void* self);
  static void on_pubsub_reply(redisAsyncContext* context, void* reply, void* self);
  bool pubsub(std::string_view verb, std::string_view channel);

  void connect_tls();
  void start(redisAsyncContext* context);
  void attach(redisAsyncContext* context);
  void wait_readable();
  void handle_readable();
  void schedule_write();
  void handle_writable();
  void went_down(const char* why);
  void flush_output();
  void schedule_reconnect();

  boost::asio::io_context& io_;
  RedisUrl url_;
  std::string name_;
  StateHandler on_state_;
  PushHandler on_push_;
  RefusalHandler on_refused_;
  redisAsyncContext* context_ = nullptr;
  boost::asio::posix::stream_descriptor socket_;
  boost::asio::steady_timer reconnect_timer_;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;  // rediss:// only
  std::weak_ptr<TlsRelay> relay_;  // its pending handlers own it
  bool connecting_tls_ = false;
  std::chrono::milliseconds backoff_{100};
  bool connected_ = false;  // TCP connected (hiredis' view)
  bool up_ = false;         // connected, authenticated, database selected
  bool want_read_ = false;
  bool want_write_ = false;
  bool read_waiting_ = false;
  bool write_scheduled_ = false;
  bool closing_ = false;
  bool logged_down_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Connects, authenticates and selects the database once, synchronously:
// the start-up check. Throws std::runtime_error with Redis' own words.
void check_redis(const RedisUrl& url);

}  // namespace asgi_bridge::bus
