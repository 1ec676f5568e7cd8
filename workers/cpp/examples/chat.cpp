// asgi-bridge-example-chat: chat rooms over WebSocket. Connect to /chat/ROOM;
// every message sent on one socket goes to every socket in the same room
// (the sender included), whichever worker process serves it: rooms are
// broadcast groups (asgi_bridge/worker/groups.hpp), which reach the other
// workers through the gateways on ZeroMQ and through pub/sub on Redis
// (docs/workers-cpp.md, "Chat rooms").
//
// /live: the same through the gateways' own broadcast (docs/broadcast.md):
// a text "sub:CHANNEL" or "unsub:CHANNEL" subscribes the socket at its
// gateway, "pub:CHANNEL:TEXT" publishes TEXT to every socket subscribed to
// CHANNEL on every gateway; each command is answered "ok COMMAND" (or
// "error WHY").
#include <optional>
#include <string>

#include "asgi_bridge/worker/broadcast.hpp"
#include "asgi_bridge/worker/groups.hpp"
#include "asgi_bridge/worker/http.hpp"
#include "asgi_bridge/worker/run.hpp"
#include "asgi_bridge/worker/websocket.hpp"

using namespace asgi_bridge::worker;
using boost::asio::awaitable;

namespace {

constexpr std::string_view k_prefix = "/chat/";

// "/chat/lobby" -> "lobby"; nullopt for any other path.
std::optional<std::string> room_of(std::string_view path) {
  if (path.substr(0, k_prefix.size()) != k_prefix || path.size() == k_prefix.size()) return std::nullopt;
  return std::string(path.substr(k_prefix.size()));
}

// /live: one command of the gateway broadcast demo; the answer to send back.
awaitable<std::string> live_command(WebSocketPtr ws, std::string command) {
  auto colon = command.find(':');
  auto verb = command.substr(0, colon);
  auto rest = colon == std::string::npos ? std::string() : command.substr(colon + 1);
  if (verb == "sub") {
    co_await ws->subscribe(rest);
  } else if (verb == "unsub") {
    co_await ws->unsubscribe(rest);
  } else if (verb == "pub") {
    auto split = rest.find(':');
    publish_text(rest.substr(0, split), split == std::string::npos ? std::string() : rest.substr(split + 1));
  } else {
    co_return "error unknown command";
  }
  co_return "ok " + command;
}

awaitable<void> on_live_message(WebSocketPtr ws, std::string command) {
  std::string answer;
  try {
    answer = co_await live_command(ws, std::move(command));
  } catch (const InvalidEvent& e) {
    answer = std::string("error ") + e.what();
  }
  co_await ws->send_text(std::move(answer));
}

// A socket leaves its room (and its gateway subscriptions) by itself when it ends.
WebSocketHandlers chat_handlers() {
  WebSocketHandlers handlers;
  handlers.on_connect = [](WebSocketPtr ws) -> awaitable<bool> {
    if (ws->path() == "/live") co_return true;
    auto room = room_of(ws->path());
    if (!room) co_return false;  // 403
    groups().add(*room, ws);
    co_return true;
  };
  handlers.on_message = [](WebSocketPtr ws, asgi_bridge::protocol::WebSocketMessage message) -> awaitable<void> {
    if (ws->path() == "/live") {
      co_await on_live_message(ws, std::move(message.data));
      co_return;
    }
    auto room = *room_of(ws->path());
    if (message.text) {
      groups().send_text(room, std::move(message.data));
    } else {
      groups().send_bytes(room, std::move(message.data));
    }
    co_return;
  };
  return handlers;
}

Response usage(const Request&) {
  return Response::text("chat: open a WebSocket to /chat/ROOM\n", 404);
}

}  // namespace

int main(int argc, char** argv) {
  auto app = combine(http_app(usage), websocket_app(chat_handlers()));
  return run_main(std::move(app), argc, argv, "asgi-bridge example worker: WebSocket chat rooms");
}
