#pragma once
// What a session reads and writes: the accepted socket itself, or TLS over
// it (--tls-cert, --bind listeners). Beast's HTTP functions and
// websocket::stream take it like any AsyncStream, so there is still one
// session class per kind. A plain connection holds its socket in place and
// pays for no TLS object; only a TLS connection allocates its stream.
#include <cstddef>
#include <functional>
#include <memory>
#include <utility>
#include <variant>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include "connection_limit.hpp"
#include "stream_socket.hpp"

namespace asgi_bridge::gateway {

class ClientStream {
 public:
  using TlsStream = boost::asio::ssl::stream<StreamSocket>;
  using executor_type = StreamSocket::executor_type;

  explicit ClientStream(StreamSocket socket) : stream_(std::move(socket)) {}
  ClientStream(StreamSocket socket, boost::asio::ssl::context& tls)
      : stream_(std::make_unique<TlsStream>(std::move(socket), tls)) {}

  executor_type get_executor() { return socket().get_executor(); }
  // The connection under any TLS: for waits, options, cancel and close.
  StreamSocket& socket() { return tls() ? tls()->next_layer() : std::get<StreamSocket>(stream_); }
  // Null on a plain connection.
  TlsStream* tls() {
    auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&stream_);
    return tls ? tls->get() : nullptr;
  }
  bool is_tls() const { return std::holds_alternative<std::unique_ptr<TlsStream>>(stream_); }

  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    if (auto* tls = this->tls()) return tls->async_read_some(buffers, std::forward<Token>(token));
    return std::get<StreamSocket>(stream_).async_read_some(buffers, std::forward<Token>(token));
  }

  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    if (auto* tls = this->tls()) return tls->async_write_some(buffers, std::forward<Token>(token));
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers& buffers) { start_write(buffers, std::move(handler)); }, token, buffers);
  }

  // The broadcast fast path (docs/broadcast.md, "Fan-out cost"): one
  // non-blocking sendmsg of a whole frame, with no handler, no coroutine and
  // no allocation. Only on a plain connection with no write under way: what
  // else is written (Beast's frames, a pong) is never cut into. Returns the
  // bytes the socket took: 0 when it took none (TLS, a write under way, the
  // socket full or failed: the caller queues the frame for Beast instead).
  // Fewer than all: the caller must hand the rest to write_rest() at once.
  std::size_t try_write_now(boost::asio::const_buffer head, boost::asio::const_buffer payload);

  // Writes the rest of a frame try_write_now() wrote in part; every write
  // started meanwhile waits for it. `done` keeps the rest's memory (and the
  // stream's owner) alive until it is called.
  template <typename Buffers, typename Handler>
  void write_rest(const Buffers& rest, Handler done) {
    writing_rest_ = true;
    boost::asio::async_write(std::get<StreamSocket>(stream_), rest,
                             [this, done = std::move(done)](const boost::system::error_code& ec, std::size_t n) mutable {
                               writing_rest_ = false;
                               if (auto next = std::exchange(parked_, nullptr)) next();
                               done(ec, n);
                             });
  }

  // Ends the connection at once: no TLS close_notify, errors ignored.
  void close();

  // The connection's place under --limit-connections, given back when the
  // stream (and with it the socket) is destroyed.
  void hold(ConnectionLimit::Slot slot) { slot_ = std::move(slot); }

 private:
  // A plain connection's writes, counted (try_write_now() must see none under
  // way), or parked while the rest of a frame is written. Beast has at most
  // one write on the stream at a time, so at most one waits.
  template <typename Buffers, typename Handler>
  void start_write(const Buffers& buffers, Handler handler) {
    if (writing_rest_) {
      auto parked = std::make_shared<Handler>(std::move(handler));
      parked_ = [this, buffers, parked] { start_write(buffers, std::move(*parked)); };
      return;
    }
    ++writes_;
    std::get<StreamSocket>(stream_).async_write_some(
        buffers, [this, handler = std::move(handler)](const boost::system::error_code& ec, std::size_t n) mutable {
          --writes_;
          handler(ec, n);
        });
  }

  ConnectionLimit::Slot slot_;  // declared first: released after the socket closes
  std::variant<StreamSocket, std::unique_ptr<TlsStream>> stream_;
  int writes_ = 0;             // async_write_some()s under way
  bool writing_rest_ = false;  // write_rest() under way
  std::function<void()> parked_;
};

// Beast's websocket::stream<ClientStream> closes and tears down through
// these (found by argument-dependent lookup): the WebSocket closing handshake
// ends with Beast's own teardown of the TLS stream or of the socket.
void beast_close_socket(ClientStream& stream);
void teardown(boost::beast::role_type role, ClientStream& stream, boost::system::error_code& ec);

template <typename Handler>
void async_teardown(boost::beast::role_type role, ClientStream& stream, Handler&& handler) {
  using boost::beast::async_teardown;             // ssl::stream
  using boost::beast::websocket::async_teardown;  // sockets
  if (auto* tls = stream.tls()) {
    async_teardown(role, *tls, std::forward<Handler>(handler));
  } else {
    async_teardown(role, stream.socket(), std::forward<Handler>(handler));
  }
}

}  // namespace asgi_bridge::gateway
