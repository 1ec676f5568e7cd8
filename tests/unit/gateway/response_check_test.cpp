// check_response_head / check_response_headers: what an app's response head
// may carry to a client (issue 12, item 8).
#include "response_check.hpp"

#include <string>

#include <gtest/gtest.h>

namespace asgi_bridge::gateway {
namespace {

using protocol::Headers;

ResponseHeadCheck check(int status, Headers headers = {}) { return check_response_head(status, headers); }

TEST(ResponseCheck, PlainHeadsPass) {
  auto result = check(200, {{"content-type", "text/plain"}, {"content-length", "5"}});
  EXPECT_TRUE(result.ok()) << result.problem;
  EXPECT_EQ(result.content_length, 5u);
  EXPECT_FALSE(check(204).content_length);
}

TEST(ResponseCheck, StatusMustBeFinal) {
  for (int status : {100, 101, 103, 199, 600, 0, -1}) {
    auto result = check(status);
    EXPECT_FALSE(result.ok()) << status;
    EXPECT_NE(result.problem.find(std::to_string(status)), std::string::npos) << result.problem;
  }
  for (int status : {200, 299, 304, 418, 599}) EXPECT_TRUE(check(status).ok()) << status;
}

TEST(ResponseCheck, ContentLengthIsDigitsOnly) {
  for (const char* bad : {"abc", "-1", "+5", "0x5", " 5", "5 ", "5, 5", "", "1.0", "5\t",
                          "99999999999999999999"}) {
    auto result = check(200, {{"content-length", bad}});
    EXPECT_FALSE(result.ok()) << '"' << bad << '"';
  }
  EXPECT_EQ(check(200, {{"Content-Length", "007"}}).content_length, 7u);
  EXPECT_EQ(check(200, {{"content-length", "9999999999999999999"}}).content_length, 9999999999999999999u);
}

TEST(ResponseCheck, RepeatedContentLengthMustAgree) {
  auto same = check(200, {{"content-length", "5"}, {"Content-Length", "5"}});
  EXPECT_TRUE(same.ok()) << same.problem;
  EXPECT_EQ(same.content_length, 5u);
  auto different = check(200, {{"content-length", "5"}, {"content-length", "6"}});
  EXPECT_FALSE(different.ok());
  EXPECT_NE(different.problem.find("two different"), std::string::npos) << different.problem;
}

TEST(ResponseCheck, TransferEncodingOnlyChunked) {
  EXPECT_TRUE(check(200, {{"transfer-encoding", "chunked"}}).ok());
  EXPECT_TRUE(check(200, {{"Transfer-Encoding", " Chunked "}}).ok());
  for (const char* bad : {"gzip", "gzip, chunked", "chunked, identity", "xchunked", ""}) {
    EXPECT_FALSE(check(200, {{"transfer-encoding", bad}}).ok()) << bad;
  }
  // The smuggling pair of the issue: a bad length next to chunked.
  EXPECT_FALSE(check(200, {{"content-length", "abc"}, {"transfer-encoding", "chunked"}}).ok());
}

TEST(ResponseCheck, NamesAreTokens) {
  for (const char* bad : {"", "x y", "x:y", "x\r\ny", "caf\xc3\xa9", "(x)", "x\"", "x\x01"}) {
    auto result = check(200, {{bad, "v"}});
    EXPECT_FALSE(result.ok()) << bad;
    EXPECT_NE(result.problem.find("not a token"), std::string::npos) << result.problem;
  }
  EXPECT_TRUE(check(200, {{"x-!#$%&'*+-.^_`|~09azAZ", "v"}}).ok());
}

TEST(ResponseCheck, ValuesHaveNoControlCharacters) {
  for (std::string bad : {std::string("a\rb"), std::string("a\nb"), std::string("a\0b", 3), std::string("a\x01"),
                          std::string("\x1f"), std::string("a\x7f")}) {
    auto result = check(200, {{"x-v", bad}});
    EXPECT_FALSE(result.ok());
    EXPECT_NE(result.problem.find("control character"), std::string::npos) << result.problem;
  }
  EXPECT_TRUE(check(200, {{"x-v", "tab\there, obs-text \xe9\xff, quotes \"\" and empty:"}, {"x-e", ""}}).ok());
}

TEST(ResponseCheck, ProblemsQuoteBoundedAndEscaped) {
  auto result = check(200, {{"x-v", "\r\n" + std::string(1000, 'a')}});
  EXPECT_NE(result.problem.find("\\x0d\\x0a"), std::string::npos) << result.problem;
  EXPECT_LT(result.problem.size(), 300u);
}

TEST(ResponseCheck, HeadersAloneForWebSocketAccept) {
  EXPECT_TRUE(check_response_headers({{"x-ok", "1"}}).ok());
  EXPECT_STREQ(check_response_headers({{"x-bad", "a\x01"}}).rule, "header value");
  EXPECT_STREQ(check_response_headers({{"bad name", "1"}}).rule, "header name");
}

TEST(ResponseCheck, EachProblemNamesItsRule) {
  EXPECT_STREQ(check(101).rule, "status");
  EXPECT_STREQ(check(200, {{"content-length", "x"}}).rule, "content-length");
  EXPECT_STREQ(check(200, {{"transfer-encoding", "gzip"}}).rule, "transfer-encoding");
  EXPECT_STREQ(check(200, {{"content-length", "1"}, {"x", "\x01"}}).rule, "header value");
}

}  // namespace
}  // namespace asgi_bridge::gateway
