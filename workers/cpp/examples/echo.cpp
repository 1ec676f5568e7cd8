// asgi-bridge-example-echo: HTTP answers with the request body (and its
// content type); a WebSocket gets every message back as it came, text as
// text and bytes as bytes.
#include "asgi_bridge/worker/http.hpp"
#include "asgi_bridge/worker/run.hpp"
#include "asgi_bridge/worker/websocket.hpp"

using namespace asgi_bridge::worker;
using boost::asio::awaitable;

namespace {

// Asynchronous only to own the request: its body is moved into the response,
// not copied (a 64 KiB body is the benchmark's POST echo).
awaitable<Response> echo_body(Request request) {
  Response response;
  auto type = request.header("content-type");
  response.headers.push_back({"content-type", std::string(type.value_or("application/octet-stream"))});
  response.body = std::move(request.body);
  co_return response;
}

awaitable<void> echo_message(WebSocketPtr ws, asgi_bridge::protocol::WebSocketMessage message) {
  if (message.text) {
    co_await ws->send_text(std::move(message.data));
  } else {
    co_await ws->send_bytes(std::move(message.data));
  }
}

}  // namespace

int main(int argc, char** argv) {
  WebSocketHandlers handlers;
  handlers.on_message = echo_message;
  auto app = combine(async_http_app(echo_body), websocket_app(std::move(handlers)));
  return run_main(std::move(app), argc, argv, "asgi-bridge example worker: HTTP and WebSocket echo");
}
