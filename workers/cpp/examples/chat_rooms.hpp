#pragma once
// Who is in which chat room, in this worker process. Members of one room may
// run on different app threads (--threads), so the membership lists are
// guarded by a mutex; the messages themselves cross threads with
// WebSocket::post_*, after the lock is released.
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "asgi_bridge/worker/websocket.hpp"

namespace chat {

class ChatRooms {
 public:
  void join(const std::string& room, const asgi_bridge::worker::WebSocketPtr& member);
  void leave(const std::string& room, const asgi_bridge::worker::WebSocketPtr& member);
  // To every member of the room, the sender included.
  void broadcast(const std::string& room, const asgi_bridge::protocol::WebSocketMessage& message);

 private:
  std::vector<asgi_bridge::worker::WebSocketPtr> members(const std::string& room);

  std::mutex mutex_;
  // Weak: an app that ends without on_disconnect (it threw) leaves no ghost.
  std::unordered_map<std::string, std::vector<std::weak_ptr<asgi_bridge::worker::WebSocket>>> rooms_;
};

}  // namespace chat
