#pragma once
// A single-consumer queue a session's coroutine awaits, fed from the same
// shard thread (bus deliveries are posted there first). A steady_timer serves
// as the wake-up: push() cancels it, pop() waits on it with a deadline.
#include <chrono>
#include <deque>
#include <optional>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "session_event.hpp"

namespace asgi_bridge::gateway {

class Inbox {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Inbox(const boost::asio::any_io_executor& executor) : wake_(executor) {}

  void push(SessionEvent event) {
    items_.push_back(std::move(event));
    wake_.cancel();
  }

  // The next event, or nullopt once `deadline` passes with nothing queued.
  boost::asio::awaitable<std::optional<SessionEvent>> pop(Clock::time_point deadline = Clock::time_point::max()) {
    while (items_.empty()) {
      if (Clock::now() >= deadline) co_return std::nullopt;
      wake_.expires_at(deadline);
      boost::system::error_code ec;
      co_await wake_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    }
    SessionEvent event = std::move(items_.front());
    items_.pop_front();
    co_return event;
  }

 private:
  std::deque<SessionEvent> items_;
  boost::asio::steady_timer wake_;
};

}  // namespace asgi_bridge::gateway
