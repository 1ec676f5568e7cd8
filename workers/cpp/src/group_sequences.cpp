#include "group_sequences.hpp"

#include <algorithm>

namespace asgi_bridge::worker::detail {

bool GroupSequences::accept(const std::string& origin, std::uint64_t seq) {
  ++clock_;
  auto it = seen_.find(origin);
  if (it == seen_.end()) {
    if (seen_.size() >= max_origins_) forget_oldest();
    seen_.emplace(origin, Seen{seq, clock_});
    return true;
  }
  it->second.touched = clock_;
  if (seq <= it->second.seq) return false;
  it->second.seq = seq;
  return true;
}

// O(n), once per new publisher beyond the bound: rare.
void GroupSequences::forget_oldest() {
  auto oldest = std::min_element(seen_.begin(), seen_.end(),
                                 [](const auto& a, const auto& b) { return a.second.touched < b.second.touched; });
  if (oldest != seen_.end()) seen_.erase(oldest);
}

}  // namespace asgi_bridge::worker::detail
