#include "admin_server.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>

#include "accept_backoff.hpp"
#include "listener.hpp"
#include "asgi_bridge/bus/log_limiter.hpp"
#include "log.hpp"
#include "publish_request.hpp"
#include "shard.hpp"

namespace asgi_bridge::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {
// An operator's probe that stalls this long is cut: the admin loop shares
// the main thread with the listeners.
constexpr auto k_admin_timeout = std::chrono::seconds(5);
}  // namespace

AdminServer::AdminServer(asio::io_context& io, const BindAddress& address, const Metrics& metrics,
                         std::vector<Shard*> shards, bool workers_pull, const Config& config, Publish publish)
    : acceptor_(io),
      metrics_(metrics),
      shards_(std::move(shards)),
      workers_pull_(workers_pull),
      config_(config),
      publish_(std::move(publish)) {
  listen_on(acceptor_, address, "--admin");
  log::server().info("admin endpoint on http://{}:{} (/healthz /readyz /metrics, POST /publish{})", address.host,
                     acceptor_.local_endpoint().port(), config_.publish_token.empty() ? ": no token" : "");
}

void AdminServer::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

void AdminServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

std::size_t AdminServer::open_connections() const {
  std::size_t open = 0;
  for (const auto* shard : shards_) open += shard->session_count();
  return open;
}

AdminServer::Answer AdminServer::answer(std::string_view method, std::string_view target) const {
  if (method != "GET" && method != "HEAD") return {405, "text/plain", "method not allowed\n"};
  auto path = target.substr(0, target.find('?'));
  if (path == "/healthz") return {200, "text/plain", "ok\n"};
  if (path == "/readyz") {
    if (metrics_.draining()) return {503, "text/plain", "draining\n"};
    if (!workers_pull_ && metrics_.live_workers() == 0) return {503, "text/plain", "no worker\n"};
    return {200, "text/plain", "ready\n"};
  }
  if (path == "/metrics") {
    std::vector<const ShardMetrics*> shard_metrics;
    for (const auto* shard : shards_) shard_metrics.push_back(&shard->metrics());
    return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_.prometheus(open_connections(), shard_metrics)};
  }
  return {404, "text/plain", "not found: /healthz, /readyz, /metrics, /publish\n"};
}

// POST /publish (docs/broadcast.md): 202 once handed to the bus, which
// carries it to every gateway (best effort, as any publish).
AdminServer::Answer AdminServer::answer_publish(std::string_view method, std::string_view target,
                                                const PublishHeaders& headers, std::string_view body) const {
  if (method != "POST") return {405, "text/plain", "POST /publish\n"};
  if (!config_.publish_token.empty() && !bearer_matches(headers.authorization, config_.publish_token)) {
    return {401, "text/plain", "missing or wrong bearer token (--publish-token)\n"};
  }
  auto parsed = parse_publish(target, headers.content_type, body, config_.max_message_size);
  if (!parsed.publication) return {parsed.status, "text/plain", parsed.error + "\n"};
  auto channel = parsed.publication->channel;
  auto size = parsed.publication->data.size();
  publish_(std::move(parsed.publication));
  return {202, "application/json", fmt::format("{{\"channel\": \"{}\", \"bytes\": {}}}\n", channel, size)};
}

namespace {
bool is_publish(std::string_view target) { return target.substr(0, target.find('?')) == "/publish"; }

// A publish's body is a message, base64 in JSON at worst: 4/3 of it and room
// for the rest (saturating: --max-message-size may be huge).
std::uint64_t publish_body_limit(std::uint64_t max_message_size) {
  constexpr std::uint64_t k_room = 64 * 1024;
  constexpr auto k_max = std::numeric_limits<std::uint64_t>::max();
  return max_message_size > (k_max - k_room) / 4 * 3 ? k_max : max_message_size / 3 * 4 + k_room;
}
}  // namespace

// A failed accept (out of descriptors) pauses the loop: retried at once it
// fails at once, at 100 % CPU and a log line per turn.
asio::awaitable<void> AdminServer::accept_loop() {
  AcceptBackoff backoff;
  bus::LogLimiter log_limiter;
  asio::steady_timer pause(acceptor_.get_executor());
  while (acceptor_.is_open()) {
    boost::system::error_code ec;
    auto socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      auto delay = backoff.next();
      bus::LogLimiter::warn(log::server(), log_limiter, "admin-accept", "admin: accept failed: {}; next attempt in {} ms",
                       ec.message(), delay.count());
      pause.expires_after(delay);
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    backoff.succeeded();
    asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> AdminServer::serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(8192);
  http::request_parser<http::string_body> parser;  // a body is read (and ignored) so that POST gets 405, not 400
  parser.header_limit(8192);
  boost::system::error_code ec;
  stream.expires_after(k_admin_timeout);
  co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  bool publishing = !ec && is_publish(parser.get().target());
  parser.body_limit(publishing ? publish_body_limit(config_.max_message_size) : 64 * 1024);
  if (!ec) co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  Answer result;
  if (ec == http::error::body_limit) {
    result = {413, "text/plain", "body over the limit (--max-message-size)\n"};
  } else if (ec) {
    result = {400, "text/plain", "bad request\n"};
  } else if (publishing) {
    const auto& request = parser.get();
    result = answer_publish(request.method_string(), request.target(),
                            {request[http::field::authorization], request[http::field::content_type]}, request.body());
  } else {
    result = answer(parser.get().method_string(), parser.get().target());
  }
  if (ec) log::server().info("admin: bad request: {}", ec.message());
  if (publishing && result.status >= 400) {
    bus::LogLimiter::warn(log::server(), publish_limiter_, fmt::format("publish {}", result.status), "admin: POST /publish: {} {}",
                     result.status, result.body.substr(0, result.body.size() - 1));
  }
  http::response<http::string_body> response{static_cast<http::status>(result.status), 11};
  response.set(http::field::content_type, result.content_type);
  response.set(http::field::cache_control, "no-store");
  response.keep_alive(false);
  bool head = !ec && parser.get().method() == http::verb::head;
  response.body() = std::move(result.body);
  response.prepare_payload();
  if (head) response.body().clear();
  stream.expires_after(k_admin_timeout);
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace asgi_bridge::gateway
