#pragma once
// Accepts connections on one TCP address (--bind) or one Unix domain socket
// (--unix-socket) and places each on the next shard (round robin), where its
// HttpSession lives from then on. A TCP listener given a TLS context
// (--tls-cert) serves HTTPS and WSS; a Unix socket is always plain (the proxy
// in front of it is on the same host).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "dispatcher.hpp"
#include "shard.hpp"

namespace boost::asio::ssl {
class context;
}

namespace asgi_bridge::gateway {

// Opens, binds and listens; throws std::runtime_error starting with `option`
// (--bind, --admin) and naming the address when it cannot.
void listen_on(boost::asio::ip::tcp::acceptor& acceptor, const BindAddress& address, std::string_view option);

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds at once; throws std::runtime_error naming the address on failure.
  // `tls` (may be null) must outlive the listener and its sessions.
  Listener(boost::asio::io_context& io, const BindAddress& address, std::vector<Shard*> shards,
           Dispatcher& dispatcher, const Config& config, boost::asio::ssl::context* tls);
  // A socket file left by a gateway that died is replaced; anything else at
  // `path` is refused. The file is made 0666 (access is the directory's
  // business) and removed again when the listener stops.
  Listener(boost::asio::io_context& io, const std::string& path, std::vector<Shard*> shards,
           Dispatcher& dispatcher, const Config& config);
  ~Listener();

  void start();
  void stop();  // any thread: stop accepting

 private:
  Listener(boost::asio::io_context& io, std::vector<Shard*> shards, Dispatcher& dispatcher, const Config& config);
  void accept_next();
  void remove_socket_file();

  // TCP or Unix: generic has no acceptor typedef of its own.
  boost::asio::basic_socket_acceptor<boost::asio::generic::stream_protocol> acceptor_;
  boost::asio::steady_timer retry_;
  std::vector<Shard*> shards_;
  Dispatcher& dispatcher_;
  const Config& config_;
  std::size_t next_shard_ = 0;
  std::string socket_file_;  // --unix-socket: ours to remove
  boost::asio::ssl::context* tls_ = nullptr;
};

}  // namespace asgi_bridge::gateway
