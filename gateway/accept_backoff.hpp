#pragma once
// The pause after a failed accept. Out of descriptors (EMFILE/ENFILE), the
// pending connection stays in the backlog and the listening socket stays
// readable: accepting again at once fails again at once, a loop at 100 % CPU
// that logs a line per turn. The pause doubles from 50 ms to 1 s while
// accepts keep failing and starts over after one succeeds.
#include <algorithm>
#include <chrono>

namespace asgi_bridge::gateway {

class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds k_first{50};
  static constexpr std::chrono::milliseconds k_max{1000};

  // The pause before the next attempt after a failure.
  std::chrono::milliseconds next() {
    auto pause = delay_;
    delay_ = std::min(delay_ * 2, k_max);
    return pause;
  }
  void succeeded() { delay_ = k_first; }

 private:
  std::chrono::milliseconds delay_ = k_first;
};

}  // namespace asgi_bridge::gateway
