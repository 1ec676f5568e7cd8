#include "disconnect_sweep.hpp"

namespace asgi_bridge::gateway {

void DisconnectSweep::enrol(SweepWatched& exchange) {
  young_.push_back(exchange);
  if (!armed_) arm();
}

// Under steady load the timer stays armed (one wake-up a period); with
// nobody enrolled at a sweep it stops until the next enrolment.
void DisconnectSweep::arm() {
  armed_ = true;
  timer_.expires_after(k_period);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // only the timer's destruction cancels it: `this` is going
    armed_ = false;
    sweep();
  });
}

void DisconnectSweep::sweep() {
  // start_watch() may complete at once (an end of file already there), but
  // never runs session code inline: its handler is posted.
  while (!old_.empty()) {
    auto& exchange = old_.front();
    old_.pop_front();
    exchange.start_watch();
  }
  old_.swap(young_);
  if (!old_.empty()) arm();
}

}  // namespace asgi_bridge::gateway
