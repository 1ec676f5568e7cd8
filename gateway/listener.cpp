#include "listener.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "asgi_adapter.hpp"
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

// How long a refused connection may take to send its request and leave, and
// how much of it is read: a close with unread bytes resets the connection, and
// the client could lose the 503 (nginx's lingering close, in short).
constexpr auto k_refusal_linger = std::chrono::seconds(1);
constexpr std::size_t k_refusal_read_limit = 64 * 1024;

// The socket is shared with the deadline's handler, which may already be
// queued when the coroutine ends.
asio::awaitable<void> answer_refusal(std::shared_ptr<StreamSocket> socket, std::string response,
                                     ConnectionLimit::Slot) {
  using asio::redirect_error;
  using asio::use_awaitable;
  asio::steady_timer deadline(socket->get_executor(), k_refusal_linger);
  deadline.async_wait([socket](const boost::system::error_code& ec) {
    boost::system::error_code ignored;
    if (!ec) socket->close(ignored);  // the reads below end
  });
  boost::system::error_code ec;
  co_await asio::async_write(*socket, asio::buffer(response), redirect_error(use_awaitable, ec));
  if (!ec) socket->shutdown(StreamSocket::shutdown_send, ec);
  char sink[4096];
  for (std::size_t read = 0; !ec && read < k_refusal_read_limit;) {
    read += co_await socket->async_read_some(asio::buffer(sink), redirect_error(use_awaitable, ec));
  }
}

// The address family of `fd`, a listening stream socket; throws otherwise.
int listening_family(int fd) {
  auto fail = [fd](std::string_view why) { throw std::runtime_error(fmt::format("--fd {}: {}", fd, why)); };
  int type = 0;
  int listening = 0;
  socklen_t size = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0) {
    fail(errno == ENOTSOCK ? "not a socket" : std::strerror(errno));  // EBADF: nothing inherited there
  }
  size = sizeof listening;
  if (type != SOCK_STREAM || ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening) {
    fail("not a listening stream socket");
  }
  sockaddr_storage address{};
  size = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) fail(std::strerror(errno));
  if (address.ss_family != AF_INET && address.ss_family != AF_INET6 && address.ss_family != AF_UNIX) {
    fail("neither a TCP nor a Unix domain socket");
  }
  return address.ss_family;
}

// "http://127.0.0.1:8000", "unix:/run/app.sock": for the log.
std::string describe(const asio::basic_socket_acceptor<asio::generic::stream_protocol>& acceptor, bool tls) {
  boost::system::error_code ec;
  auto local = acceptor.local_endpoint(ec);
  if (ec) return "address unknown";
  if (local.protocol().family() == AF_UNIX) {
    const auto* address = reinterpret_cast<const sockaddr_un*>(local.data());
    auto length = local.size() - offsetof(sockaddr_un, sun_path);
    return "unix:" + std::string(address->sun_path, strnlen(address->sun_path, length));
  }
  tcp::endpoint endpoint;
  std::memcpy(endpoint.data(), local.data(), std::min<std::size_t>(local.size(), endpoint.capacity()));
  return fmt::format("{}://{}", tls ? "https" : "http", endpoint.address().to_string() + ":" +
                                                             std::to_string(endpoint.port()));
}

}  // namespace

void listen_on(tcp::acceptor& acceptor, const BindAddress& address, std::string_view option, int backlog) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address.host, ec);
  if (ec) throw std::runtime_error(fmt::format("{} {}:{}: not an IP address", option, address.host, address.port));
  tcp::endpoint endpoint(ip, address.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(backlog, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("{}: cannot listen on {}:{}: {}", option, address.host, address.port, ec.message()));
  }
}

Listener::Listener(asio::io_context& io, std::vector<Shard*> shards, Dispatcher& dispatcher, const Config& config,
                   ConnectionLimit& limit)
    : acceptor_(io), retry_(io), shards_(std::move(shards)), dispatcher_(dispatcher), config_(config), limit_(limit) {}

Listener::Listener(asio::io_context& io, const BindAddress& address, std::vector<Shard*> shards,
                   Dispatcher& dispatcher, const Config& config, ConnectionLimit& limit, asio::ssl::context* tls)
    : Listener(io, std::move(shards), dispatcher, config, limit) {
  tls_ = tls;
  tcp::acceptor acceptor(io);
  listen_on(acceptor, address, "--bind", static_cast<int>(config.backlog));
  log::server().info("listening on {}://{}:{}", tls ? "https" : "http", address.host, acceptor.local_endpoint().port());
  acceptor_ = std::move(acceptor);
}

Listener::Listener(asio::io_context& io, const std::string& path, std::vector<Shard*> shards,
                   Dispatcher& dispatcher, const Config& config, ConnectionLimit& limit)
    : Listener(io, std::move(shards), dispatcher, config, limit) {
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
  acceptor.listen(static_cast<int>(config.backlog), ec);
  if (ec) fail_unix(path, "cannot listen: " + ec.message());
  log::server().info("listening on unix:{}", path);
  acceptor_ = std::move(acceptor);
}

Listener::Listener(asio::io_context& io, InheritedSocket inherited, std::vector<Shard*> shards,
                   Dispatcher& dispatcher, const Config& config, ConnectionLimit& limit, asio::ssl::context* tls)
    : Listener(io, std::move(shards), dispatcher, config, limit) {
  int fd = inherited.fd;
  auto family = listening_family(fd);
  bool unix_socket = family == AF_UNIX;
  tls_ = unix_socket ? nullptr : tls;  // as --unix-socket: the proxy in front is on this host
  boost::system::error_code ec;
  acceptor_.assign(asio::generic::stream_protocol(family, unix_socket ? 0 : IPPROTO_TCP), fd, ec);
  if (ec) throw std::runtime_error(fmt::format("--fd {}: {}", fd, ec.message()));
  // The socket is ours now: keep it from programs we might start.
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  log::server().info("listening on inherited descriptor {} ({})", fd, describe(acceptor_, tls_ != nullptr));
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
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] { self->close_now(); });
}

void Listener::close_now() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
  remove_socket_file();
}

void Listener::accept_next() {
  Shard& shard = *shards_[next_shard_++ % shards_.size()];
  acceptor_.async_accept(shard.io(), [self = shared_from_this(), &shard](boost::system::error_code ec,
                                                                       StreamSocket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
    if (ec) {
      self->pause_after(ec);
      return;
    }
    self->backoff_.succeeded();
    self->hand_over(shard, std::move(socket));
    self->accept_next();
  });
}

// Out of descriptors or similar: the connection waits in the backlog while
// the listener pauses, longer each time.
void Listener::pause_after(const boost::system::error_code& error) {
  auto pause = backoff_.next();
  bus::LogLimiter::warn(log::server(), log_limiter_, "accept", "accept failed: {}; next attempt in {} ms",
                   error.message(), pause.count());
  retry_.expires_after(pause);
  retry_.async_wait([self = shared_from_this()](const boost::system::error_code& wait_error) {
    if (!wait_error && self->acceptor_.is_open()) self->accept_next();
  });
}

void Listener::hand_over(Shard& shard, StreamSocket socket) {
  auto slot = limit_.try_acquire();
  if (!slot) {
    refuse(std::move(socket));
    return;
  }
  asio::post(shard.io(), [&shard, socket = std::move(socket), slot = std::move(slot), &dispatcher = dispatcher_,
                          &config = config_, tls = tls_]() mutable {
    if (shard.draining()) return;  // the socket closes as it goes out of scope
    // The TLS state is made on the shard's thread, like the rest of the session.
    auto stream = tls ? ClientStream(std::move(socket), *tls) : ClientStream(std::move(socket));
    stream.hold(std::move(slot));
    std::make_shared<HttpSession>(std::move(stream), shard, dispatcher, config)->start();
  });
}

// Past --limit-connections. A TLS client would not understand a plain 503,
// and more refusals than ConnectionLimit::k_max_refusing at once are closed
// unanswered: answering holds a descriptor for up to k_refusal_linger.
void Listener::refuse(StreamSocket socket) {
  bus::LogLimiter::warn(log::server(), log_limiter_, "limit-connections",
                   "--limit-connections {} reached: new connections get 503", limit_.limit());
  auto refusing = limit_.try_refuse();
  if (tls_ || !refusing) return;  // the socket closes as it goes out of scope
  dispatcher_.metrics().count_connection_refused();
  auto shared = std::make_shared<StreamSocket>(std::move(socket));
  asio::co_spawn(shared->get_executor(),
                 answer_refusal(shared, format_error_response(503, config_.server_name, "retry-after: 1\r\n"),
                                std::move(refusing)),
                 asio::detached);
}

}  // namespace asgi_bridge::gateway
