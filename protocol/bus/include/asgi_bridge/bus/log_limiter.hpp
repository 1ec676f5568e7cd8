#pragma once
// Rate limit for repeated warnings (the gateway's, the transports'). A hostile
// client or worker can make the gateway warn once per message it sends; unlimited, that is millions of log
// lines a minute (a disk filled, a log collector drowned). Per key (a peer and
// a reason), the first few lines of each window pass; the rest are counted and
// the count rides along with the first line of a later window.
//
// Not thread-safe: each thread that warns keeps its own limiter.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>

namespace asgi_bridge::bus {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    Clock::duration window = std::chrono::seconds(10);
    unsigned burst = 5;             // lines per key and window
    std::size_t max_keys = 1024;    // past this, keys share one bucket
  };

  LogLimiter() : LogLimiter(Options{}) {}
  explicit LogLimiter(Options options) : options_(options) {}

  // nullopt: stay silent. Otherwise log, adding the returned count of lines
  // suppressed for this key since the last one that passed (0: none).
  std::optional<std::uint64_t> admit(std::string_view key, Clock::time_point now = Clock::now()) {
    Bucket& bucket = bucket_for(key, now);
    if (now - bucket.window_start >= options_.window) {
      bucket.window_start = now;
      bucket.passed = 0;
    }
    if (bucket.passed >= options_.burst) {
      ++bucket.suppressed;
      return std::nullopt;
    }
    ++bucket.passed;
    return std::exchange(bucket.suppressed, 0);
  }

  long window_seconds() const {
    return std::chrono::duration_cast<std::chrono::seconds>(options_.window).count();
  }

  // Logs a warning through `limiter` under `key`; a line that passes after
  // suppressed ones says how many were left out.
  template <typename... Args>
  static void warn(spdlog::logger& logger, LogLimiter& limiter, std::string_view key,
                   fmt::format_string<Args...> format, Args&&... args) {
    if (!logger.should_log(spdlog::level::warn)) return;
    auto suppressed = limiter.admit(key);
    if (!suppressed) return;
    auto line = fmt::format(format, std::forward<Args>(args)...);
    if (*suppressed > 0) {
      line += fmt::format(" (and {} more like it in the last {} s)", *suppressed, limiter.window_seconds());
    }
    logger.warn("{}", line);
  }

 private:
  struct Bucket {
    Clock::time_point window_start;
    unsigned passed = 0;
    std::uint64_t suppressed = 0;
  };

  Bucket& bucket_for(std::string_view key, Clock::time_point now) {
    auto found = buckets_.find(std::string(key));
    if (found != buckets_.end()) return found->second;
    if (buckets_.size() >= options_.max_keys) forget_quiet(now);
    // Still full: many distinct keys at once (a scan from many addresses).
    // They share one bucket, so the log stays bounded all the same.
    std::string name = buckets_.size() >= options_.max_keys ? std::string(k_overflow) : std::string(key);
    return buckets_.try_emplace(std::move(name), Bucket{now - options_.window, 0, 0}).first->second;
  }

  // Drops keys whose window ended with nothing suppressed.
  void forget_quiet(Clock::time_point now) {
    std::erase_if(buckets_, [&](const auto& entry) {
      return entry.second.suppressed == 0 && now - entry.second.window_start >= options_.window;
    });
  }

  static constexpr std::string_view k_overflow = "(many peers)";
  Options options_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace asgi_bridge::bus
