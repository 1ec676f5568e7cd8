#pragma once
// A worker keys its connections by (gateway id, connection id): connection
// ids are only unique per gateway (docs/protocol.md §2.2).
#include <cstdint>
#include <functional>
#include <string>

namespace asgi_bridge::worker::detail {

struct ConnKey {
  std::string gateway_id;
  std::uint64_t conn_id = 0;
  friend bool operator==(const ConnKey&, const ConnKey&) = default;
};

struct ConnKeyHash {
  std::size_t operator()(const ConnKey& key) const {
    return std::hash<std::string>{}(key.gateway_id) ^ (std::hash<std::uint64_t>{}(key.conn_id) * 31);
  }
};

}  // namespace asgi_bridge::worker::detail
