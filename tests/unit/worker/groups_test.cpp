// Broadcast groups: who is in which group (and when a group gains its first
// or loses its last member: the moments to subscribe and unsubscribe), and
// the de-duplication of copies that arrive through several gateways.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "group_members.hpp"
#include "group_sequences.hpp"

namespace asgi_bridge::worker::detail {
namespace {

// A socket that is never used to send: only its identity matters here.
WebSocketPtr socket() { return std::make_shared<WebSocket>(protocol::Scope{}, Send(nullptr)); }

std::vector<std::string> sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

struct GroupMembersTest : testing::Test {
  GroupMembers members;
  WebSocketPtr a = socket();
  WebSocketPtr b = socket();
};

TEST_F(GroupMembersTest, FirstMemberAndLastLeaverAreReported) {
  EXPECT_TRUE(members.add("lobby", a));   // subscribe
  EXPECT_FALSE(members.add("lobby", b));
  EXPECT_FALSE(members.add("lobby", a));  // again: no change
  EXPECT_EQ(members.members("lobby").size(), 2U);
  EXPECT_FALSE(members.discard("lobby", a.get()));
  EXPECT_FALSE(members.discard("lobby", a.get()));  // not a member any more
  EXPECT_TRUE(members.discard("lobby", b.get()));   // unsubscribe
  EXPECT_TRUE(members.members("lobby").empty());
  EXPECT_TRUE(members.groups().empty());
}

TEST_F(GroupMembersTest, DiscardOfANonMemberChangesNothing) {
  members.add("lobby", a);
  EXPECT_FALSE(members.discard("lobby", b.get()));
  EXPECT_FALSE(members.discard("nowhere", a.get()));
  EXPECT_EQ(members.members("lobby"), std::vector<WebSocketPtr>{a});
}

TEST_F(GroupMembersTest, DiscardAllLeavesEveryGroupAndNamesTheEmptiedOnes) {
  members.add("lobby", a);
  members.add("games", a);
  members.add("news", a);
  members.add("games", b);
  EXPECT_EQ(sorted(members.discard_all(a.get())), (std::vector<std::string>{"lobby", "news"}));
  EXPECT_EQ(members.groups(), std::vector<std::string>{"games"});
  EXPECT_EQ(members.members("games"), std::vector<WebSocketPtr>{b});
  EXPECT_TRUE(members.discard_all(a.get()).empty());  // twice: nothing left
  EXPECT_EQ(members.discard_all(b.get()), std::vector<std::string>{"games"});
}

TEST_F(GroupMembersTest, MembersAreHeldWeakly) {
  members.add("lobby", a);
  members.add("lobby", b);
  std::weak_ptr<WebSocket> watch = a;
  const WebSocket* gone = a.get();
  a.reset();
  EXPECT_TRUE(watch.expired());  // the group did not keep it alive
  EXPECT_EQ(members.members("lobby"), std::vector<WebSocketPtr>{b});
  EXPECT_FALSE(members.discard("lobby", gone));  // its entry still counts until discarded
  EXPECT_TRUE(members.discard("lobby", b.get()));
}

TEST(GroupSequences, EachMessageOnceInOrderWhateverThePathsInterleave) {
  GroupSequences seen;
  // Two gateways relay 0 1 2 from wk-a; each path is in order, the paths interleave.
  std::vector<std::uint64_t> arrivals{0, 1, 0, 2, 1, 2};
  std::vector<std::uint64_t> delivered;
  for (auto seq : arrivals) {
    if (seen.accept("wk-a", seq)) delivered.push_back(seq);
  }
  EXPECT_EQ(delivered, (std::vector<std::uint64_t>{0, 1, 2}));
}

TEST(GroupSequences, PublishersAreIndependentAndGapsAreFine) {
  GroupSequences seen;
  EXPECT_TRUE(seen.accept("wk-a", 5));  // joined late: whatever comes first is new
  EXPECT_TRUE(seen.accept("wk-b", 0));
  EXPECT_TRUE(seen.accept("wk-a", 9));  // messages it never had a copy of (a full queue): skipped
  EXPECT_FALSE(seen.accept("wk-a", 7));
  EXPECT_TRUE(seen.accept("wk-b", 1));
  EXPECT_FALSE(seen.accept("wk-b", 1));
}

TEST(GroupSequences, ForgetsTheLeastRecentlyHeardPublisherBeyondTheBound) {
  GroupSequences seen(2);
  EXPECT_TRUE(seen.accept("wk-a", 3));
  EXPECT_TRUE(seen.accept("wk-b", 3));
  EXPECT_FALSE(seen.accept("wk-a", 3));  // wk-a heard last: wk-b is the oldest now
  EXPECT_TRUE(seen.accept("wk-c", 0));
  EXPECT_EQ(seen.origins(), 2U);
  EXPECT_FALSE(seen.accept("wk-a", 2));  // still remembered
  EXPECT_TRUE(seen.accept("wk-b", 3));   // forgotten: taken as new
}

}  // namespace
}  // namespace asgi_bridge::worker::detail
