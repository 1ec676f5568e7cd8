// asgi-bridge-example-chat: chat rooms over WebSocket. Connect to /chat/ROOM;
// every message sent on one socket goes to every socket in the same room
// served by this worker process (the sender included). A room spans the
// gateways this worker serves (on Redis: every gateway on the server), never
// other worker processes: cross-worker broadcast is not implemented, on
// either bus (docs/workers-cpp.md, "Chat rooms").
#include <optional>
#include <string>

#include "asgi_bridge/worker/http.hpp"
#include "asgi_bridge/worker/run.hpp"
#include "asgi_bridge/worker/websocket.hpp"
#include "chat_rooms.hpp"

using namespace asgi_bridge::worker;
using boost::asio::awaitable;

namespace {

constexpr std::string_view k_prefix = "/chat/";

// "/chat/lobby" -> "lobby"; nullopt for any other path.
std::optional<std::string> room_of(std::string_view path) {
  if (path.substr(0, k_prefix.size()) != k_prefix || path.size() == k_prefix.size()) return std::nullopt;
  return std::string(path.substr(k_prefix.size()));
}

WebSocketHandlers chat_handlers(chat::ChatRooms& rooms) {
  WebSocketHandlers handlers;
  handlers.on_connect = [&rooms](WebSocketPtr ws) -> awaitable<bool> {
    auto room = room_of(ws->path());
    if (!room) co_return false;  // 403
    rooms.join(*room, ws);
    co_return true;
  };
  handlers.on_message = [&rooms](WebSocketPtr ws, asgi_bridge::protocol::WebSocketMessage message) -> awaitable<void> {
    rooms.broadcast(*room_of(ws->path()), message);
    co_return;
  };
  handlers.on_disconnect = [&rooms](WebSocketPtr ws, int) -> awaitable<void> {
    rooms.leave(*room_of(ws->path()), ws);
    co_return;
  };
  return handlers;
}

Response usage(const Request&) {
  return Response::text("chat: open a WebSocket to /chat/ROOM\n", 404);
}

}  // namespace

int main(int argc, char** argv) {
  static chat::ChatRooms rooms;  // outlives every connection
  auto app = combine(http_app(usage), websocket_app(chat_handlers(rooms)));
  return run_main(std::move(app), argc, argv, "asgi-bridge example worker: WebSocket chat rooms");
}
