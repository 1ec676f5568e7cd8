#pragma once
// Comma-separated lists: HTTP's #list header values (RFC 9110 §5.6.1) and
// option values such as --trusted-proxies.
#include <string_view>
#include <vector>

namespace asgi_bridge::gateway {

// The items of `list` in order, spaces and tabs around each trimmed, empty
// items skipped. The views point into `list`.
inline std::vector<std::string_view> list_items(std::string_view list) {
  std::vector<std::string_view> items;
  while (true) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) items.push_back(item);
    if (comma == std::string_view::npos) return items;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace asgi_bridge::gateway
