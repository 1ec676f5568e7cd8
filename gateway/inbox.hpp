#pragma once
// A single-consumer queue a session's coroutine awaits, fed from the same
// shard thread (bus deliveries are posted there first). A steady_timer serves
// as the wake-up: push() cancels it, wait() waits on it with a deadline.
//
// Sized for many idle connections: a vector (not a deque, which keeps a
// 512-byte node even when empty) whose storage is given back before every
// wait, so a WebSocket that idles for hours holds no queue memory.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "session_event.hpp"

namespace asgi_bridge::gateway {

// A session that can handle some of its worker's messages the moment they
// arrive, when nothing is queued before them (a WebSocket writes a
// websocket.send's frame from the delivery itself): no queue entry, no
// wake-up, no coroutine resume.
class DirectTaker {
 public:
  virtual ~DirectTaker() = default;
  // True when the message was handled; false leaves it to the queue.
  virtual bool take_now(WorkerMessage& message) = 0;
};

class Inbox {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Inbox(const boost::asio::any_io_executor& executor) : wake_(executor) {}

  // Built in place from the alternative (ClientGone{}, a WorkerMessage...):
  // moving a whole SessionEvent in makes GCC 12 at -O2 warn, falsely, of
  // WorkerMessage fields read uninitialized.
  template <typename Event>
  void push(Event&& event) {
    // An HTTP response's start and body usually come in the same bus batch:
    // room for both at once, not a second allocation that moves the first.
    if (items_.capacity() == 0) items_.reserve(2);
    items_.emplace_back(std::forward<Event>(event));
    wake_.cancel();
  }

  bool empty() const { return head_ == items_.size(); }

  // Shard thread, before queuing a worker's message: its session takes it
  // at once when nothing is queued before it (order is kept).
  void take_directly(DirectTaker* taker) { taker_ = taker; }
  bool taken_now(WorkerMessage& message) { return taker_ && empty() && taker_->take_now(message); }

  // Empty and fresh again, for the next connection of the same session.
  // Only when no wait is pending and nobody else can push.
  void reset() {
    items_.clear();
    head_ = 0;
    worker_messages_ = 0;
    overflowed_ = false;
    taker_ = nullptr;
  }

  // The worker's messages wait here until the session takes them. The byte
  // window bounds their payloads; this bounds their number, since empty
  // messages weigh nothing in the window.
  static constexpr std::size_t k_max_worker_messages = 16384;
  enum class Admit { yes, overflow, dropped };

  // Asked before pushing a WorkerMessage. At the bound the queued ones are
  // dropped and the session hears that its worker failed it (overflow, once);
  // later ones are dropped.
  Admit admit_worker_message() {
    if (overflowed_) return Admit::dropped;
    if (worker_messages_ < k_max_worker_messages) {
      ++worker_messages_;
      return Admit::yes;
    }
    overflowed_ = true;
    auto from_worker = [](const SessionEvent& event) { return std::holds_alternative<WorkerMessage>(event); };
    items_.erase(std::remove_if(items_.begin() + static_cast<std::ptrdiff_t>(head_), items_.end(), from_worker),
                 items_.end());
    worker_messages_ = 0;
    push(BusFailure::worker_lost);
    return Admit::overflow;
  }

  // The next queued event, if any.
  std::optional<SessionEvent> try_pop() {
    if (empty()) return std::nullopt;
    std::optional<SessionEvent> event(std::move(items_[head_++]));
    if (worker_messages_ > 0 && std::holds_alternative<WorkerMessage>(*event)) --worker_messages_;
    if (empty()) {
      items_.clear();
      head_ = 0;
    }
    return event;
  }

  // Completes on the next push() or at `deadline`, whichever is first (or at
  // once, spuriously; callers re-check). Not a coroutine of its own: an idle
  // session waits with no frame but the timer operation's.
  boost::asio::awaitable<void> wait(Clock::time_point deadline = Clock::time_point::max()) {
    if (items_.empty()) std::vector<SessionEvent>().swap(items_);
    wake_.expires_at(deadline);
    return wake_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, wait_error_));
  }

  // The next event, or nullopt once `deadline` passes with nothing queued.
  boost::asio::awaitable<std::optional<SessionEvent>> pop(Clock::time_point deadline = Clock::time_point::max()) {
    while (empty()) {
      if (Clock::now() >= deadline) co_return std::nullopt;
      co_await wait(deadline);
    }
    co_return try_pop();
  }

 private:
  std::vector<SessionEvent> items_;
  std::size_t head_ = 0;  // items_[head_] is the next event
  std::size_t worker_messages_ = 0;  // WorkerMessages among the queued events
  bool overflowed_ = false;
  DirectTaker* taker_ = nullptr;  // cleared before its session goes
  boost::asio::steady_timer wake_;
  boost::system::error_code wait_error_;  // a cancel (push) or the deadline: either way, re-check
};

}  // namespace asgi_bridge::gateway
