#pragma once
// Wakes every coroutine waiting on it. Single-threaded: notify() and wait()
// run on the same io_context thread. A waiter re-checks its condition after
// waking, so a notify() with nobody waiting is simply not needed by anyone.
#include <optional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace asgi_bridge::worker::detail {

class Notifier {
 public:
  // `executor` must outlive the Notifier (its Connection's own).
  explicit Notifier(const boost::asio::any_io_executor& executor) : executor_(executor) {}

  // Returns after the next notify().
  boost::asio::awaitable<void> wait();
  void notify() {
    if (timer_) timer_->cancel();
  }

 private:
  const boost::asio::any_io_executor& executor_;
  // Never expires by itself: cancel() is the wake-up. Made by the first
  // wait(): most HTTP requests never wait (the request is queued before the
  // app runs, the response goes out at once), and a timer costs a service
  // lookup under a lock to make and a cancel per notify().
  std::optional<boost::asio::steady_timer> timer_;
};

}  // namespace asgi_bridge::worker::detail
