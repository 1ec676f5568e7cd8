#pragma once
// The per-connection credit arithmetic of docs/protocol.md §5, without any
// I/O so that it can be tested on its own.
//  - events in: the gateway keeps at most 16 unacknowledged; we acknowledge
//    every 8 the app has taken with receive();
//  - bytes out: a payload may go while at most `window` bytes are
//    unacknowledged (so the last one may overshoot by its own size).
#include <cstdint>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::worker::detail {

class FlowControl {
 public:
  explicit FlowControl(std::uint64_t window);

  // The app took one event: how many to acknowledge now (0, or a batch).
  std::uint64_t consumed();

  bool can_send() const { return unacked_ <= window_; }
  void sent(std::uint64_t bytes) { unacked_ += bytes; }
  // The gateway wrote `bytes` of ours to the client.
  void acknowledged(std::uint64_t bytes);

  std::uint64_t unacknowledged() const { return unacked_; }
  std::uint64_t window() const { return window_; }

 private:
  std::uint64_t window_;
  std::uint64_t unacked_ = 0;
  std::uint64_t consumed_ = 0;  // since the last acknowledgement
};

}  // namespace asgi_bridge::worker::detail
