#pragma once
// Redis over TLS with hiredis 0.14, which has no TLS and no I/O hooks
// (docs/decisions.md): hiredis speaks plain RESP over a Unix socket to this
// relay, which carries the bytes over an Asio/OpenSSL stream to the server.
// The Unix socket lives in a fresh 0700 directory and is unlinked as soon as
// hiredis' one connection is accepted, so no other user can reach it.
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>

#include "redis/redis_url.hpp"

namespace asgi_bridge::bus {

// The TLS settings of a rediss:// URL: CA (or the system's), verification of
// the host name, client certificate. Throws std::runtime_error naming the file.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const RedisUrl& url);

class TlsRelay : public std::enable_shared_from_this<TlsRelay> {
 public:
  using Ready = std::function<void(const std::string& error)>;  // empty: handshake done
  TlsRelay(boost::asio::io_context& io, std::shared_ptr<boost::asio::ssl::context> context, const RedisUrl& url);

  // Connects and handshakes within 5 s; ready() is called once, on the io_context.
  void start(Ready ready);
  // After ready(""): a Unix socket path for hiredis to connect to; then
  // accept() takes that one connection, removes the path and starts relaying.
  std::string listen();
  void accept();
  // Carries what hiredis wrote last (a gateway's bye at exit) to the server
  // now, without the io_context, when that cannot block; then close().
  void deliver_pending();
  void close();
  // Why the TLS side failed after the handshake (the server's alert, e.g.
  // "certificate required"), or empty.
  const std::string& error() const { return error_; }

  boost::asio::ssl::stream<boost::asio::ip::tcp::socket>& stream() { return tls_; }

 private:
  void fail(Ready& ready, const boost::system::error_code& ec);
  void remove_path();
  void lost(const boost::system::error_code& ec);
  void pump_to_server();
  void pump_to_client();

  RedisUrl url_;
  std::shared_ptr<boost::asio::ssl::context> context_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket> tls_;
  boost::asio::steady_timer deadline_;
  bool timed_out_ = false;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::local::stream_protocol::socket local_;
  std::string dir_;
  std::string path_;
  std::string error_;
  bool writing_ = false;  // an async write to the server is under way
  std::array<char, 16384> to_server_{};
  std::array<char, 16384> to_client_{};
};

}  // namespace asgi_bridge::bus
