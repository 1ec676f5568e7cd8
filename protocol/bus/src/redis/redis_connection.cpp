#include "redis/redis_connection.hpp"

#include "bus_log.hpp"
#include "redis/redis_tls.hpp"

#include <poll.h>
#include <sys/ioctl.h>

#include <stdexcept>
#include <thread>

#include <boost/asio/post.hpp>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

namespace asgi_bridge::bus {
namespace {

constexpr std::chrono::milliseconds k_max_backoff{2000};

RedisConnection* owner(const redisAsyncContext* context) { return static_cast<RedisConnection*>(context->data); }

void dispatch_reply(redisAsyncContext*, void* reply, void* privdata) {
  std::unique_ptr<RedisConnection::Callback> callback(static_cast<RedisConnection::Callback*>(privdata));
  (*callback)(static_cast<redisReply*>(reply));
}

bool is_error(const redisReply* reply) { return !reply || reply->type == REDIS_REPLY_ERROR; }

std::string describe(const redisReply* reply) {
  if (!reply) return "connection lost";
  return std::string(reply->str ? reply->str : "", reply->len);
}

}  // namespace

RedisConnection::RedisConnection(boost::asio::io_context& io, RedisUrl url, std::string name, StateHandler on_state)
    : io_(io), url_(std::move(url)), name_(std::move(name)), on_state_(std::move(on_state)), socket_(io),
      reconnect_timer_(io) {}

RedisConnection::~RedisConnection() {
  close();
  *alive_ = false;
}

void RedisConnection::connect() {
  if (closing_ || context_ || connecting_tls_) return;
  if (url_.tls) return connect_tls();
  start(redisAsyncConnect(url_.host.c_str(), url_.port));
}

// hiredis 0.14 has no TLS: it talks to a TlsRelay over a private Unix socket.
void RedisConnection::connect_tls() {
  try {
    if (!tls_context_) tls_context_ = make_tls_context(url_);
  } catch (const std::exception& error) {
    went_down(error.what());
    schedule_reconnect();
    return;
  }
  connecting_tls_ = true;
  auto relay = std::make_shared<TlsRelay>(io_, tls_context_, url_);
  relay->start([this, alive = alive_, relay](const std::string& error) {
    if (!*alive || closing_) return relay->close();
    connecting_tls_ = false;
    std::string path;
    try {
      if (!error.empty()) throw std::runtime_error(error);
      path = relay->listen();
    } catch (const std::exception& failure) {
      relay->close();
      went_down(failure.what());
      schedule_reconnect();
      return;
    }
    redisAsyncContext* context = redisAsyncConnectUnix(path.c_str());
    relay->accept();
    relay_ = relay;
    start(context);
  });
}

void RedisConnection::start(redisAsyncContext* context) {
  if (!context || context->err) {
    if (context) redisAsyncFree(context);
    went_down("cannot connect");
    schedule_reconnect();
    return;
  }
  attach(context);
  // Authenticate and select before anything else: commands queue until connected.
  // A refusal (wrong password after a restart, LOADING...) drops the
  // connection so that it is retried with backoff; left open, it would never
  // come up.
  if (!url_.password.empty()) {
    std::vector<std::string_view> auth{"AUTH"};
    if (!url_.user.empty()) auth.push_back(url_.user);
    auth.push_back(url_.password);
    command(auth, [this, alive = alive_](redisReply* reply) {
      if (*alive && reply && is_error(reply)) reset("AUTH failed: " + describe(reply));
    });
  }
  std::string db = std::to_string(url_.db);
  command({"SELECT", db}, [this, alive = alive_](redisReply* reply) {
    if (!*alive || !reply) return;
    if (is_error(reply)) {
      reset("SELECT failed: " + describe(reply));
      return;
    }
    up_ = true;
    logged_down_ = false;
    backoff_ = std::chrono::milliseconds(100);
    bus_log().info("redis {}: connected to {}:{}", name_, url_.host, url_.port);
    if (on_state_) on_state_(true);
  });
}

bool RedisConnection::command(const std::vector<std::string_view>& argv, Callback callback) {
  if (!context_) return false;
  std::vector<const char*> pointers;
  std::vector<size_t> lengths;
  pointers.reserve(argv.size());
  lengths.reserve(argv.size());
  for (auto arg : argv) {
    pointers.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  auto* boxed = new Callback(std::move(callback));
  if (redisAsyncCommandArgv(context_, dispatch_reply, boxed, static_cast<int>(argv.size()), pointers.data(),
                            lengths.data()) != REDIS_OK) {
    delete boxed;
    return false;
  }
  return true;
}

// hiredis keeps a subscription's callback and calls it for every push of
// that channel (and with no reply when the context goes): unlike command()'s
// callbacks it is not boxed per call, it is this connection itself.
bool RedisConnection::pubsub(std::string_view verb, std::string_view channel) {
  if (!up_ || !context_) return false;
  const char* pointers[] = {verb.data(), channel.data()};
  size_t lengths[] = {verb.size(), channel.size()};
  return redisAsyncCommandArgv(context_, on_pubsub_reply, this, 2, pointers, lengths) == REDIS_OK;
}

void RedisConnection::on_pubsub_reply(redisAsyncContext*, void* data, void* self) {
  auto* reply = static_cast<redisReply*>(data);
  auto* connection = static_cast<RedisConnection*>(self);
  if (!reply || !connection->on_push_ || reply->type != REDIS_REPLY_ARRAY) return;
  auto text = [](const redisReply* element) {
    bool has_text = element->type == REDIS_REPLY_STRING && element->str;
    return has_text ? std::string_view(element->str, element->len) : std::string_view{};
  };
  if (reply->elements == 4) {  // pmessage, pattern, channel, payload
    connection->on_push_(text(reply->element[0]), text(reply->element[2]), text(reply->element[3]));
  } else if (reply->elements == 3) {
    connection->on_push_(text(reply->element[0]), text(reply->element[1]), text(reply->element[2]));
  }
}

void RedisConnection::reset(const std::string& why) {
  if (!context_ || closing_) return;
  went_down(why.c_str());
  redisAsyncDisconnect(context_);  // at once, or after the callback running now: on_disconnect reconnects
}

void RedisConnection::close() {
  if (closing_) return;
  closing_ = true;
  reconnect_timer_.cancel();
  if (!context_) return;
  if (connected_) flush_output();
  if (auto relay = relay_.lock()) relay->deliver_pending();
  redisAsyncFree(context_);  // hiredis calls cleanup(), which detaches us
}

// hiredis frees a context without writing its output buffer: a `bye` queued
// just before closing would never leave. Write it now, waiting a little for
// a full socket buffer.
void RedisConnection::flush_output() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  int done = 0;
  while (context_ && redisBufferWrite(&context_->c, &done) == REDIS_OK && !done) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    pollfd writable{context_->c.fd, POLLOUT, 0};
    ::poll(&writable, 1, static_cast<int>(left.count()));
  }
}

// --- hiredis event hooks -----------------------------------------------------

void RedisConnection::attach(redisAsyncContext* context) {
  // The descriptor first: setting the connect callback already asks for writability.
  socket_.assign(context->c.fd);
  connected_ = false;
  context_ = context;
  context->data = this;
  context->ev.data = this;
  context->ev.addRead = add_read;
  context->ev.delRead = del_read;
  context->ev.addWrite = add_write;
  context->ev.delWrite = del_write;
  context->ev.cleanup = cleanup;
  redisAsyncSetConnectCallback(context, on_connect);
  redisAsyncSetDisconnectCallback(context, on_disconnect);
}

void RedisConnection::on_connect(const redisAsyncContext* context, int status) {
  auto* self = owner(context);
  if (status == REDIS_OK) {
    self->connected_ = true;
    return;
  }
  // hiredis frees the context after this returns.
  self->went_down(context->errstr);
  self->schedule_reconnect();
}

void RedisConnection::on_disconnect(const redisAsyncContext* context, int /*status*/) {
  auto* self = owner(context);
  if (self->closing_) return;  // our own close(): nothing was lost
  std::string_view why = context->errstr[0] ? context->errstr : "disconnected";
  if (why.starts_with("NOPERM") && self->on_refused_) {
    self->logged_down_ = true;  // the handler says why, once
    self->went_down(nullptr);
    self->on_refused_(why);
    return;
  }
  self->went_down(context->errstr[0] ? context->errstr : "disconnected");
  self->schedule_reconnect();
}

void RedisConnection::add_read(void* data) {
  auto* self = static_cast<RedisConnection*>(data);
  self->want_read_ = true;
  self->wait_readable();
}

void RedisConnection::del_read(void* data) { static_cast<RedisConnection*>(data)->want_read_ = false; }

void RedisConnection::add_write(void* data) {
  auto* self = static_cast<RedisConnection*>(data);
  self->want_write_ = true;
  self->schedule_write();
}

void RedisConnection::del_write(void* data) { static_cast<RedisConnection*>(data)->want_write_ = false; }

void RedisConnection::cleanup(void* data) {
  auto* self = static_cast<RedisConnection*>(data);
  self->context_ = nullptr;
  self->connected_ = false;
  self->want_read_ = self->want_write_ = false;
  self->read_waiting_ = self->write_scheduled_ = false;
  // The descriptor belongs to hiredis, which closes it: release, never close.
  if (self->socket_.is_open()) self->socket_.release();
}

// --- readiness ----------------------------------------------------------------

void RedisConnection::wait_readable() {
  if (read_waiting_ || !context_) return;
  read_waiting_ = true;
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this, alive = alive_](const boost::system::error_code& ec) {
                       if (!*alive) return;
                       read_waiting_ = false;
                       if (!ec) handle_readable();
                     });
}

// hiredis reads at most 16 KiB per call and Asio's epoll is edge-triggered:
// read until the socket is empty, or the rest would wait for the next edge.
void RedisConnection::handle_readable() {
  while (context_ && want_read_) {
    redisAsyncHandleRead(context_);
    if (!context_) return;
    int pending = 0;
    if (::ioctl(context_->c.fd, FIONREAD, &pending) != 0 || pending <= 0) break;
  }
  if (context_ && want_read_) wait_readable();
}

// Writable is the normal state of a socket, so an edge-triggered wait would
// never fire: try at once, and wait for writability only while connecting
// or after the kernel buffer filled up.
void RedisConnection::schedule_write() {
  if (write_scheduled_ || !context_) return;
  write_scheduled_ = true;
  auto handler = [this, alive = alive_](const boost::system::error_code& ec = {}) {
    if (!*alive) return;
    write_scheduled_ = false;
    if (!ec) handle_writable();
  };
  if (connected_) {
    boost::asio::post(io_, [handler] { handler(); });
  } else {
    socket_.async_wait(boost::asio::posix::stream_descriptor::wait_write, handler);
  }
}

void RedisConnection::handle_writable() {
  if (!context_ || !want_write_) return;
  redisAsyncHandleWrite(context_);
  if (!context_ || !want_write_ || write_scheduled_) return;
  write_scheduled_ = true;
  socket_.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                     [this, alive = alive_](const boost::system::error_code& ec) {
                       if (!*alive) return;
                       write_scheduled_ = false;
                       if (!ec) handle_writable();
                     });
}

// --- reconnecting ---------------------------------------------------------------

void RedisConnection::went_down(const char* why) {
  bool was_up = up_;
  up_ = false;
  if (!logged_down_) {
    logged_down_ = true;
    bus_log().warn("redis {}: {}:{} unavailable ({}); reconnecting", name_, url_.host, url_.port, why ? why : "?");
  }
  if (was_up && on_state_) on_state_(false);
}

void RedisConnection::schedule_reconnect() {
  if (closing_) return;
  reconnect_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, k_max_backoff);
  reconnect_timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (!*alive || ec || closing_) return;
    connect();
  });
}

namespace {

[[noreturn]] void fail_check(const RedisUrl& url, const std::string& what) {
  throw std::runtime_error("redis " + url.host + ":" + std::to_string(url.port) + ": " + what);
}

// AUTH, SELECT and PING over a connection made synchronously (taken over).
void run_checks(const RedisUrl& url, redisContext* connected) {
  std::unique_ptr<redisContext, decltype(&redisFree)> context(connected, redisFree);
  auto fail = [&](const std::string& what) { fail_check(url, what); };
  if (!context || context->err) fail(context ? context->errstr : "cannot allocate a context");
  auto run = [&](std::vector<std::string> argv) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (auto& arg : argv) {
      pointers.push_back(arg.c_str());
      lengths.push_back(arg.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(context.get(), static_cast<int>(argv.size()), pointers.data(), lengths.data()));
    std::unique_ptr<redisReply, decltype(&freeReplyObject)> owned(reply, freeReplyObject);
    if (!reply) fail(context->errstr);
    if (reply->type == REDIS_REPLY_ERROR) fail(argv[0] + ": " + describe(reply));
  };
  if (!url.password.empty()) {
    if (url.user.empty()) {
      run({"AUTH", url.password});
    } else {
      run({"AUTH", url.user, url.password});
    }
  }
  run({"SELECT", std::to_string(url.db)});
  run({"PING"});
}

// The handshake (and so the certificate check) on a private io_context, then
// the same checks as plain Redis through a relay served by a short-lived thread.
void check_redis_tls(const RedisUrl& url) {
  boost::asio::io_context io;
  std::shared_ptr<TlsRelay> relay;
  try {
    relay = std::make_shared<TlsRelay>(io, make_tls_context(url), url);
  } catch (const std::exception& error) {
    fail_check(url, error.what());
  }
  std::string error = "TLS handshake timed out";
  relay->start([&](const std::string& result) { error = result; });
  io.run_for(std::chrono::seconds(3));
  if (!error.empty()) fail_check(url, error);
  timeval timeout{3, 0};
  redisContext* context = redisConnectUnixWithTimeout(relay->listen().c_str(), timeout);
  relay->accept();
  io.restart();
  std::thread pump([&io] { io.run_for(std::chrono::seconds(10)); });
  std::string failure;
  try {
    run_checks(url, context);  // closes the Unix socket: the relay ends and so does the thread
  } catch (const std::exception& error) {
    failure = error.what();
  }
  boost::asio::post(io, [relay] { relay->close(); });
  pump.join();
  // hiredis only saw its socket close: the relay knows what the server said.
  if (failure.empty()) return;
  if (!relay->error().empty()) fail_check(url, relay->error());
  throw std::runtime_error(failure);
}

}  // namespace

void check_redis(const RedisUrl& url) {
  if (url.tls) return check_redis_tls(url);
  timeval timeout{3, 0};
  run_checks(url, redisConnectWithTimeout(url.host.c_str(), url.port, timeout));
}

}  // namespace asgi_bridge::bus
