// BodyRate: --min-body-rate over the whole body, counting only the time the
// gateway waits for the client (issue 12, item 4).
#include "body_rate.hpp"

#include <gtest/gtest.h>

namespace asgi_bridge::gateway {
namespace {

using Clock = BodyRate::Clock;
using std::chrono::seconds;

TEST(BodyRate, OffNeverExpires) {
  BodyRate rate(0, seconds(10));
  EXPECT_EQ(rate.read_starts(Clock::now()), Clock::time_point::max());
}

TEST(BodyRate, FirstReadGetsTheGracePeriod) {
  BodyRate rate(500, seconds(10));
  auto t0 = Clock::now();
  EXPECT_EQ(rate.read_starts(t0), t0 + seconds(10));
}

TEST(BodyRate, EachRateWorthOfBytesBuysASecond) {
  BodyRate rate(500, seconds(10));
  auto t0 = Clock::now();
  rate.read_starts(t0);
  rate.read_ends(t0 + seconds(2), 1000);  // 2 s waited, 2 s earned
  EXPECT_EQ(rate.read_starts(t0 + seconds(2)), t0 + seconds(2) + seconds(10));
}

// A byte every 5 s cannot hold the body open: the clock runs over the body,
// not per read.
TEST(BodyRate, TricklingRunsOutOfTime) {
  BodyRate rate(500, seconds(10));
  auto now = Clock::now();
  for (int i = 0; i < 2; ++i) {
    rate.read_starts(now);
    now += seconds(5);
    rate.read_ends(now, 1);
  }
  auto deadline = rate.read_starts(now);
  EXPECT_LT(deadline, now + std::chrono::milliseconds(10));  // 10 s waited of 10.004 s allowed
  now += seconds(1);
  rate.read_ends(now, 1);
  EXPECT_LT(rate.read_starts(now), now);  // behind: the next read is already late
}

// Time between reads (the gateway waiting for the worker's credit) is not counted.
TEST(BodyRate, PausesBetweenReadsAreNotCounted) {
  BodyRate rate(500, seconds(10));
  auto t0 = Clock::now();
  rate.read_starts(t0);
  rate.read_ends(t0 + seconds(1), 0);
  auto later = t0 + std::chrono::hours(1);
  EXPECT_EQ(rate.read_starts(later), later + seconds(9));
  EXPECT_EQ(rate.waited(), seconds(1));
  EXPECT_TRUE(rate.reading());
}

TEST(BodyRate, ResetStartsANewBody) {
  BodyRate rate(500, seconds(10));
  auto t0 = Clock::now();
  rate.read_starts(t0);
  rate.read_ends(t0 + seconds(8), 1);
  rate.reset();
  EXPECT_FALSE(rate.reading());
  EXPECT_EQ(rate.bytes(), 0u);
  EXPECT_EQ(rate.read_starts(t0 + seconds(8)), t0 + seconds(18));
}

TEST(BodyRate, HugeAllowanceStaysInTheClocksRange) {
  BodyRate rate(1, seconds(10));
  auto t0 = Clock::now();
  rate.read_starts(t0);
  rate.read_ends(t0, ~std::uint64_t{0});
  auto deadline = rate.read_starts(t0);
  EXPECT_GT(deadline, t0 + std::chrono::hours(24 * 365));
  EXPECT_LT(deadline, Clock::time_point::max());
}

}  // namespace
}  // namespace asgi_bridge::gateway
