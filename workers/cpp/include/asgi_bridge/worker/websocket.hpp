#pragma once
// The WebSocket convenience layer: callbacks instead of an event loop.
//
//   WebSocketHandlers handlers;
//   handlers.on_message = [](WebSocketPtr ws, protocol::WebSocketMessage m) -> boost::asio::awaitable<void> {
//     co_await (m.text ? ws->send_text(m.data) : ws->send_bytes(m.data));
//   };
//   auto app = websocket_app(handlers);
#include <utility>  // before Asio: 1.74's awaitable.hpp needs std::exchange

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "asgi_bridge/worker/app.hpp"

namespace asgi_bridge::worker {

// One open WebSocket as the handlers see it. send_*/close are for the
// connection's own handlers (its thread); post_* may be called from anywhere.
class WebSocket : public std::enable_shared_from_this<WebSocket> {
 public:
  // Messages posted but not yet handed to the gateway beyond which post_*
  // drops: a client too slow for a broadcast must not grow memory unbounded.
  static constexpr std::size_t k_max_posted = 1024;

  WebSocket(protocol::Scope scope, Send send);

  const protocol::Scope& scope() const { return scope_; }
  std::string_view path() const { return scope_.path; }

  boost::asio::awaitable<void> send_text(std::string text);
  boost::asio::awaitable<void> send_bytes(std::string bytes);
  // Closes with `code`/`reason`; before accept (in on_connect) it refuses.
  boost::asio::awaitable<void> close(int code = 1000, std::string reason = {});
  bool closed() const { return closed_; }
  // docs/broadcast.md: after accept, the gateway writes every publish to
  // `channel` to this socket until it ends (at most 64 channels at once).
  boost::asio::awaitable<void> subscribe(std::string channel);
  boost::asio::awaitable<void> unsubscribe(std::string channel);

  // Thread-safe and fire-and-forget: queues a message for this socket from
  // any thread or any other connection's handler. Messages posted from one
  // thread go out in that order. Dropped (silently) once the socket is closed,
  // before it is accepted, and while k_max_posted are already waiting.
  void post_text(std::string text);
  void post_bytes(std::string bytes);

  // Used by websocket_app: the client or the gateway has gone.
  void mark_closed() { closed_ = true; }

 private:
  void post(protocol::WebSocketSend message);
  static boost::asio::awaitable<void> send_posted(std::shared_ptr<WebSocket> self, protocol::WebSocketSend message);

  protocol::Scope scope_;
  Send send_;
  bool closed_ = false;
  std::size_t posted_ = 0;  // posted messages not yet sent; touched on our thread only
};

using WebSocketPtr = std::shared_ptr<WebSocket>;

struct WebSocketHandlers {
  // Accept (true) or refuse (false: the client gets 403). Unset: accept all.
  std::function<boost::asio::awaitable<bool>(WebSocketPtr)> on_connect;
  // Each message, in order; the next is received after this one returns.
  std::function<boost::asio::awaitable<void>(WebSocketPtr, protocol::WebSocketMessage)> on_message;
  // The client left (its close code, 1005 without one, 1006 when the
  // connection or the gateway was lost) or closed after our close.
  std::function<boost::asio::awaitable<void>(WebSocketPtr, int code)> on_disconnect;
};

// Runs the handlers for every WebSocket; an HTTP scope gets 404. A handler
// that throws ends the connection (500 before accept, close 1011 after).
// on_disconnect runs last; the app returns after it.
App websocket_app(WebSocketHandlers handlers);

}  // namespace asgi_bridge::worker
