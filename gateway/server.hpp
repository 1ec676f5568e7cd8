#pragma once
// Owns every thread of the gateway: the shards (I/O), the bus thread
// (dispatcher + transport) and the main thread (listeners, signals), and
// runs the graceful shutdown on SIGTERM/SIGINT; SIGHUP rereads the bus keys.
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "admin_server.hpp"
#include "config.hpp"
#include "connection_limit.hpp"
#include "dispatcher.hpp"
#include "listener.hpp"
#include "shard.hpp"

namespace asgi_bridge::gateway {

class Server {
 public:
  explicit Server(const Config& config);
  ~Server();
  // Blocks until shut down; returns the process exit code.
  int run();

 private:
  void on_signal(int signal);
  void start_drain(int signal);
  void wait_for_reload();
  void wait_for_drain(std::chrono::steady_clock::time_point deadline);
  void shut_down();
  void limit_connections(std::size_t fd_limit);
  void tear_down();
  boost::asio::io_context& bus_io() { return bus_on_shard_ ? shards_.front()->io() : bus_io_; }

  // Teardown order matters (tear_down() in server.cpp): what a pending
  // operation holds must not outlive its io_context, and sessions destroyed
  // with their shard still reach the dispatcher and the connection limit.
  const Config& config_;
  std::unique_ptr<ConnectionLimit> connections_;  // --limit-connections; outlives the sessions
  boost::asio::io_context main_io_{1};
  boost::asio::io_context bus_io_{1};
  std::unique_ptr<boost::asio::ssl::context> tls_;  // --tls-cert; outlives the sessions using it
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::unique_ptr<AdminServer> admin_;
  boost::asio::signal_set signals_{main_io_, SIGTERM, SIGINT};
  boost::asio::signal_set reload_signal_{main_io_, SIGHUP};
  boost::asio::steady_timer drain_timer_{main_io_};
  std::thread bus_thread_;
  bool draining_ = false;
  bool bus_on_shard_ = false;  // --threads 1: no bus thread
};

}  // namespace asgi_bridge::gateway
