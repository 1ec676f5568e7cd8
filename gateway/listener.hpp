#pragma once
// Accepts connections on one TCP address (--bind), one Unix domain socket
// (--unix-socket) or one inherited socket (--fd), and places each on the next
// shard (round robin), where its HttpSession lives from then on. A TCP listener given a TLS context
// (--tls-cert) serves HTTPS and WSS; a Unix socket is always plain (the proxy
// in front of it is on the same host). Past --limit-connections a connection
// gets 503 and is closed; a failed accept (out of descriptors) pauses the
// listener (AcceptBackoff) instead of retrying at once.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "accept_backoff.hpp"
#include "config.hpp"
#include "connection_limit.hpp"
#include "dispatcher.hpp"
#include "asgi_bridge/bus/log_limiter.hpp"
#include "shard.hpp"
#include "stream_socket.hpp"

namespace boost::asio::ssl {
class context;
}

namespace asgi_bridge::gateway {

// Opens, binds and listens; throws std::runtime_error starting with `option`
// (--bind, --admin) and naming the address when it cannot.
void listen_on(boost::asio::ip::tcp::acceptor& acceptor, const BindAddress& address, std::string_view option,
               int backlog = boost::asio::socket_base::max_listen_connections);

// A listening socket the gateway inherited (--fd, systemd's LISTEN_FDS).
struct InheritedSocket {
  int fd;
};

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds at once; throws std::runtime_error naming the address on failure.
  // `tls` (may be null) and `limit` must outlive the listener and its sessions.
  Listener(boost::asio::io_context& io, const BindAddress& address, std::vector<Shard*> shards,
           Dispatcher& dispatcher, const Config& config, ConnectionLimit& limit, boost::asio::ssl::context* tls);
  // A socket file left by a gateway that died is replaced; anything else at
  // `path` is refused. The file is made 0666 (access is the directory's
  // business) and removed again when the listener stops.
  Listener(boost::asio::io_context& io, const std::string& path, std::vector<Shard*> shards,
           Dispatcher& dispatcher, const Config& config, ConnectionLimit& limit);
  // Takes over a socket already listening (TCP or Unix; TLS with `tls` on
  // TCP only); throws std::runtime_error naming the descriptor when it is
  // not a listening stream socket.
  Listener(boost::asio::io_context& io, InheritedSocket inherited, std::vector<Shard*> shards,
           Dispatcher& dispatcher, const Config& config, ConnectionLimit& limit, boost::asio::ssl::context* tls);
  ~Listener();

  void start();
  void stop();        // any thread: stop accepting
  void close_now();   // the listener's thread: stop accepting at once

 private:
  Listener(boost::asio::io_context& io, std::vector<Shard*> shards, Dispatcher& dispatcher, const Config& config,
           ConnectionLimit& limit);
  void accept_next();
  void pause_after(const boost::system::error_code& error);
  void hand_over(Shard& shard, StreamSocket socket);
  void refuse(StreamSocket socket);
  void remove_socket_file();

  // TCP or Unix: generic has no acceptor typedef of its own.
  boost::asio::basic_socket_acceptor<boost::asio::generic::stream_protocol> acceptor_;
  boost::asio::steady_timer retry_;
  std::vector<Shard*> shards_;
  Dispatcher& dispatcher_;
  const Config& config_;
  ConnectionLimit& limit_;
  AcceptBackoff backoff_;
  bus::LogLimiter log_limiter_;  // the main thread's: warnings of this listener only
  std::size_t next_shard_ = 0;
  std::string socket_file_;  // --unix-socket: ours to remove
  boost::asio::ssl::context* tls_ = nullptr;
};

}  // namespace asgi_bridge::gateway
