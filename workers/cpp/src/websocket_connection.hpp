#pragma once
// The ASGI WebSocket state machine on the app's send():
//   connecting --accept--> open --close--> closed
//   connecting --close--> closed (the client gets 403)
//   connecting --websocket.http.response.start--> denying --final body--> closed
// and receive() that, once a websocket.disconnect arrived, returns it again on
// every later call.
#include <cstddef>
#include <optional>
#include <set>
#include <string>

#include "connection.hpp"

namespace asgi_bridge::worker::detail {

class WebSocketConnection final : public Connection {
 public:
  WebSocketConnection(const boost::asio::any_io_executor& executor, protocol::Scope&& scope, ConnectionInfo info,
                      Emit emit);

  void gateway_lost() override;
  void shut_down() override;
  boost::asio::awaitable<protocol::Event> receive() override;

 private:
  enum class State { connecting, denying, open, closed };

  bool expects(const protocol::Event& event) const override;
  void on_incoming(protocol::Event event) override;
  void advance(const protocol::Event& event) override;
  bool complete() const override { return state_ == State::closed; }
  void on_return() override;

  void close();
  void track_subscription(const protocol::Event& event);

  static constexpr std::size_t k_max_subscriptions = 64;  // as the gateway's (docs/broadcast.md)
  State state_ = State::connecting;
  std::set<std::string> channels_;  // asgi-bridge.broadcast subscriptions
  bool accepted_ = false;
  std::optional<protocol::WebSocketDisconnect> last_disconnect_;
};

}  // namespace asgi_bridge::worker::detail
