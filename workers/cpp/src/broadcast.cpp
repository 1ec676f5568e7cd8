#include "asgi_bridge/worker/broadcast.hpp"

#include <mutex>

#include "asgi_bridge/worker/events.hpp"
#include "event_check.hpp"

namespace asgi_bridge::worker {
namespace {

std::mutex g_mutex;
detail::BroadcastBus* g_bus = nullptr;  // guarded by g_mutex

bool publish(const std::string& channel, protocol::WebSocketSend message) {
  detail::check_channel(channel, "publish");
  detail::check_event_values(message);
  std::lock_guard lock(g_mutex);
  if (g_bus == nullptr) return false;
  g_bus->publish_channel(channel, std::move(message));
  return true;
}

}  // namespace

void detail::attach_broadcast(BroadcastBus* bus) {
  std::lock_guard lock(g_mutex);
  g_bus = bus;
}

bool publish_text(const std::string& channel, std::string text) {
  return publish(channel, websocket_text(std::move(text)));
}

bool publish_bytes(const std::string& channel, std::string bytes) {
  return publish(channel, websocket_bytes(std::move(bytes)));
}

}  // namespace asgi_bridge::worker
