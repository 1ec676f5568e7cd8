#pragma once
// De-duplication of group messages. On ZeroMQ a worker connected to several
// gateways gets one copy of another worker's group message through each
// gateway both share. Each path is FIFO and a publisher numbers its messages
// 0, 1, 2..., so keeping the highest number seen per publisher lets the
// first copy of each message through, in order, and drops the rest. Bounded:
// past `max_origins` publishers the one heard from least recently is
// forgotten (publisher ids are per process start, so old ones pile up).
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace asgi_bridge::worker::detail {

class GroupSequences {
 public:
  explicit GroupSequences(std::size_t max_origins = 4096) : max_origins_(max_origins) {}

  // True when `seq` is above every number seen from `origin` so far.
  bool accept(const std::string& origin, std::uint64_t seq);
  std::size_t origins() const { return seen_.size(); }

 private:
  struct Seen {
    std::uint64_t seq = 0;
    std::uint64_t touched = 0;  // when we last heard from it, in accept() calls
  };
  void forget_oldest();

  std::size_t max_origins_;
  std::uint64_t clock_ = 0;
  std::unordered_map<std::string, Seen> seen_;
};

}  // namespace asgi_bridge::worker::detail
