#include "flow_control.hpp"

#include <algorithm>

#include "asgi_bridge/protocol/envelope.hpp"

namespace asgi_bridge::worker::detail {

FlowControl::FlowControl(std::uint64_t window) : window_(window) {}

std::uint64_t FlowControl::consumed() {
  if (++consumed_ < protocol::k_event_ack_batch) return 0;
  consumed_ = 0;
  return protocol::k_event_ack_batch;
}

void FlowControl::acknowledged(std::uint64_t bytes) { unacked_ -= std::min(bytes, unacked_); }

}  // namespace asgi_bridge::worker::detail
