// The per-shard sweep that starts slow HTTP/1.1 responses' disconnect
// watchers (gateway/disconnect_sweep.hpp): driven by a real io_context, each
// test asserts who was started, never when.
#include "disconnect_sweep.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

namespace asgi_bridge::gateway {
namespace {

struct Exchange : SweepWatched {
  int started = 0;
  void start_watch() override { ++started; }
};

TEST(DisconnectSweep, StartsAnExchangeThatWaitsAndStopsOnceNobodyIsEnrolled) {
  boost::asio::io_context io;
  DisconnectSweep sweep(io);
  Exchange slow;
  sweep.enrol(slow);
  io.run();  // returns only when the timer is no longer armed
  EXPECT_EQ(slow.started, 1);
  EXPECT_FALSE(slow.enrolled());
}

TEST(DisconnectSweep, AnExchangeThatLeavesIsNeverStarted) {
  boost::asio::io_context io;
  DisconnectSweep sweep(io);
  Exchange fast, slow;
  sweep.enrol(fast);
  sweep.enrol(slow);
  fast.leave_sweep();
  io.run();
  EXPECT_EQ(fast.started, 0);
  EXPECT_EQ(slow.started, 1);
}

TEST(DisconnectSweep, AnExchangeDestroyedWhileEnrolledLeavesOnItsOwn) {
  boost::asio::io_context io;
  DisconnectSweep sweep(io);
  Exchange kept;
  {
    Exchange gone;
    sweep.enrol(gone);
    sweep.enrol(kept);
  }
  io.run();
  EXPECT_EQ(kept.started, 1);
}

TEST(DisconnectSweep, EnrolsAgainAfterItsWatchStarted) {
  boost::asio::io_context io;
  DisconnectSweep sweep(io);
  Exchange exchange;
  sweep.enrol(exchange);
  io.run();
  io.restart();
  sweep.enrol(exchange);  // the connection's next request
  io.run();
  EXPECT_EQ(exchange.started, 2);
}

}  // namespace
}  // namespace asgi_bridge::gateway
