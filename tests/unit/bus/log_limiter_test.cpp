#include "asgi_bridge/bus/log_limiter.hpp"

#include <gtest/gtest.h>

namespace asgi_bridge::bus {
namespace {

using namespace std::chrono_literals;
using Clock = LogLimiter::Clock;

LogLimiter limiter_with(unsigned burst, std::size_t max_keys = 1024) {
  LogLimiter::Options options;
  options.window = 10s;
  options.burst = burst;
  options.max_keys = max_keys;
  return LogLimiter(options);
}

TEST(LogLimiter, PassesTheBurstThenCountsTheRest) {
  auto limiter = limiter_with(3);
  auto t0 = Clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.admit("peer:reason", t0), 0u) << i;
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.admit("peer:reason", t0 + 1s));
  // The next window's first line carries the count of what was left out.
  EXPECT_EQ(limiter.admit("peer:reason", t0 + 11s), 1000u);
  EXPECT_EQ(limiter.admit("peer:reason", t0 + 11s), 0u);
}

TEST(LogLimiter, KeysAreCountedApart) {
  auto limiter = limiter_with(1);
  auto t0 = Clock::now();
  EXPECT_EQ(limiter.admit("a", t0), 0u);
  EXPECT_FALSE(limiter.admit("a", t0));
  EXPECT_EQ(limiter.admit("b", t0), 0u);
}

TEST(LogLimiter, ManyDistinctKeysShareOneBucketPastTheCap) {
  auto limiter = limiter_with(1, 4);
  auto t0 = Clock::now();
  int passed = 0;
  for (int i = 0; i < 1000; ++i) {
    if (limiter.admit("peer" + std::to_string(i), t0)) ++passed;
  }
  EXPECT_EQ(passed, 5);  // four own buckets, then one shared line
}

TEST(LogLimiter, QuietKeysAreForgottenToMakeRoom) {
  auto limiter = limiter_with(1, 2);
  auto t0 = Clock::now();
  EXPECT_TRUE(limiter.admit("a", t0));
  EXPECT_TRUE(limiter.admit("b", t0));
  // Both windows are over and nothing was suppressed: new keys get buckets.
  EXPECT_EQ(limiter.admit("c", t0 + 20s), 0u);
  EXPECT_EQ(limiter.admit("d", t0 + 20s), 0u);
}

}  // namespace
}  // namespace asgi_bridge::bus
