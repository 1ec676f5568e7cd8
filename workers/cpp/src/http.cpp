#include "asgi_bridge/worker/http.hpp"

#include <algorithm>

#include "asgi_bridge/protocol/http_grammar.hpp"
#include "asgi_bridge/worker/events.hpp"

namespace asgi_bridge::worker {
namespace {

using boost::asio::awaitable;

using protocol::http::iequals;

// The whole body, or nullopt when the client left first or the scope is a
// WebSocket's (refused: the client gets 403). The caller builds the Request:
// a scope moved out of a coroutine's result is a dozen strings moved twice.
awaitable<std::optional<std::string>> read_body(const protocol::Scope& scope, const Receive& receive,
                                                const Send& send) {
  if (scope.type != protocol::ScopeType::http) {
    co_await send(websocket_close());  // before accept: the client gets 403
    co_return std::nullopt;
  }
  std::string body;
  for (;;) {
    auto event = co_await receive();
    auto* chunk = std::get_if<protocol::HttpRequest>(&event);
    if (!chunk) co_return std::nullopt;  // http.disconnect
    if (body.empty()) {
      body = std::move(chunk->body);  // most bodies come in one chunk: no copy
    } else {
      body += chunk->body;
    }
    if (!chunk->more_body) co_return body;
  }
}

// The whole response as one start that carries its body: the SDK sends it
// as one bus message where the gateway takes that, else as start and body.
// Not a coroutine: GCC 12 mishandles braced initialisers in coroutine bodies
// (asgi_bridge/worker/events.hpp).
protocol::HttpResponseStart start_of(Response& response) {
  bool has_length = std::any_of(response.headers.begin(), response.headers.end(),
                                [](const protocol::Header& h) { return iequals(h.name, "content-length"); });
  if (!has_length) response.headers.push_back({"content-length", std::to_string(response.body.size())});
  return {response.status, std::move(response.headers), false, std::move(response.body), false};
}

awaitable<void> send_response(Response response, const Send& send) { co_await send(start_of(response)); }

}  // namespace

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& h : scope.headers) {
    if (h.name == name) return std::string_view(h.value);
  }
  return std::nullopt;
}

Response Response::text(std::string body, int status) {
  return Response{status, {{"content-type", "text/plain; charset=utf-8"}}, std::move(body)};
}

App async_http_app(AsyncHttpHandler handler) {
  return [handler = std::move(handler)](protocol::Scope scope, Receive receive, Send send) -> awaitable<void> {
    auto body = co_await read_body(scope, receive, send);
    if (!body) co_return;
    Request request{std::move(scope), std::move(*body)};  // not inside co_await: see events.hpp
    auto response = co_await handler(std::move(request));
    co_await send_response(std::move(response), send);
  };
}

// Not through async_http_app: the handler is called directly, without a
// coroutine frame of its own and a move of the request into it.
App http_app(HttpHandler handler) {
  return [handler = std::move(handler)](protocol::Scope scope, Receive receive, Send send) -> awaitable<void> {
    auto body = co_await read_body(scope, receive, send);
    if (!body) co_return;
    Request request{std::move(scope), std::move(*body)};
    auto response = handler(request);
    co_await send_response(std::move(response), send);
  };
}

}  // namespace asgi_bridge::worker
