// The HTTP/1.1 session's deadlines (gateway/lazy_deadline.hpp), driven by a
// real io_context: each test asserts whether the deadline passed, not when.
#include "lazy_deadline.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

namespace asgi_bridge::gateway {
namespace {

using namespace std::chrono_literals;

struct Fixture : ::testing::Test {
  boost::asio::io_context io;
  std::shared_ptr<int> owner = std::make_shared<int>(0);
  LazyDeadline deadline{io.get_executor()};
  int passed = 0;
  void SetUp() override {
    deadline.on_due(owner, [this] { ++passed; });
  }
};

TEST_F(Fixture, PassesOnce) {
  deadline.set(1ms);
  io.run();
  EXPECT_EQ(passed, 1);
}

TEST_F(Fixture, ClearedNeverPasses) {
  deadline.set(1ms);
  deadline.clear();
  io.run();
  EXPECT_EQ(passed, 0);
}

TEST_F(Fixture, MovedLaterPassesOnceAfterWaitingAgain) {
  deadline.set(1ms);
  deadline.set(20ms);  // no new wait: the first one fires early and waits on
  io.run();
  EXPECT_EQ(passed, 1);
}

TEST_F(Fixture, MovedFarLaterDoesNotPassWhenTheFirstWaitFires) {
  deadline.set(1ms);
  deadline.set(std::chrono::hours(1));
  io.run_for(30ms);  // the first wait fired long before this ends
  EXPECT_EQ(passed, 0);
}

TEST_F(Fixture, MovedEarlierPasses) {
  deadline.set(std::chrono::hours(1));
  deadline.set(1ms);  // re-arms: io.run() would otherwise last an hour
  io.run();
  EXPECT_EQ(passed, 1);
}

TEST_F(Fixture, SetAgainAfterClearingPasses) {
  deadline.set(5ms);
  deadline.clear();
  deadline.set(1ms);
  io.run();
  EXPECT_EQ(passed, 1);
}

TEST_F(Fixture, NothingRunsOnceTheOwnerIsGone) {
  deadline.set(1ms);
  owner.reset();
  io.run();
  EXPECT_EQ(passed, 0);
}

}  // namespace
}  // namespace asgi_bridge::gateway
