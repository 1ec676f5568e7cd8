// The per-shard subscription registry and publish checks (gateway/broadcast.hpp).
#include "broadcast.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace asgi_bridge::gateway {
namespace {

struct Recorder : BroadcastSubscriber {
  std::vector<std::string> got;
  void deliver(const PublicationPtr& publication, const FrameHead&) override { got.push_back(publication->data); }
};

PublicationPtr publication(std::string channel, std::string data) {
  return std::make_shared<const Publication>(Publication{std::move(channel), std::move(data), true});
}

TEST(BroadcastRegistry, FansOutToTheChannelsSubscribersOnly) {
  BroadcastRegistry registry;
  Recorder a, b;
  registry.subscribe("x", &a);
  registry.subscribe("x", &a);  // once
  registry.subscribe("x", &b);
  registry.subscribe("y", &b);
  EXPECT_EQ(registry.fan_out(publication("x", "1")), 2U);
  EXPECT_EQ(registry.fan_out(publication("y", "2")), 1U);
  EXPECT_EQ(registry.fan_out(publication("z", "3")), 0U);
  registry.unsubscribe("x", &a);
  registry.unsubscribe("x", &a);  // harmless
  registry.unsubscribe("never", &a);
  EXPECT_EQ(registry.fan_out(publication("x", "4")), 1U);
  EXPECT_EQ(a.got, (std::vector<std::string>{"1"}));
  EXPECT_EQ(b.got, (std::vector<std::string>{"1", "2", "4"}));
}

// Removing subscribers from the middle, the end and the start of a channel's
// list keeps every other one subscribed exactly once.
TEST(BroadcastRegistry, UnsubscribingAnyOneKeepsTheOthers) {
  BroadcastRegistry registry;
  std::vector<Recorder> r(5);
  for (auto& one : r) registry.subscribe("x", &one);
  registry.unsubscribe("x", &r[1]);
  registry.unsubscribe("x", &r[4]);
  registry.unsubscribe("x", &r[0]);
  registry.subscribe("x", &r[3]);  // still once
  EXPECT_EQ(registry.fan_out(publication("x", "1")), 2U);
  registry.subscribe("x", &r[1]);
  EXPECT_EQ(registry.fan_out(publication("x", "2")), 3U);
  for (auto i : {2, 3}) EXPECT_EQ(r[static_cast<std::size_t>(i)].got, (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(r[1].got, (std::vector<std::string>{"2"}));
  EXPECT_TRUE(r[0].got.empty() && r[4].got.empty());
  for (auto i : {1, 2, 3}) registry.unsubscribe("x", &r[static_cast<std::size_t>(i)]);
  EXPECT_EQ(registry.fan_out(publication("x", "3")), 0U);
}

// The frame head of each payload length encoding: 7 bits, 16 bits, 64 bits.
TEST(FrameHead, LengthEncodings) {
  auto bytes = [](const FrameHead& head) { return std::vector<int>(head.bytes.begin(), head.bytes.begin() + head.size); };
  EXPECT_EQ(bytes(frame_head(Publication{"c", "hi", true})), (std::vector<int>{0x81, 2}));
  EXPECT_EQ(bytes(frame_head(Publication{"c", std::string(125, 'x'), false})), (std::vector<int>{0x82, 125}));
  EXPECT_EQ(bytes(frame_head(Publication{"c", std::string(126, 'x'), true})), (std::vector<int>{0x81, 126, 0, 126}));
  EXPECT_EQ(bytes(frame_head(Publication{"c", std::string(65536, 'x'), false})),
            (std::vector<int>{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}));
}

TEST(PublicationProblem, ChannelSizeAndText) {
  EXPECT_EQ(publication_problem(Publication{"a-b_c.d:e/f@g", "ok", true}, 10), "");
  EXPECT_NE(publication_problem(Publication{"a b", "ok", true}, 10), "");
  EXPECT_NE(publication_problem(Publication{std::string(129, 'c'), "ok", true}, 10), "");
  EXPECT_EQ(publication_problem(Publication{std::string(128, 'c'), "ok", true}, 10), "");
  EXPECT_NE(publication_problem(Publication{"c", "12345678901", true}, 10).find("--max-message-size"),
            std::string::npos);
  EXPECT_NE(publication_problem(Publication{"c", "\xff", true}, 10).find("UTF-8"), std::string::npos);
  EXPECT_EQ(publication_problem(Publication{"c", "\xff", false}, 10), "");
}

}  // namespace
}  // namespace asgi_bridge::gateway
