#pragma once
// Accepts TCP connections on one address and places each on the next shard
// (round robin), where its HttpSession lives from then on.
#include <memory>
#include <string_view>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config.hpp"
#include "dispatcher.hpp"
#include "shard.hpp"

namespace asgi_bridge::gateway {

// Opens, binds and listens; throws std::runtime_error starting with `option`
// (--bind, --admin) and naming the address when it cannot.
void listen_on(boost::asio::ip::tcp::acceptor& acceptor, const BindAddress& address, std::string_view option);

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Binds at once; throws std::runtime_error naming the address on failure.
  Listener(boost::asio::io_context& io, const BindAddress& address, std::vector<Shard*> shards,
           Dispatcher& dispatcher, const Config& config);

  void start();
  void stop();  // any thread: stop accepting
  unsigned short port() const { return acceptor_.local_endpoint().port(); }

 private:
  void accept_next();

  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  std::vector<Shard*> shards_;
  Dispatcher& dispatcher_;
  const Config& config_;
  std::size_t next_shard_ = 0;
};

}  // namespace asgi_bridge::gateway
