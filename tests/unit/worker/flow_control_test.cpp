// The credit arithmetic of docs/protocol.md §5, without I/O.
#include <gtest/gtest.h>

#include "asgi_bridge/protocol/envelope.hpp"
#include "flow_control.hpp"

namespace asgi_bridge::worker::detail {
namespace {

TEST(FlowControl, AcknowledgesEveryEighthConsumedEvent) {
  FlowControl flow(1024);
  std::vector<std::uint64_t> acks;
  for (int i = 0; i < 20; ++i) acks.push_back(flow.consumed());
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(acks[i], (i == 7 || i == 15) ? protocol::k_event_ack_batch : 0u) << "event " << i;
  }
}

TEST(FlowControl, SendsWhileAtMostWindowUnacknowledged) {
  FlowControl flow(10);
  EXPECT_TRUE(flow.can_send());
  flow.sent(10);
  EXPECT_TRUE(flow.can_send()) << "exactly the window is still allowed";
  flow.sent(1);
  EXPECT_FALSE(flow.can_send());
  flow.acknowledged(1);
  EXPECT_TRUE(flow.can_send());
  EXPECT_EQ(flow.unacknowledged(), 10u);
}

TEST(FlowControl, OneSendMayOvershootTheWindow) {
  FlowControl flow(10);
  flow.sent(100);  // allowed because 0 <= 10 before it
  EXPECT_FALSE(flow.can_send());
  flow.acknowledged(89);
  EXPECT_FALSE(flow.can_send());
  flow.acknowledged(1);
  EXPECT_TRUE(flow.can_send());
}

TEST(FlowControl, CreditBeyondWhatWasSentIsClamped) {
  FlowControl flow(10);
  flow.sent(5);
  flow.acknowledged(50);
  EXPECT_EQ(flow.unacknowledged(), 0u);
  flow.sent(11);
  EXPECT_FALSE(flow.can_send()) << "an over-credit must not enlarge the window";
}

TEST(FlowControl, ZeroWindowSendsOneAtATime) {
  FlowControl flow(0);
  EXPECT_TRUE(flow.can_send());
  flow.sent(1);
  EXPECT_FALSE(flow.can_send());
  flow.acknowledged(1);
  EXPECT_TRUE(flow.can_send());
}

TEST(PayloadSize, CountsBodiesAndMessagesOnly) {
  EXPECT_EQ(payload_size(protocol::HttpResponseBody{"hello", false}), 5u);
  EXPECT_EQ(payload_size(protocol::WebSocketHttpResponseBody{"abc", false}), 3u);
  protocol::WebSocketSend send;
  send.data = "1234";
  send.text = true;
  EXPECT_EQ(payload_size(send), 4u);
  EXPECT_EQ(payload_size(protocol::HttpResponseStart{200, {{"content-length", "5"}}, false, std::nullopt, false}), 0u);
  EXPECT_EQ(payload_size(protocol::WebSocketClose{1000, "bye"}), 0u);
}

}  // namespace
}  // namespace asgi_bridge::worker::detail
