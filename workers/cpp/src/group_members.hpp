#pragma once
// Who is in which group, in this process. Not thread-safe: Groups locks.
// add/discard say when a group gains its first member or loses its last,
// the moments to subscribe and unsubscribe on the bus. Members are held
// weakly (and keyed by address, replaced when the old one is gone): a
// socket nobody discarded leaves no ghost that keeps it alive.
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "asgi_bridge/worker/websocket.hpp"

namespace asgi_bridge::worker::detail {

class GroupMembers {
 public:
  // True when `group` had no member before.
  bool add(const std::string& group, const WebSocketPtr& member);
  // True when `group` had `member` and has no member left.
  bool discard(const std::string& group, const WebSocket* member);
  // The groups `member` was in that have no member left.
  std::vector<std::string> discard_all(const WebSocket* member);
  // The live members of `group`.
  std::vector<WebSocketPtr> members(const std::string& group) const;
  std::vector<std::string> groups() const;

 private:
  using Members = std::unordered_map<const WebSocket*, std::weak_ptr<WebSocket>>;
  std::unordered_map<std::string, Members> groups_;
  std::unordered_map<const WebSocket*, std::unordered_set<std::string>> memberships_;
};

}  // namespace asgi_bridge::worker::detail
