#pragma once
// Gateway-side broadcast (docs/broadcast.md): a WebSocket's app subscribes
// the socket to channels (WebSocket::subscribe, or the asgi-bridge.subscribe
// event), and a publish to a channel is written by every gateway to every
// subscribed socket, with no per-socket work in any worker.
//
//   co_await ws->subscribe("prices");          // in on_connect, after accept
//   publish_text("prices", "EUR/USD 1.0842");  // anywhere, any thread
//
// A publish costs one bus message per gateway (ZeroMQ) or one Redis
// PUBLISH, whatever the number of subscribers. Best effort: at most once per
// socket, in publish order per socket.
#include <string>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::worker {

namespace detail {
// Implemented by the running worker: its bus thread sends the publish.
class BroadcastBus {
 public:
  virtual ~BroadcastBus() = default;
  virtual void publish_channel(const std::string& channel, protocol::WebSocketSend message) = 0;
};
void attach_broadcast(BroadcastBus* bus);  // nullptr: none
}  // namespace detail

// Any thread. Throws InvalidEvent for a bad channel name (1-128 bytes of
// letters, digits, - _ . : / @) or text that is not UTF-8; false when no
// worker runs in this process (nothing was sent).
bool publish_text(const std::string& channel, std::string text);
bool publish_bytes(const std::string& channel, std::string bytes);

}  // namespace asgi_bridge::worker
