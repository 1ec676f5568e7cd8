#pragma once
// --admin HOST:PORT: a small HTTP endpoint for operators and orchestrators,
// apart from client traffic: /healthz (the process is up and its main loop
// answers), /readyz (it can serve: not draining, and a worker to dispatch to)
// and /metrics (Prometheus). Runs on the main thread, one request per
// connection.
#include <memory>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config.hpp"
#include "metrics.hpp"

namespace asgi_bridge::gateway {

class Shard;

class AdminServer {
 public:
  // Binds at once: throws std::runtime_error naming the address on failure.
  // workers_pull: Redis, where workers pull connections from a shared queue
  // and the gateway need not know any worker to be ready.
  AdminServer(boost::asio::io_context& io, const BindAddress& address, const Metrics& metrics,
              std::vector<Shard*> shards, bool workers_pull);
  void start();
  void stop();

  struct Answer {
    int status;
    std::string content_type;
    std::string body;
  };
  Answer answer(std::string_view method, std::string_view target) const;

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);
  std::size_t open_connections() const;

  boost::asio::ip::tcp::acceptor acceptor_;
  const Metrics& metrics_;
  std::vector<Shard*> shards_;
  bool workers_pull_;
};

}  // namespace asgi_bridge::gateway
