// The pieces of the descriptor defences that need no socket: the accept
// backoff, the connection limit and the automatic --limit-connections.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "accept_backoff.hpp"
#include "connection_limit.hpp"
#include "fd_limit.hpp"

namespace asgi_bridge::gateway {
namespace {

using std::chrono::milliseconds;

TEST(AcceptBackoff, DoublesFrom50msTo1sAndStartsOverAfterSuccess) {
  AcceptBackoff backoff;
  std::vector<long> pauses;
  for (int i = 0; i < 8; ++i) pauses.push_back(backoff.next().count());
  EXPECT_EQ(pauses, (std::vector<long>{50, 100, 200, 400, 800, 1000, 1000, 1000}));
  backoff.succeeded();
  EXPECT_EQ(backoff.next(), milliseconds(50));
}

TEST(ConnectionLimit, RefusesPastTheLimitUntilASlotIsReleased) {
  ConnectionLimit limit(2);
  auto a = limit.try_acquire();
  auto b = limit.try_acquire();
  EXPECT_TRUE(a);
  EXPECT_TRUE(b);
  EXPECT_FALSE(limit.try_acquire());
  EXPECT_EQ(limit.open(), 2u);
  {
    auto moved = std::move(a);  // a slot travels with its connection
    EXPECT_FALSE(a);            // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(limit.open(), 2u);
  }
  EXPECT_EQ(limit.open(), 1u);
  EXPECT_TRUE(limit.try_acquire());  // a temporary: released at once
  EXPECT_EQ(limit.open(), 1u);
}

TEST(ConnectionLimit, BoundsRefusalsAnsweredAtOnce) {
  ConnectionLimit limit(0);
  std::vector<ConnectionLimit::Slot> refusing;
  for (std::size_t i = 0; i < ConnectionLimit::k_max_refusing; ++i) refusing.push_back(limit.try_refuse());
  for (const auto& slot : refusing) EXPECT_TRUE(slot);
  EXPECT_FALSE(limit.try_refuse());
  refusing.pop_back();
  EXPECT_TRUE(limit.try_refuse());
}

TEST(ConnectionLimit, CountsExactlyAcrossThreads) {
  ConnectionLimit limit(1000);
  std::vector<std::vector<ConnectionLimit::Slot>> held(4);
  std::vector<std::thread> threads;
  for (auto& mine : held) {
    threads.emplace_back([&limit, &mine] {
      for (int i = 0; i < 500; ++i) {
        if (auto slot = limit.try_acquire()) mine.push_back(std::move(slot));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::size_t acquired = 0;
  for (const auto& mine : held) acquired += mine.size();
  EXPECT_EQ(acquired, 1000u);  // 2000 tries: exactly the limit, whatever the interleaving
  EXPECT_EQ(limit.open(), 1000u);
  held.clear();
  EXPECT_EQ(limit.open(), 0u);
}

TEST(FdLimit, AutomaticConnectionLimitKeepsTheReserve) {
  EXPECT_EQ(fd_reserve(1024), 64u);
  EXPECT_EQ(fd_reserve(128), 32u);
  EXPECT_EQ(default_connection_limit(1024, 30), 1024u - 30 - 64);
  EXPECT_EQ(default_connection_limit(128, 30), 128u - 30 - 32);
  EXPECT_EQ(default_connection_limit(64, 40), 1u);  // nothing left: one, never zero
}

TEST(FdLimit, RaisesTheSoftLimitToTheHardOne) {
  rlimit original{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &original), 0);
  rlimit lowered = original;
  lowered.rlim_cur = std::min<rlim_t>(original.rlim_max, 256);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  auto result = raise_fd_limit();
  EXPECT_TRUE(result.error.empty()) << result.error;
  EXPECT_EQ(result.before, lowered.rlim_cur);
  rlimit now{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(result.now, now.rlim_cur);
  if (original.rlim_max != RLIM_INFINITY) {
    EXPECT_EQ(now.rlim_cur, original.rlim_max);
  }
  ::setrlimit(RLIMIT_NOFILE, &original);
}

TEST(FdLimit, CountsOpenDescriptors) {
  auto before = open_fds();
  ASSERT_GT(before, 2u);  // at least stdin, stdout, stderr
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(open_fds(), before + 1);
  std::fclose(file);
}

}  // namespace
}  // namespace asgi_bridge::gateway
