#pragma once
// Messages from any thread to one io_context thread, delivered in batches:
// the push that finds the queue empty posts one drain, and that drain hands
// over everything queued by then. Under load one wake-up (and one handler
// allocation) carries many messages instead of one each. Each producer's
// messages keep their order.
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

namespace asgi_bridge::gateway {

template <typename T>
class Mailbox {
 public:
  using Handler = std::function<void(T&&)>;

  Mailbox(boost::asio::io_context& io, Handler handler) : io_(io), handler_(std::move(handler)) {}
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // Any thread.
  void push(T message) {
    bool first;
    {
      std::lock_guard lock(mutex_);
      first = queued_.empty();
      queued_.push_back(std::move(message));
    }
    if (first) boost::asio::post(io_, [this] { drain(); });
  }

 private:
  // The io_context's thread. Swaps buffers so the vectors' capacity is reused.
  void drain() {
    {
      std::lock_guard lock(mutex_);
      std::swap(queued_, draining_);
    }
    for (auto& message : draining_) handler_(std::move(message));
    draining_.clear();
  }

  boost::asio::io_context& io_;
  Handler handler_;
  std::mutex mutex_;
  std::vector<T> queued_;
  std::vector<T> draining_;  // drain() only
};

}  // namespace asgi_bridge::gateway
