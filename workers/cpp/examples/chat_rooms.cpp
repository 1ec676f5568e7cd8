#include "chat_rooms.hpp"

#include <algorithm>

namespace chat {

using asgi_bridge::worker::WebSocket;
using asgi_bridge::worker::WebSocketPtr;

void ChatRooms::join(const std::string& room, const WebSocketPtr& member) {
  std::lock_guard lock(mutex_);
  rooms_[room].push_back(member);
}

void ChatRooms::leave(const std::string& room, const WebSocketPtr& member) {
  std::lock_guard lock(mutex_);
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return;
  auto& list = it->second;
  list.erase(std::remove_if(list.begin(), list.end(),
                            [&](const std::weak_ptr<WebSocket>& m) {
                              auto locked = m.lock();
                              return !locked || locked == member;
                            }),
             list.end());
  if (list.empty()) rooms_.erase(it);
}

std::vector<WebSocketPtr> ChatRooms::members(const std::string& room) {
  std::vector<WebSocketPtr> out;
  std::lock_guard lock(mutex_);
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return out;
  for (const auto& weak : it->second) {
    if (auto member = weak.lock()) out.push_back(std::move(member));
  }
  return out;
}

void ChatRooms::broadcast(const std::string& room, const asgi_bridge::protocol::WebSocketMessage& message) {
  for (const auto& member : members(room)) {
    if (message.text) {
      member->post_text(message.data);
    } else {
      member->post_bytes(message.data);
    }
  }
}

}  // namespace chat
