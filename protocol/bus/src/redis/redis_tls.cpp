#include "redis/redis_tls.hpp"

#include "bus_log.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>

namespace asgi_bridge::bus {

namespace ssl = boost::asio::ssl;

std::shared_ptr<ssl::context> make_tls_context(const RedisUrl& url) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  const auto& tls = url.tls_options;
  auto load = [](const std::string& option, const std::string& path, auto&& how) {
    boost::system::error_code ec;
    how(ec);
    if (ec) throw std::runtime_error("redis TLS: cannot load " + option + " '" + path + "': " + ec.message());
  };
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  if (!tls.ca_file.empty()) {
    load("--bus-tls-ca-file", tls.ca_file, [&](auto& ec) { context->load_verify_file(tls.ca_file, ec); });
  } else {
    context->set_default_verify_paths();
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    throw std::runtime_error("redis TLS: --bus-tls-cert and --bus-tls-key go together");
  }
  if (!tls.cert_file.empty()) {
    load("--bus-tls-cert", tls.cert_file, [&](auto& ec) { context->use_certificate_chain_file(tls.cert_file, ec); });
    load("--bus-tls-key", tls.key_file, [&](auto& ec) { context->use_private_key_file(tls.key_file, ssl::context::pem, ec); });
  }
  context->set_verify_mode(tls.insecure ? ssl::verify_none : ssl::verify_peer);
  return context;
}

TlsRelay::TlsRelay(boost::asio::io_context& io, std::shared_ptr<ssl::context> context, const RedisUrl& url)
    : url_(url), context_(std::move(context)), resolver_(io), tls_(io, *context_), deadline_(io), acceptor_(io),
      local_(io) {}

void TlsRelay::start(Ready ready) {
  if (!url_.tls_options.insecure) tls_.set_verify_callback(ssl::host_name_verification(url_.host));
  SSL_set_tlsext_host_name(tls_.native_handle(), url_.host.c_str());  // SNI, for managed services
  auto self = shared_from_this();
  // A server that takes the TCP connection but never answers the handshake
  // would otherwise keep this connection from ever being retried.
  deadline_.expires_after(std::chrono::seconds(5));
  deadline_.async_wait([self](const boost::system::error_code& ec) {
    if (ec) return;
    self->timed_out_ = true;
    self->resolver_.cancel();
    boost::system::error_code ignored;
    self->tls_.lowest_layer().close(ignored);
  });
  resolver_.async_resolve(url_.host, std::to_string(url_.port), [self, ready](auto ec, auto endpoints) mutable {
    if (ec) return self->fail(ready, ec);
    boost::asio::async_connect(self->tls_.lowest_layer(), endpoints, [self, ready](auto ec, auto) mutable {
      if (ec) return self->fail(ready, ec);
      // As hiredis does on its own TCP connections: a command must not wait
      // for the ACK of the one before it (Nagle + delayed ACK cost 40 ms).
      boost::system::error_code ignored;
      self->tls_.lowest_layer().set_option(boost::asio::ip::tcp::no_delay(true), ignored);
      self->tls_.async_handshake(ssl::stream_base::client, [self, ready](auto ec) mutable {
        if (ec) return self->fail(ready, ec);
        self->deadline_.cancel();
        ready("");
      });
    });
  });
}

// "certificate verify failed" alone does not say why: add OpenSSL's reason.
void TlsRelay::fail(Ready& ready, const boost::system::error_code& ec) {
  deadline_.cancel();
  std::string why = timed_out_ ? std::string("TLS: no handshake within 5 s") : "TLS: " + ec.message();
  long verify = SSL_get_verify_result(tls_.native_handle());
  if (verify != X509_V_OK) why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  close();
  ready(why);
}

std::string TlsRelay::listen() {
  char dir[] = "/tmp/asgi-bridge-redis-XXXXXX";
  if (!::mkdtemp(dir)) throw std::runtime_error("redis TLS: cannot create a private directory in /tmp");
  dir_ = dir;
  path_ = dir_ + "/s";
  boost::asio::local::stream_protocol::endpoint endpoint(path_);
  acceptor_.open(endpoint.protocol());
  acceptor_.bind(endpoint);
  acceptor_.listen(1);
  return path_;
}

// hiredis' connect to a listening Unix socket completes at once: the
// connection is already waiting. Non-blocking all the same: if hiredis
// failed to connect, there is nothing to accept and the relay just ends.
void TlsRelay::accept() {
  boost::system::error_code ec;
  acceptor_.non_blocking(true, ec);
  acceptor_.accept(local_, ec);
  acceptor_.close(ec);
  remove_path();
  if (!local_.is_open()) return close();
  pump_to_server();
  pump_to_client();
}

void TlsRelay::remove_path() {
  if (dir_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
  dir_.clear();
}

// Either side ending ends both: hiredis sees the end of its socket and
// reconnects; the server sees the TLS connection close.
void TlsRelay::close() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  local_.close(ignored);
  tls_.lowest_layer().close(ignored);
  remove_path();
}

// At exit the io_context stops before the pumps could carry the last bytes
// hiredis wrote. They are a few commands: read them, and write them to the
// server if no write is under way and the socket has room, so the TLS write
// cannot block; otherwise they are lost, as a crash would lose them.
void TlsRelay::deliver_pending() {
  if (!writing_ && local_.is_open() && tls_.lowest_layer().is_open()) {
    std::array<char, 16384> pending;
    boost::system::error_code ec;
    local_.non_blocking(true, ec);
    std::size_t n = local_.read_some(boost::asio::buffer(pending), ec);
    pollfd writable{tls_.lowest_layer().native_handle(), POLLOUT, 0};
    if (!ec && n > 0 && ::poll(&writable, 1, 100) == 1) boost::asio::write(tls_, boost::asio::buffer(pending, n), ec);
  }
  close();
}

// hiredis only sees its socket close: the server's reason (an alert such as
// "certificate required", sent after a TLS 1.3 handshake) is logged here,
// once per connection, so reconnecting with backoff bounds it.
void TlsRelay::lost(const boost::system::error_code& ec) {
  bool quiet = ec == boost::asio::error::operation_aborted || ec == boost::asio::error::eof ||
               ec == boost::asio::ssl::error::stream_truncated;
  if (!quiet && error_.empty() && tls_.lowest_layer().is_open()) {
    error_ = "TLS: " + ec.message();
    bus_log().warn("redis {}:{}: {}", url_.host, url_.port, error_);
  }
  close();
}

void TlsRelay::pump_to_server() {
  auto self = shared_from_this();
  local_.async_read_some(boost::asio::buffer(to_server_), [self](auto ec, std::size_t n) {
    if (ec) return self->close();
    self->writing_ = true;
    boost::asio::async_write(self->tls_, boost::asio::buffer(self->to_server_, n), [self](auto ec, std::size_t) {
      self->writing_ = false;
      if (ec) return self->lost(ec);
      self->pump_to_server();
    });
  });
}

void TlsRelay::pump_to_client() {
  auto self = shared_from_this();
  tls_.async_read_some(boost::asio::buffer(to_client_), [self](auto ec, std::size_t n) {
    if (ec) return self->lost(ec);
    boost::asio::async_write(self->local_, boost::asio::buffer(self->to_client_, n), [self](auto ec, std::size_t) {
      if (ec) return self->close();
      self->pump_to_client();
    });
  });
}

}  // namespace asgi_bridge::bus
