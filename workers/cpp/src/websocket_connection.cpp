#include "websocket_connection.hpp"

#include <string>

namespace asgi_bridge::worker::detail {

WebSocketConnection::WebSocketConnection(const boost::asio::any_io_executor& executor, protocol::Scope&& scope,
                                         ConnectionInfo info, Emit emit)
    : Connection(executor, std::move(scope), std::move(info), std::move(emit)) {}

bool WebSocketConnection::expects(const protocol::Event& event) const {
  return std::holds_alternative<protocol::WebSocketReceive>(event) ||
         std::holds_alternative<protocol::WebSocketDisconnect>(event);
}

void WebSocketConnection::on_incoming(protocol::Event event) {
  // Sends raise from now on; messages queued before it are still received.
  if (std::holds_alternative<protocol::WebSocketDisconnect>(event)) disconnected_ = true;
  queue_.push_back(std::move(event));
}

void WebSocketConnection::gateway_lost() {
  // §6: the apps of a dead gateway see an abnormal closure.
  feed(protocol::WebSocketDisconnect{1006, ""});
}

void WebSocketConnection::shut_down() {
  if (!over()) {
    if (state_ == State::open) {
      // 1012 "service restart" for the client (the gateway stays: come back)
      // rather than the 1011 an error gives; docs/architecture.md's contract.
      close();
      emit_event(protocol::WebSocketClose{1012, ""});
    } else {
      fail("worker shut down before the application finished");
    }
  }
  feed(protocol::WebSocketDisconnect{1012, ""});
}

boost::asio::awaitable<protocol::Event> WebSocketConnection::receive() {
  for (;;) {
    if (last_disconnect_) co_return *last_disconnect_;
    if (!queue_.empty()) {
      auto event = take();
      if (auto* disconnect = std::get_if<protocol::WebSocketDisconnect>(&event)) last_disconnect_ = *disconnect;
      co_return event;
    }
    if (failed_ || (state_ == State::closed && !accepted_)) {
      // Refused or failed before the handshake completed: the gateway sends
      // no disconnect for it, so make one rather than hang the app.
      last_disconnect_ = protocol::WebSocketDisconnect{1006, ""};
      continue;
    }
    co_await wait_for_change();
  }
}

void WebSocketConnection::advance(const protocol::Event& event) {
  auto type = protocol::event_type(event);
  if (disconnected_ || failed_) throw ClientDisconnected("client disconnected");
  if (state_ == State::closed) throw ClientDisconnected(std::string(type) + " after the WebSocket was closed");
  if (std::holds_alternative<protocol::WebSocketSend>(event)) {
    if (state_ != State::open) throw UnexpectedMessage("websocket.send before websocket.accept");
  } else if (std::holds_alternative<protocol::WebSocketAccept>(event)) {
    if (state_ != State::connecting) {
      throw UnexpectedMessage(state_ == State::open ? "websocket.accept sent twice"
                                                    : "websocket.accept after websocket.http.response.start");
    }
    state_ = State::open;
    accepted_ = true;
  } else if (std::holds_alternative<protocol::WebSocketClose>(event)) {
    if (state_ == State::denying) throw UnexpectedMessage("websocket.close during a denial response");
    close();
  } else if (std::holds_alternative<protocol::WebSocketHttpResponseStart>(event)) {
    if (state_ != State::connecting) {
      throw UnexpectedMessage("websocket.http.response.start is only allowed before websocket.accept, once");
    }
    state_ = State::denying;
  } else if (std::holds_alternative<protocol::BroadcastSubscribe>(event) ||
             std::holds_alternative<protocol::BroadcastUnsubscribe>(event)) {
    track_subscription(event);
  } else if (auto* body = std::get_if<protocol::WebSocketHttpResponseBody>(&event)) {
    if (state_ != State::denying) {
      throw UnexpectedMessage("websocket.http.response.body before websocket.http.response.start");
    }
    if (!body->more_body) close();
  } else {
    throw UnexpectedMessage(std::string(type) + " cannot be sent on a WebSocket connection");
  }
}

// docs/broadcast.md: after accept only, and at most k_max_subscriptions
// channels at once (the gateway closes the socket 1011 past it).
void WebSocketConnection::track_subscription(const protocol::Event& event) {
  auto type = protocol::event_type(event);
  if (state_ != State::open) throw UnexpectedMessage(std::string(type) + " before websocket.accept");
  if (const auto* leaving = std::get_if<protocol::BroadcastUnsubscribe>(&event)) {
    channels_.erase(leaving->channel);
    return;
  }
  const auto& channel = std::get<protocol::BroadcastSubscribe>(event).channel;
  if (channels_.count(channel) == 0 && channels_.size() >= k_max_subscriptions) {
    throw InvalidEvent("asgi-bridge.subscribe: already subscribed to " + std::to_string(k_max_subscriptions) +
                       " channels, the limit per WebSocket");
  }
  channels_.insert(channel);
}

void WebSocketConnection::close() {
  state_ = State::closed;
  changed();
}

void WebSocketConnection::on_return() {
  if (over()) return;
  if (state_ == State::open) {
    // The app forgot to close: close normally on its behalf (protocol §7.4).
    close();
    emit_event(protocol::WebSocketClose{1000, ""});
  } else if (state_ == State::denying) {
    fail("application returned without completing the denial response");
  } else {
    fail("application returned without accepting or closing the WebSocket");
  }
}

}  // namespace asgi_bridge::worker::detail
