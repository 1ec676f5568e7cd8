#pragma once
// --limit-connections: at most N client connections open at once (uvicorn's
// --limit-concurrency). Past it the listener answers 503 and closes, so that
// a flood of connections cannot take the last file descriptors the bus and
// the admin endpoint need (docs/security.md). A Slot is taken on the
// listener's thread and travels with the connection's stream to whichever
// session ends up owning it; the count drops when the stream is destroyed.
#include <atomic>
#include <cstddef>
#include <utility>

namespace asgi_bridge::gateway {

class ConnectionLimit {
 public:
  // Refused connections answered at once: each lingers a moment (it holds a
  // descriptor), so only this many at a time; the rest are closed unanswered.
  static constexpr std::size_t k_max_refusing = 16;

  // Held while a connection is open; empty when the limit refused it.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : count_(std::exchange(other.count_, nullptr)) {}
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        release();
        count_ = std::exchange(other.count_, nullptr);
      }
      return *this;
    }
    ~Slot() { release(); }
    explicit operator bool() const { return count_ != nullptr; }

   private:
    friend class ConnectionLimit;
    explicit Slot(std::atomic<std::size_t>* count) : count_(count) {}
    void release() {
      if (count_) count_->fetch_sub(1, std::memory_order_relaxed);
      count_ = nullptr;
    }
    std::atomic<std::size_t>* count_ = nullptr;
  };

  explicit ConnectionLimit(std::size_t limit) : limit_(limit) {}
  ConnectionLimit(const ConnectionLimit&) = delete;
  ConnectionLimit& operator=(const ConnectionLimit&) = delete;

  // Any thread. An empty slot: the limit is reached.
  Slot try_acquire() { return take(open_, limit_); }
  // A place among the refusals being answered; empty: close without a word.
  Slot try_refuse() { return take(refusing_, k_max_refusing); }
  std::size_t open() const { return open_.load(std::memory_order_relaxed); }
  std::size_t limit() const { return limit_; }

 private:
  static Slot take(std::atomic<std::size_t>& count, std::size_t limit) {
    if (count.fetch_add(1, std::memory_order_relaxed) >= limit) {
      count.fetch_sub(1, std::memory_order_relaxed);
      return Slot();
    }
    return Slot(&count);
  }

  std::size_t limit_;
  std::atomic<std::size_t> open_{0};
  std::atomic<std::size_t> refusing_{0};
};

}  // namespace asgi_bridge::gateway
