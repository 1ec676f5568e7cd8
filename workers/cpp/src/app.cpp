#include "asgi_bridge/worker/app.hpp"

#include "connection.hpp"

namespace asgi_bridge::worker {

Receive::Receive(std::shared_ptr<detail::Connection> connection) : connection_(std::move(connection)) {}

boost::asio::awaitable<protocol::Event> Receive::operator()() const { return connection_->receive(); }

Send::Send(std::shared_ptr<detail::Connection> connection) : connection_(std::move(connection)) {}

boost::asio::awaitable<void> Send::operator()(protocol::Event event) const {
  return connection_->send(std::move(event));
}

boost::asio::any_io_executor Send::executor() const { return connection_->executor(); }

App combine(App http, App websocket) {
  return [http = std::move(http), websocket = std::move(websocket)](protocol::Scope scope, Receive receive,
                                                                    Send send) -> boost::asio::awaitable<void> {
    // Returns the callee's awaitable: this lambda's frame is never suspended,
    // so its captures need not outlive the connection.
    const App& app = scope.type == protocol::ScopeType::http ? http : websocket;
    return app(std::move(scope), std::move(receive), std::move(send));
  };
}

}  // namespace asgi_bridge::worker
