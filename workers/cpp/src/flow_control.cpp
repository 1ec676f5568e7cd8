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

std::uint64_t payload_size(const protocol::Event& event) {
  if (auto* body = std::get_if<protocol::HttpResponseBody>(&event)) return body->body.size();
  if (auto* send = std::get_if<protocol::WebSocketSend>(&event)) return send->data.size();
  if (auto* body = std::get_if<protocol::WebSocketHttpResponseBody>(&event)) return body->body.size();
  return 0;
}

}  // namespace asgi_bridge::worker::detail
