#include "asgi_bridge/worker/groups.hpp"

#include "asgi_bridge/worker/events.hpp"
#include "group_members.hpp"

namespace asgi_bridge::worker {
namespace {

void post_to(const std::vector<WebSocketPtr>& members, const protocol::WebSocketSend& message) {
  for (const auto& member : members) {
    if (message.text) {
      member->post_text(message.data);
    } else {
      member->post_bytes(message.data);
    }
  }
}

}  // namespace

Groups::Groups() : members_(std::make_unique<detail::GroupMembers>()) {}

Groups::~Groups() = default;

void Groups::add(const std::string& group, const WebSocketPtr& member) {
  std::lock_guard lock(mutex_);
  if (members_->add(group, member) && bus_) bus_->subscribe(group);
}

void Groups::discard(const std::string& group, const WebSocketPtr& member) {
  std::lock_guard lock(mutex_);
  if (members_->discard(group, member.get()) && bus_) bus_->unsubscribe(group);
}

void Groups::discard_all(const WebSocket& member) {
  std::lock_guard lock(mutex_);
  for (const auto& group : members_->discard_all(&member)) {
    if (bus_) bus_->unsubscribe(group);
  }
}

void Groups::send_text(const std::string& group, std::string text) { send(group, websocket_text(std::move(text))); }

void Groups::send_bytes(const std::string& group, std::string bytes) {
  send(group, websocket_bytes(std::move(bytes)));
}

// Other workers first: the copy for the bus is made under the lock, the
// local posts (one per member) after it.
void Groups::send(const std::string& group, protocol::WebSocketSend message) {
  std::vector<WebSocketPtr> local;
  {
    std::lock_guard lock(mutex_);
    if (bus_) bus_->publish(group, message);
    local = members_->members(group);
  }
  post_to(local, message);
}

void Groups::deliver(const std::string& group, const protocol::WebSocketSend& message) {
  std::vector<WebSocketPtr> local;
  {
    std::lock_guard lock(mutex_);
    local = members_->members(group);
  }
  post_to(local, message);
}

void Groups::attach(detail::GroupBus* bus) {
  std::lock_guard lock(mutex_);
  bus_ = bus;
  if (!bus_) return;
  for (const auto& group : members_->groups()) bus_->subscribe(group);
}

Groups& groups() {
  static Groups instance;
  return instance;
}

}  // namespace asgi_bridge::worker
