#include "group_members.hpp"

namespace asgi_bridge::worker::detail {

bool GroupMembers::add(const std::string& group, const WebSocketPtr& member) {
  auto [it, first] = groups_.try_emplace(group);
  it->second[member.get()] = member;  // replaces a dead socket that had this address
  memberships_[member.get()].insert(group);
  return first;
}

bool GroupMembers::discard(const std::string& group, const WebSocket* member) {
  auto it = groups_.find(group);
  if (it == groups_.end() || it->second.erase(member) == 0) return false;
  if (auto membership = memberships_.find(member); membership != memberships_.end()) {
    membership->second.erase(group);
    if (membership->second.empty()) memberships_.erase(membership);
  }
  if (!it->second.empty()) return false;
  groups_.erase(it);
  return true;
}

std::vector<std::string> GroupMembers::discard_all(const WebSocket* member) {
  std::vector<std::string> emptied;
  auto membership = memberships_.find(member);
  if (membership == memberships_.end()) return emptied;
  auto names = std::move(membership->second);
  memberships_.erase(membership);
  for (const auto& group : names) {
    auto it = groups_.find(group);
    if (it == groups_.end()) continue;
    it->second.erase(member);
    if (it->second.empty()) {
      groups_.erase(it);
      emptied.push_back(group);
    }
  }
  return emptied;
}

std::vector<WebSocketPtr> GroupMembers::members(const std::string& group) const {
  std::vector<WebSocketPtr> out;
  auto it = groups_.find(group);
  if (it == groups_.end()) return out;
  out.reserve(it->second.size());
  for (const auto& [address, weak] : it->second) {
    if (auto member = weak.lock()) out.push_back(std::move(member));
  }
  return out;
}

std::vector<std::string> GroupMembers::groups() const {
  std::vector<std::string> out;
  out.reserve(groups_.size());
  for (const auto& [name, members] : groups_) out.push_back(name);
  return out;
}

}  // namespace asgi_bridge::worker::detail
