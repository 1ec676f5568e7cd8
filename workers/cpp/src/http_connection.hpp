#pragma once
// The ASGI HTTP state machine on the app's send():
//   start --http.response.start--> body --body(more_body=false)--> done
//   (with trailers=true: body --final body--> trailers --trailers--> done)
// and receive() that returns http.disconnect once the client left, the app
// failed, or the response is complete.
#include "connection.hpp"

namespace asgi_bridge::worker::detail {

class HttpConnection final : public Connection {
 public:
  HttpConnection(const boost::asio::any_io_executor& executor, protocol::Scope&& scope, ConnectionInfo info,
                 Emit emit);

  void gateway_lost() override;
  void shut_down() override;
  boost::asio::awaitable<protocol::Event> receive() override;

 private:
  enum class State { start, body, trailers, done };

  bool expects(const protocol::Event& event) const override;
  void on_incoming(protocol::Event event) override;
  void advance(const protocol::Event& event) override;
  bool complete() const override { return state_ == State::done; }
  void on_return() override;

  void finish_body();

  State state_ = State::start;
  bool trailers_ = false;  // the response start asked for trailers
};

}  // namespace asgi_bridge::worker::detail
