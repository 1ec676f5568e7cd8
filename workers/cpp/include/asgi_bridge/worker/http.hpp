#pragma once
// The HTTP convenience layer: a function from a whole request to a whole
// response, for apps that need neither streaming nor trailers.
//
//   auto app = http_app([](const Request& request) {
//     return Response::text("Hello, " + std::string(request.path()));
//   });
#include <utility>  // before Asio: 1.74's awaitable.hpp needs std::exchange

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "asgi_bridge/worker/app.hpp"

namespace asgi_bridge::worker {

struct Request {
  protocol::Scope scope;
  std::string body;  // the whole body, however many http.request events it took

  std::string_view method() const { return scope.method; }
  std::string_view path() const { return scope.path; }
  std::string_view query_string() const { return scope.query_string; }
  // The first value of header `name` (give it in lower case), if any.
  std::optional<std::string_view> header(std::string_view name) const;
};

struct Response {
  int status = 200;
  protocol::Headers headers;  // content-length is added when absent
  std::string body;

  // A text/plain; charset=utf-8 response.
  static Response text(std::string body, int status = 200);
};

using HttpHandler = std::function<Response(const Request&)>;
using AsyncHttpHandler = std::function<boost::asio::awaitable<Response>(Request)>;

// Reads the whole body, calls the handler, sends its response. A client that
// leaves before the body is in never reaches the handler. A handler that
// throws makes the client get a 500. A WebSocket scope is refused (403).
App http_app(HttpHandler handler);
App async_http_app(AsyncHttpHandler handler);

}  // namespace asgi_bridge::worker
