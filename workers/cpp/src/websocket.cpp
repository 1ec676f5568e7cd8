#include "asgi_bridge/worker/websocket.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "asgi_bridge/worker/events.hpp"
#include "asgi_bridge/worker/groups.hpp"

namespace asgi_bridge::worker {
namespace {

using boost::asio::awaitable;

// Built outside the coroutine: GCC 12 mishandles braced initialisers inside
// co_await expressions (asgi_bridge/worker/events.hpp).
protocol::HttpResponseStart not_found_start(std::size_t length) {
  return response_start(404, {{"content-type", "text/plain; charset=utf-8"}, {"content-length", std::to_string(length)}});
}

awaitable<void> not_found(const Send& send) {
  std::string body = "Not Found: this endpoint speaks WebSocket\n";
  co_await send(not_found_start(body.size()));
  co_await send(response_body(std::move(body)));
}


// Until the client's side ends; its close code.
awaitable<int> serve_messages(const WebSocketHandlers& handlers, const WebSocketPtr& ws, const Receive& receive) {
  for (;;) {
    auto event = co_await receive();
    if (auto* gone = std::get_if<protocol::WebSocketDisconnect>(&event)) co_return gone->code;
    auto* received = std::get_if<protocol::WebSocketReceive>(&event);
    if (!received || !handlers.on_message) continue;
    protocol::WebSocketMessage message = std::move(*received);
    co_await handlers.on_message(ws, std::move(message));
  }
}

// Takes a connection out of every group when its app ends, however it ends.
struct LeaveGroupsAtEnd {
  const WebSocket& ws;
  ~LeaveGroupsAtEnd() { groups().discard_all(ws); }
};

}  // namespace

WebSocket::WebSocket(protocol::Scope scope, Send send) : scope_(std::move(scope)), send_(std::move(send)) {}

awaitable<void> WebSocket::send_text(std::string text) { return send_(websocket_text(std::move(text))); }

awaitable<void> WebSocket::send_bytes(std::string bytes) { return send_(websocket_bytes(std::move(bytes))); }

awaitable<void> WebSocket::close(int code, std::string reason) {
  closed_ = true;
  return send_(websocket_close(code, std::move(reason)));
}

awaitable<void> WebSocket::subscribe(std::string channel) { return send_(broadcast_subscribe(std::move(channel))); }

awaitable<void> WebSocket::unsubscribe(std::string channel) { return send_(broadcast_unsubscribe(std::move(channel))); }

void WebSocket::post_text(std::string text) { post(websocket_text(std::move(text))); }

void WebSocket::post_bytes(std::string bytes) { post(websocket_bytes(std::move(bytes))); }

void WebSocket::post(protocol::WebSocketSend msg) {
  // Hop onto the connection's thread first: everything below is unshared.
  boost::asio::post(send_.executor(), [self = shared_from_this(), msg = std::move(msg)]() mutable {
    if (self->closed_ || self->posted_ >= k_max_posted) return;
    ++self->posted_;
    auto executor = self->send_.executor();
    boost::asio::co_spawn(executor, send_posted(std::move(self), std::move(msg)), boost::asio::detached);
  });
}

awaitable<void> WebSocket::send_posted(std::shared_ptr<WebSocket> self, protocol::WebSocketSend msg) {
  try {
    co_await self->send_(std::move(msg));
  } catch (const std::exception&) {
    // Closed meanwhile, or not accepted yet: a posted message is best effort.
  }
  --self->posted_;
}

App websocket_app(WebSocketHandlers handlers) {
  return [handlers = std::move(handlers)](protocol::Scope scope, Receive receive, Send send) -> awaitable<void> {
    if (scope.type != protocol::ScopeType::websocket) {
      co_await not_found(send);
      co_return;
    }
    co_await receive();  // websocket.connect
    auto ws = std::make_shared<WebSocket>(std::move(scope), send);
    LeaveGroupsAtEnd leave_groups{*ws};
    bool accept = handlers.on_connect ? co_await handlers.on_connect(ws) : true;
    if (ws->closed()) co_return;  // on_connect refused with its own close
    if (!accept) {
      co_await ws->close();
      co_return;
    }
    co_await send(websocket_accept());
    int code = co_await serve_messages(handlers, ws, receive);
    ws->mark_closed();
    if (handlers.on_disconnect) co_await handlers.on_disconnect(ws, code);
  };
}

}  // namespace asgi_bridge::worker
