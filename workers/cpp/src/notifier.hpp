#pragma once
// Wakes every coroutine waiting on it. Single-threaded: notify() and wait()
// run on the same io_context thread. A waiter re-checks its condition after
// waking, so a notify() with nobody waiting is simply not needed by anyone.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace asgi_bridge::worker::detail {

class Notifier {
 public:
  explicit Notifier(const boost::asio::any_io_executor& executor);

  // Returns after the next notify().
  boost::asio::awaitable<void> wait();
  void notify();

 private:
  // Never expires by itself: cancel() is the wake-up.
  boost::asio::steady_timer timer_;
};

}  // namespace asgi_bridge::worker::detail
