#include "http_connection.hpp"

#include <string>

namespace asgi_bridge::worker::detail {

HttpConnection::HttpConnection(const boost::asio::any_io_executor& executor, protocol::Scope&& scope,
                               ConnectionInfo info, Emit emit)
    : Connection(executor, std::move(scope), std::move(info), std::move(emit)) {}

bool HttpConnection::expects(const protocol::Event& event) const {
  return std::holds_alternative<protocol::HttpRequest>(event) ||
         std::holds_alternative<protocol::HttpDisconnect>(event);
}

void HttpConnection::on_incoming(protocol::Event event) {
  if (std::holds_alternative<protocol::HttpDisconnect>(event)) {
    disconnected_ = true;  // a body still queued is of no use any more
  } else {
    queue_.push_back(std::move(event));
  }
}

void HttpConnection::gateway_lost() {
  disconnected_ = true;
  changed();
}

void HttpConnection::shut_down() {
  fail("worker shut down before the application finished");
  gateway_lost();
}

boost::asio::awaitable<protocol::Event> HttpConnection::receive() {
  for (;;) {
    // ASGI: after the response is complete or the client left, only disconnect.
    if (disconnected_ || failed_ || state_ == State::done) co_return protocol::HttpDisconnect{};
    if (!queue_.empty()) co_return take();
    co_await wait_for_change();
  }
}

void HttpConnection::advance(const protocol::Event& event) {
  auto type = protocol::event_type(event);  // a string_view: no allocation per send
  if (disconnected_ || failed_) throw ClientDisconnected("client disconnected");
  if (state_ == State::done) throw ClientDisconnected(std::string(type) + " after the response was completed");
  if (auto* start = std::get_if<protocol::HttpResponseStart>(&event)) {
    if (state_ != State::start) throw UnexpectedMessage("http.response.start sent twice");
    state_ = State::body;
    trailers_ = start->trailers;
    if (start->body && !start->more_body) finish_body();  // a start with its whole body
  } else if (auto* body = std::get_if<protocol::HttpResponseBody>(&event)) {
    if (state_ == State::start) throw UnexpectedMessage("http.response.body before http.response.start");
    if (state_ == State::trailers) {
      throw UnexpectedMessage("http.response.body after the final body (expected http.response.trailers)");
    }
    if (!body->more_body) finish_body();
  } else if (auto* trailers = std::get_if<protocol::HttpResponseTrailers>(&event)) {
    if (state_ != State::trailers) {
      throw UnexpectedMessage(
          "http.response.trailers is only allowed after the final body of a response started with trailers=true");
    }
    if (!trailers->more_trailers) {
      state_ = State::done;
      changed();
    }
  } else {
    throw UnexpectedMessage(std::string(type) + " cannot be sent on an HTTP connection");
  }
}

void HttpConnection::finish_body() {
  state_ = trailers_ ? State::trailers : State::done;
  changed();  // a pending receive() now returns http.disconnect
}

void HttpConnection::on_return() {
  if (!over()) fail("application returned without completing the response");
}

}  // namespace asgi_bridge::worker::detail
