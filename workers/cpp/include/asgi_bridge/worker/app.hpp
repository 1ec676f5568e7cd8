#pragma once
// The ASGI application interface in C++: an app is a coroutine called once
// per connection with its scope and with receive/send handles.
//
//   boost::asio::awaitable<void> app(protocol::Scope scope, Receive receive, Send send) {
//     auto event = co_await receive();                       // protocol::Event
//     co_await send(response_start(200));                    // events.hpp
//     co_await send(response_body("hi"));
//   }
//
// Build events with the functions of events.hpp (or in a statement of their
// own), never as a braced temporary inside co_await: GCC 12 miscompiles that.
//
// The SDK runs the app on one thread for its whole life; receive and send must
// be called from the app's own coroutines (use WebSocket::post_* from
// elsewhere). Anything the app's coroutines capture must outlive them.
#include <utility>  // before Asio: 1.74's awaitable.hpp needs std::exchange

#include <functional>
#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "asgi_bridge/protocol/events.hpp"
#include "asgi_bridge/protocol/scope.hpp"
#include "asgi_bridge/worker/errors.hpp"

namespace asgi_bridge::worker {

namespace detail {
class Connection;
}

// receive(): the next event of this connection from the gateway
// (http.request / http.disconnect, websocket.connect / .receive / .disconnect).
// Once the connection is over it keeps returning the disconnect event.
class Receive {
 public:
  explicit Receive(std::shared_ptr<detail::Connection> connection);
  boost::asio::awaitable<protocol::Event> operator()() const;

 private:
  std::shared_ptr<detail::Connection> connection_;
};

// send(event): hands one event to the gateway, in order. Throws InvalidEvent,
// UnexpectedMessage or ClientDisconnected (errors.hpp). A payload (body,
// WebSocket message) waits while the connection's byte window is exhausted,
// i.e. while the client is slower than the app.
class Send {
 public:
  explicit Send(std::shared_ptr<detail::Connection> connection);
  boost::asio::awaitable<void> operator()(protocol::Event event) const;
  // The executor (thread) this connection's app runs on.
  boost::asio::any_io_executor executor() const;

 private:
  std::shared_ptr<detail::Connection> connection_;
};

using App = std::function<boost::asio::awaitable<void>(protocol::Scope, Receive, Send)>;

// One app serving both connection types: http scopes go to `http`, websocket
// scopes to `websocket`.
App combine(App http, App websocket);

}  // namespace asgi_bridge::worker
