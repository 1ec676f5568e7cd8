#include "listener.hpp"

#include <stdexcept>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "http_session.hpp"
#include "log.hpp"

namespace asgi_bridge::gateway {
namespace asio = boost::asio;
using asio::ip::tcp;

void listen_on(tcp::acceptor& acceptor, const BindAddress& address, std::string_view option) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address.host, ec);
  if (ec) throw std::runtime_error(fmt::format("{} {}:{}: not an IP address", option, address.host, address.port));
  tcp::endpoint endpoint(ip, address.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("{}: cannot listen on {}:{}: {}", option, address.host, address.port, ec.message()));
  }
}

Listener::Listener(asio::io_context& io, const BindAddress& address, std::vector<Shard*> shards,
                   Dispatcher& dispatcher, const Config& config)
    : acceptor_(io), retry_(io), shards_(std::move(shards)), dispatcher_(dispatcher), config_(config) {
  listen_on(acceptor_, address, "--bind");
  log::server().info("listening on http://{}:{}", address.host, acceptor_.local_endpoint().port());
}

void Listener::start() { accept_next(); }

void Listener::stop() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ignored;
    self->acceptor_.close(ignored);
    self->retry_.cancel();
  });
}

void Listener::accept_next() {
  Shard& shard = *shards_[next_shard_++ % shards_.size()];
  acceptor_.async_accept(shard.io(), [self = shared_from_this(), &shard](boost::system::error_code ec,
                                                                       tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors or similar: log, pause, keep accepting.
      log::server().warn("accept failed: {}", ec.message());
      self->retry_.expires_after(std::chrono::milliseconds(100));
      self->retry_.async_wait([self](const boost::system::error_code& wait_error) {
        if (!wait_error && self->acceptor_.is_open()) self->accept_next();
      });
      return;
    } else {
      asio::post(shard.io(), [&shard, socket = std::move(socket), &dispatcher = self->dispatcher_,
                              &config = self->config_]() mutable {
        if (shard.draining()) return;  // the socket closes as it goes out of scope
        std::make_shared<HttpSession>(std::move(socket), shard, dispatcher, config)->start();
      });
    }
    self->accept_next();
  });
}

}  // namespace asgi_bridge::gateway
