#pragma once
// The minimum rate of a request body (--min-body-rate), as Apache's
// mod_reqtimeout MinRate: a body may take the grace period plus one second
// per `rate` bytes received so far. Only the time the gateway waits for the
// client counts (its reads), never the time it holds back because the worker
// has not granted credit: a client is not blamed for the app's pace. Measured
// over the whole body, so a byte now and then cannot restart the clock.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

namespace asgi_bridge::gateway {

class BodyRate {
 public:
  using Clock = std::chrono::steady_clock;

  // bytes_per_second 0: no minimum (read_starts gives time_point::max()).
  BodyRate(std::uint64_t bytes_per_second, Clock::duration grace) : rate_(bytes_per_second), grace_(grace) {}

  // A new body.
  void reset() {
    bytes_ = 0;
    waited_ = Clock::duration::zero();
    read_since_.reset();
  }

  // A read of the body starts: the time by which it must end for the body to
  // keep the rate (in the past when it is already behind).
  Clock::time_point read_starts(Clock::time_point now) {
    read_since_ = now;
    if (rate_ == 0) return Clock::time_point::max();
    // Seconds of allowance, capped far below the clock's range (a huge body at 1 B/s).
    double earned = static_cast<double>(bytes_) / static_cast<double>(rate_);
    double allowance = std::min(std::chrono::duration<double>(grace_).count() + earned, k_max_allowance_seconds);
    auto allowed = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(allowance));
    return now + (allowed - waited_);
  }

  // The read ended with `bytes` more bytes of the body.
  void read_ends(Clock::time_point now, std::uint64_t bytes) {
    if (read_since_) waited_ += now - *read_since_;
    read_since_.reset();
    bytes_ += bytes;
  }

  bool reading() const { return read_since_.has_value(); }
  std::uint64_t bytes() const { return bytes_; }
  // Time spent waiting for the client so far (reads that ended).
  Clock::duration waited() const { return waited_; }

 private:
  static constexpr double k_max_allowance_seconds = 1e8;  // three years

  std::uint64_t rate_;
  Clock::duration grace_;
  std::uint64_t bytes_ = 0;
  Clock::duration waited_{};
  std::optional<Clock::time_point> read_since_;
};

}  // namespace asgi_bridge::gateway
