#include "listener.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "http_session.hpp"
#include "log.hpp"

namespace asgi_bridge::gateway {
namespace asio = boost::asio;
using asio::ip::tcp;
using UnixSocket = asio::local::stream_protocol;

namespace {

[[noreturn]] void fail_unix(const std::string& path, std::string_view why) {
  throw std::runtime_error(fmt::format("--unix-socket {}: {}", path, why));
}

// A socket file nobody accepts on is what a gateway that crashed leaves
// behind: remove it. One somebody accepts on, or a file that is not a socket
// at all, is not ours to remove.
void remove_stale_socket(asio::io_context& io, const std::string& path) {
  struct stat status {};
  if (::lstat(path.c_str(), &status) != 0) return;  // nothing there (bind reports other trouble)
  if (!S_ISSOCK(status.st_mode)) fail_unix(path, "exists and is not a socket; refusing to remove it");
  UnixSocket::socket probe(io);
  boost::system::error_code ec;
  probe.connect(UnixSocket::endpoint(path), ec);
  if (!ec) fail_unix(path, "another process is listening on it");
  if (ec != asio::error::connection_refused) fail_unix(path, "cannot tell whether it is in use: " + ec.message());
  if (::unlink(path.c_str()) != 0) fail_unix(path, std::string("cannot remove the stale socket: ") + std::strerror(errno));
  log::server().info("removed stale socket file {}", path);
}

}  // namespace

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

Listener::Listener(asio::io_context& io, std::vector<Shard*> shards, Dispatcher& dispatcher, const Config& config)
    : acceptor_(io), retry_(io), shards_(std::move(shards)), dispatcher_(dispatcher), config_(config) {}

Listener::Listener(asio::io_context& io, const BindAddress& address, std::vector<Shard*> shards,
                   Dispatcher& dispatcher, const Config& config, asio::ssl::context* tls)
    : Listener(io, std::move(shards), dispatcher, config) {
  tls_ = tls;
  tcp::acceptor acceptor(io);
  listen_on(acceptor, address, "--bind");
  log::server().info("listening on {}://{}:{}", tls ? "https" : "http", address.host, acceptor.local_endpoint().port());
  acceptor_ = std::move(acceptor);
}

Listener::Listener(asio::io_context& io, const std::string& path, std::vector<Shard*> shards,
                   Dispatcher& dispatcher, const Config& config)
    : Listener(io, std::move(shards), dispatcher, config) {
  remove_stale_socket(io, path);
  UnixSocket::acceptor acceptor(io);
  boost::system::error_code ec;
  acceptor.open(UnixSocket(), ec);
  if (!ec) acceptor.bind(UnixSocket::endpoint(path), ec);
  if (ec) fail_unix(path, "cannot listen: " + ec.message());
  socket_file_ = path;
  // Like uvicorn's --uds: whoever may enter the directory may connect (nginx
  // usually runs as another user); restrict access with the directory.
  if (::chmod(path.c_str(), 0666) != 0) fail_unix(path, std::string("cannot chmod 0666: ") + std::strerror(errno));
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail_unix(path, "cannot listen: " + ec.message());
  log::server().info("listening on unix:{}", path);
  acceptor_ = std::move(acceptor);
}

Listener::~Listener() { remove_socket_file(); }

void Listener::remove_socket_file() {
  if (socket_file_.empty()) return;
  if (::unlink(socket_file_.c_str()) != 0 && errno != ENOENT) {
    log::server().warn("cannot remove socket file {}: {}", socket_file_, std::strerror(errno));
  }
  socket_file_.clear();
}

void Listener::start() { accept_next(); }

void Listener::stop() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ignored;
    self->acceptor_.close(ignored);
    self->retry_.cancel();
    self->remove_socket_file();
  });
}

void Listener::accept_next() {
  Shard& shard = *shards_[next_shard_++ % shards_.size()];
  acceptor_.async_accept(shard.io(), [self = shared_from_this(), &shard](boost::system::error_code ec,
                                                                       StreamSocket socket) {
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
                              &config = self->config_, tls = self->tls_]() mutable {
        if (shard.draining()) return;  // the socket closes as it goes out of scope
        // The TLS state is made on the shard's thread, like the rest of the session.
        auto stream = tls ? ClientStream(std::move(socket), *tls) : ClientStream(std::move(socket));
        std::make_shared<HttpSession>(std::move(stream), shard, dispatcher, config)->start();
      });
    }
    self->accept_next();
  });
}

}  // namespace asgi_bridge::gateway
