// POST /publish bodies (gateway/publish_request.hpp, docs/broadcast.md).
#include "publish_request.hpp"

#include <gtest/gtest.h>

namespace asgi_bridge::gateway {
namespace {

constexpr std::size_t k_max = 100;

TEST(ParsePublish, JsonTextAndBase64Bytes) {
  auto text = parse_publish("/publish", "application/json", R"({"channel": "news", "text": "hi \u2713"})", k_max);
  ASSERT_TRUE(text.publication) << text.error;
  EXPECT_EQ(text.publication->channel, "news");
  EXPECT_EQ(text.publication->data, "hi \xe2\x9c\x93");
  EXPECT_TRUE(text.publication->text);
  auto bytes = parse_publish("/publish", "", R"({"channel": "a/b", "bytes_b64": "AAH/"})", k_max);
  ASSERT_TRUE(bytes.publication) << bytes.error;
  EXPECT_EQ(bytes.publication->data, std::string("\x00\x01\xff", 3));
  EXPECT_FALSE(bytes.publication->text);
  auto padded = parse_publish("/publish", "", R"({"channel": "c", "bytes_b64": "YQ=="})", k_max);
  ASSERT_TRUE(padded.publication) << padded.error;
  EXPECT_EQ(padded.publication->data, "a");
}

TEST(ParsePublish, RawBodyWithChannelInTheQuery) {
  auto text = parse_publish("/publish?x=1&channel=room:1", "text/plain; charset=utf-8", "hello", k_max);
  ASSERT_TRUE(text.publication) << text.error;
  EXPECT_EQ(text.publication->channel, "room:1");
  EXPECT_TRUE(text.publication->text);
  auto binary = parse_publish("/publish?channel=room", "application/octet-stream", std::string("\xff", 1), k_max);
  ASSERT_TRUE(binary.publication) << binary.error;
  EXPECT_FALSE(binary.publication->text);
  // "xchannel" is not "channel": the body is then read as JSON.
  EXPECT_EQ(parse_publish("/publish?xchannel=room", "text/plain", "hello", k_max).status, 400);
}

TEST(ParsePublish, EachRefusalSaysWhy) {
  struct Case {
    std::string target, content_type, body;
    int status;
    std::string words;
  };
  const Case cases[] = {
      {"/publish?channel=a%20b", "", "x", 400, "channel must be"},
      {"/publish?channel=", "", "x", 400, "channel must be"},
      {"/publish?channel", "", "x", 400, "channel must be"},
      {"/publish?channel=" + std::string(129, 'c'), "", "x", 400, "channel must be"},
      {"/publish?channel=ok", "", std::string(k_max + 1, 'x'), 413, "over --max-message-size"},
      {"/publish?channel=ok", "text/plain", "\xc3\x28", 400, "not valid UTF-8"},
      {"/publish", "", "", 400, "JSON object"},
      {"/publish", "", "\"text\"", 400, "JSON object"},
      {"/publish", "", R"({"channel": 1, "text": "x"})", 400, "\"channel\""},
      {"/publish", "", R"({"channel": "ok"})", 400, "exactly one of"},
      {"/publish", "", R"({"channel": "ok", "text": "x", "bytes_b64": ""})", 400, "exactly one of"},
      {"/publish", "", R"({"channel": "ok", "text": null})", 400, "\"text\" must be a string"},
      {"/publish", "", R"({"channel": "ok", "bytes_b64": "YQ="})", 400, "base64"},
      {"/publish", "", R"({"channel": "ok", "bytes_b64": "Y!=="})", 400, "base64"},
      {"/publish", "", R"({"channel": "ok", "bytes_b64": "YQ==YQ=="})", 400, "base64"},
  };
  for (const auto& c : cases) {
    auto parsed = parse_publish(c.target, c.content_type, c.body, k_max);
    EXPECT_FALSE(parsed.publication) << c.target << " " << c.body;
    EXPECT_EQ(parsed.status, c.status) << c.target << " " << c.body;
    EXPECT_NE(parsed.error.find(c.words), std::string::npos) << parsed.error;
  }
}

TEST(BearerMatches, ExactTokenOnly) {
  EXPECT_TRUE(bearer_matches("Bearer s3cret", "s3cret"));
  EXPECT_FALSE(bearer_matches("Bearer s3cre", "s3cret"));
  EXPECT_FALSE(bearer_matches("Bearer s3cret ", "s3cret"));
  EXPECT_FALSE(bearer_matches("bearer s3cret", "s3cret"));
  EXPECT_FALSE(bearer_matches("s3cret", "s3cret"));
  EXPECT_FALSE(bearer_matches("", "s3cret"));
}

}  // namespace
}  // namespace asgi_bridge::gateway
