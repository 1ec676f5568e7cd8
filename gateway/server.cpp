#include "server.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "fd_limit.hpp"
#include "log.hpp"
#include "tls_context.hpp"

namespace asgi_bridge::gateway {
namespace asio = boost::asio;

namespace {
// After the drain period WebSockets are closed with 1001; this is the time
// their close handshakes get before everything stops.
constexpr auto k_close_grace = std::chrono::seconds(2);
}  // namespace

Server::Server(const Config& config) : config_(config) {}

Server::~Server() {
  for (auto& shard : shards_) shard->join();
  if (bus_thread_.joinable()) bus_thread_.join();
  tear_down();
}

// Every thread has stopped; what their io_contexts still hold goes now, in
// an order where nothing outlives what it refers to. A pending accept lives
// in main_io_ but holds a socket made for a shard's io_context, which is
// destroyed first (member order): closing the acceptors and running main_io_
// once completes those accepts (aborted) while every io_context exists.
// Sessions still on a shard end when its io_context shuts down, and tell the
// dispatcher, which must still exist then.
void Server::tear_down() {
  for (auto& listener : listeners_) listener->close_now();
  if (admin_) admin_->stop();
  main_io_.restart();
  main_io_.poll();
  listeners_.clear();
  admin_.reset();
  for (auto& shard : shards_) shard->shut_down();
  dispatcher_.reset();
}

// --limit-connections 0: what the descriptor limit leaves once the gateway's
// own (bus, event loops, log) and a reserve are counted out.
void Server::limit_connections(std::size_t fd_limit) {
  auto in_use = open_fds();
  auto limit = config_.limit_connections > 0 ? config_.limit_connections : default_connection_limit(fd_limit, in_use);
  connections_ = std::make_unique<ConnectionLimit>(limit);
  log::server().info("up to {} client connections (--limit-connections); {} descriptors in use, {} kept in reserve",
                     limit, in_use, fd_reserve(fd_limit));
  if (in_use + limit + fd_reserve(fd_limit) > fd_limit) {
    log::server().warn("--limit-connections {} leaves fewer than {} descriptors for the bus and the admin endpoint: "
                       "at the limit, accepts fail",
                       limit, fd_reserve(fd_limit));
  }
}

int Server::run() {
  auto fds = raise_fd_limit();
  if (!fds.error.empty()) log::server().warn("cannot raise the file descriptor limit: {}", fds.error);
  log::server().info("file descriptor limit: {} (was {})", fds.now, fds.before);
  std::vector<Shard*> shard_pointers;
  for (unsigned i = 0; i < config_.threads; ++i) {
    shards_.push_back(std::make_unique<Shard>(i));
    shard_pointers.push_back(shards_.back().get());
  }
  // One I/O thread: the bus shares it. A bus thread of its own would cost two
  // thread switches per message (shard -> bus -> shard) for no parallelism.
  bus_on_shard_ = shards_.size() == 1;
  dispatcher_ = std::make_unique<Dispatcher>(bus_io(), config_, shard_pointers);
  try {
    tls_ = make_tls_context(config_);
    dispatcher_->start();
    limit_connections(fds.now);
    for (const auto& bind : config_.binds) {
      listeners_.push_back(
          std::make_shared<Listener>(main_io_, bind, shard_pointers, *dispatcher_, config_, *connections_, tls_.get()));
    }
    for (const auto& path : config_.unix_sockets) {
      listeners_.push_back(
          std::make_shared<Listener>(main_io_, path, shard_pointers, *dispatcher_, config_, *connections_));
    }
    for (int fd : config_.inherited_fds) {
      listeners_.push_back(std::make_shared<Listener>(main_io_, InheritedSocket{fd}, shard_pointers, *dispatcher_,
                                                      config_, *connections_, tls_.get()));
    }
    if (config_.admin) {
      admin_ = std::make_unique<AdminServer>(
          main_io_, *config_.admin, dispatcher_->metrics(), shard_pointers, dispatcher_->workers_pull(), config_,
          [this](PublicationPtr publication) { dispatcher_->publish(std::move(publication)); });
    }
  } catch (const std::exception& e) {
    log::server().critical("{}", e.what());
    return 1;
  }
  auto bus_work = asio::make_work_guard(bus_io_);
  if (!bus_on_shard_) bus_thread_ = std::thread([this] { bus_io_.run(); });
  for (auto& shard : shards_) shard->run_thread();
  for (auto& listener : listeners_) listener->start();
  if (admin_) admin_->start();
  signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
    if (!ec) on_signal(signal);
  });
  wait_for_reload();
  log::server().info("asgi-bridge ready: {} I/O threads", config_.threads);
  main_io_.run();
  bus_work.reset();
  return 0;
}

// The dispatcher and its transport belong to the bus thread.
void Server::wait_for_reload() {
  reload_signal_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    log::server().info("SIGHUP: rereading the bus keys");
    asio::post(bus_io(), [this] { dispatcher_->reload_credentials(); });
    wait_for_reload();
  });
}

void Server::on_signal(int signal) {
  if (draining_) {
    log::server().warn("second signal {}: stopping now", signal);
    shut_down();
    return;
  }
  draining_ = true;
  dispatcher_->metrics().set_draining();  // /readyz turns 503 at once
  signals_.async_wait([this](const boost::system::error_code& ec, int next) {
    if (!ec) on_signal(next);
  });
  if (config_.drain_delay.count() <= 0) {
    start_drain(signal);
    return;
  }
  // Lame duck: still accepting and serving while the load balancer's health check sees 503.
  log::server().info("signal {}: /readyz 503, draining in {} s", signal, config_.drain_delay.count());
  drain_timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.drain_delay));
  drain_timer_.async_wait([this, signal](const boost::system::error_code& ec) {
    if (!ec) start_drain(signal);
  });
}

void Server::start_drain(int signal) {
  log::server().info("signal {}: draining (up to {} s)", signal, config_.drain_timeout.count());
  for (auto& listener : listeners_) listener->stop();
  for (auto& shard : shards_) shard->post_drain();
  auto drain = std::chrono::duration_cast<std::chrono::steady_clock::duration>(config_.drain_timeout);
  wait_for_drain(std::chrono::steady_clock::now() + drain + k_close_grace);
}

// Polls until no session is left or the deadline passes.
void Server::wait_for_drain(std::chrono::steady_clock::time_point deadline) {
  std::size_t live = 0;
  for (auto& shard : shards_) live += shard->session_count();
  if (live == 0 || std::chrono::steady_clock::now() >= deadline) {
    if (live > 0) log::server().warn("drain period over: {} connections cut", live);
    shut_down();
    return;
  }
  drain_timer_.expires_after(std::chrono::milliseconds(50));
  drain_timer_.async_wait([this, deadline](const boost::system::error_code& ec) {
    if (!ec) wait_for_drain(deadline);
  });
}

void Server::shut_down() {
  signals_.cancel();
  reload_signal_.cancel();
  drain_timer_.cancel();
  if (admin_) admin_->stop();
  asio::post(bus_io(), [this] {
    dispatcher_->stop();  // before the thread it runs on stops
    if (bus_on_shard_) {
      shards_.front()->stop();
    } else {
      bus_io_.stop();
    }
  });
  for (auto& shard : shards_) {
    if (!bus_on_shard_ || shard != shards_.front()) shard->stop();
  }
  main_io_.stop();
  log::server().info("stopped");
}

}  // namespace asgi_bridge::gateway
