#pragma once
// --admin HOST:PORT: a small HTTP endpoint for operators and orchestrators,
// apart from client traffic: /healthz (the process is up and its main loop
// answers), /readyz (it can serve: not draining, and a worker to dispatch to)
// and /metrics (Prometheus), and POST /publish for broadcast channels
// (docs/broadcast.md). Runs on the main thread, one request per connection.
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "broadcast.hpp"
#include "config.hpp"
#include "asgi_bridge/bus/log_limiter.hpp"
#include "metrics.hpp"

namespace asgi_bridge::gateway {

class Shard;

class AdminServer {
 public:
  // Binds at once: throws std::runtime_error naming the address on failure.
  // workers_pull: Redis, where workers pull connections from a shared queue
  // and the gateway need not know any worker to be ready.
  // publish: hands a checked publish to the dispatcher (any thread).
  using Publish = std::function<void(PublicationPtr)>;
  AdminServer(boost::asio::io_context& io, const BindAddress& address, const Metrics& metrics,
              std::vector<Shard*> shards, bool workers_pull, const Config& config, Publish publish);
  void start();
  void stop();

  struct Answer {
    int status = 500;
    std::string content_type;
    std::string body;
  };
  Answer answer(std::string_view method, std::string_view target) const;
  struct PublishHeaders {
    std::string_view authorization;
    std::string_view content_type;
  };
  Answer answer_publish(std::string_view method, std::string_view target, const PublishHeaders& headers,
                        std::string_view body) const;

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);
  std::size_t open_connections() const;

  boost::asio::ip::tcp::acceptor acceptor_;
  const Metrics& metrics_;
  std::vector<Shard*> shards_;
  bool workers_pull_;
  const Config& config_;
  Publish publish_;
  bus::LogLimiter publish_limiter_;  // refused publishes, per status (main thread)
};

}  // namespace asgi_bridge::gateway
