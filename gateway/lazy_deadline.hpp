#pragma once
// A deadline that is set and cleared far more often than it passes: an
// HTTP/1.1 connection sets its keep-alive and request-head deadlines for every
// request and clears both. With a plain steady_timer each set cancels the
// pending wait (a posted completion) and starts a new one (an allocation, the
// timer queue), and each clear cancels again. Here the wait stays armed:
// setting the deadline later than the pending wait, or clearing it, only
// stores the time; a wait that fires before the deadline waits again for it.
// Only a deadline earlier than the pending wait re-arms the timer. One thread.
#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace asgi_bridge::gateway {

class LazyDeadline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit LazyDeadline(const boost::asio::any_io_executor& executor) : timer_(executor) {}

  // Before the first set(): `on_due()` runs when a deadline passes, while
  // `owner` (what it refers to) still exists.
  void on_due(std::weak_ptr<void> owner, std::function<void()> on_due) {
    owner_ = std::move(owner);
    on_due_ = std::move(on_due);
  }

  void set(Clock::duration timeout) {
    due_ = Clock::now() + timeout;
    if (waiting_ && timer_.expiry() <= due_) return;  // that wait fires first and waits on
    wait_until(due_);
  }
  void clear() { due_ = Clock::time_point::max(); }

 private:
  void wait_until(Clock::time_point when) {
    waiting_ = true;
    timer_.expires_at(when);  // a pending wait completes as cancelled, and is ignored
    timer_.async_wait([this, owner = owner_](const boost::system::error_code& ec) {
      if (ec) return;  // replaced by a new wait, or the timer is gone
      auto alive = owner.lock();
      if (!alive) return;
      waiting_ = false;
      if (due_ == Clock::time_point::max()) return;
      if (Clock::now() < due_) return wait_until(due_);
      due_ = Clock::time_point::max();
      on_due_();
    });
  }

  boost::asio::steady_timer timer_;
  Clock::time_point due_ = Clock::time_point::max();
  bool waiting_ = false;
  std::weak_ptr<void> owner_;
  std::function<void()> on_due_;
};

}  // namespace asgi_bridge::gateway
