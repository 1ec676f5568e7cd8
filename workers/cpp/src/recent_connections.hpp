#pragma once
// The last N connections whose apps this worker finished. A late event for
// one of them (an http.disconnect after the response, a websocket.disconnect
// after the close) is not from an unknown connection and gets no `error`
// (docs/protocol.md §6). Bounded: the oldest are forgotten first.
#include <cstddef>
#include <deque>
#include <unordered_set>

#include "conn_key.hpp"

namespace asgi_bridge::worker::detail {

class RecentConnections {
 public:
  explicit RecentConnections(std::size_t limit) : limit_(limit) {}

  void insert(const ConnKey& key) {
    if (!set_.insert(key).second) return;
    order_.push_back(key);
    if (order_.size() > limit_) {
      set_.erase(order_.front());
      order_.pop_front();
    }
  }
  bool contains(const ConnKey& key) const { return set_.count(key) > 0; }

 private:
  std::size_t limit_;
  std::deque<ConnKey> order_;
  std::unordered_set<ConnKey, ConnKeyHash> set_;
};

}  // namespace asgi_bridge::worker::detail
