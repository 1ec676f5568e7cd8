// RequestHeadCheck: the gateway's own limits and framing rules on a request
// head, whole and byte by byte.
#include "request_head_check.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace asgi_bridge::gateway {
namespace {

using State = HeadVerdict::State;

std::string get_with(const std::string& fields) { return "GET / HTTP/1.1\r\nHost: x\r\n" + fields + "\r\n"; }
std::string post_with(const std::string& fields) { return "POST /p HTTP/1.1\r\nHost: x\r\n" + fields + "\r\n"; }

// The verdict when the bytes come one at a time; it must match the whole one.
HeadVerdict fed_byte_by_byte(const std::string& bytes, HeadLimits limits) {
  RequestHeadCheck check(limits);
  HeadVerdict verdict;
  for (std::size_t n = 1; n <= bytes.size(); ++n) {
    verdict = check.feed(std::string_view(bytes).substr(0, n));
    if (verdict.state != State::need_more) break;
  }
  return verdict;
}

void expect_same(const HeadVerdict& a, const HeadVerdict& b) {
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.head_bytes, b.head_bytes);
}

TEST(RequestHeadCheck, AcceptsAPlainHeadAndStopsAtItsEnd) {
  std::string head = post_with("Content-Length: 5\r\nX-A:  b \r\n");
  auto verdict = check_request_head(head + "hello" + "GET /next HTTP/1.1\r\n", {});
  EXPECT_TRUE(verdict.complete());
  EXPECT_EQ(verdict.head_bytes, head.size());
  expect_same(fed_byte_by_byte(head, {}), verdict);
}

TEST(RequestHeadCheck, NeedsMoreUntilTheEmptyLine) {
  auto verdict = check_request_head("GET / HTTP/1.1\r\nHost: x\r\n", {});
  EXPECT_EQ(verdict.state, State::need_more);
}

TEST(RequestHeadCheck, AcceptsChunkedAlone) {
  for (const char* te : {"chunked", "Chunked", "CHUNKED", " chunked\t"}) {
    EXPECT_TRUE(check_request_head(post_with(std::string("Transfer-Encoding:") + te + "\r\n"), {}).complete()) << te;
  }
}

TEST(RequestHeadCheck, TheByteLimitCountsTheWholeHead) {
  std::string head = get_with("");
  HeadLimits limits{head.size(), 100};
  EXPECT_TRUE(check_request_head(head, limits).complete());
  limits.max_bytes = head.size() - 1;
  auto over = check_request_head(head, limits);
  EXPECT_EQ(over.status, 431);
  expect_same(fed_byte_by_byte(head, limits), over);
}

TEST(RequestHeadCheck, ManySmallFieldsAreCountedInBytesAndFields) {
  // The head that Boost 1.74's own limit let through: 40,000 "a:b" lines.
  std::string fields;
  for (int i = 0; i < 40000; ++i) fields += "a:b\r\n";
  auto by_count = check_request_head(get_with(fields), {16384, 100});
  EXPECT_EQ(by_count.status, 431);
  EXPECT_EQ(by_count.reason, "more than --max-header-count header fields");
  auto by_bytes = check_request_head(get_with(fields), {16384, 1000000});
  EXPECT_EQ(by_bytes.status, 431);
  EXPECT_EQ(by_bytes.reason, "request head over --max-header-size bytes");
}

TEST(RequestHeadCheck, FieldCountLimitIsInclusive) {
  std::string fields;
  for (int i = 0; i < 99; ++i) fields += "a:b\r\n";  // + Host = 100
  EXPECT_TRUE(check_request_head(get_with(fields), {}).complete());
  EXPECT_EQ(check_request_head(get_with(fields + "a:b\r\n"), {}).status, 431);
}

TEST(RequestHeadCheck, AnIncompleteHeadAtTheLimitIsRejectedWithoutMore) {
  std::string partial = "GET / HTTP/1.1\r\nX: " + std::string(100, 'v');
  auto verdict = check_request_head(partial, {partial.size(), 100});
  EXPECT_EQ(verdict.status, 431);
  EXPECT_EQ(check_request_head(partial, {partial.size() + 1, 100}).state, State::need_more);
}

TEST(RequestHeadCheck, LongValuesAreCheckedAtEveryByte) {
  // Values are checked eight bytes at a time: a bad byte anywhere must count.
  for (std::size_t at = 0; at < 24; ++at) {
    for (char bad : {'\0', '\x01', '\x1f', '\x7f'}) {
      std::string value(24, 'v');
      value[at] = bad;
      EXPECT_EQ(check_request_head(get_with("X-A: " + value + "\r\n"), {}).status, 400) << at << " " << int(bad);
    }
    for (char fine : {'\t', ' ', '~', '\x80', '\xff'}) {
      std::string value(24, 'v');
      value[at] = fine;
      EXPECT_TRUE(check_request_head(get_with("X-A: " + value + "\r\n"), {}).complete()) << at << " " << int(fine);
    }
  }
}

struct Rejected {
  const char* name;
  std::string head;
  int status;
};

// What a request-smuggling scanner tries, and the other forbidden bytes.
std::vector<Rejected> rejected_heads() {
  return {
      {"xchunked", post_with("Transfer-Encoding: xchunked\r\n"), 400},
      {"chunked_then_identity", post_with("Transfer-Encoding: chunked, identity\r\n"), 400},
      {"gzip_alone", post_with("Transfer-Encoding: gzip\r\n"), 400},
      {"gzip_then_chunked", post_with("Transfer-Encoding: gzip, chunked\r\n"), 501},
      {"chunked_twice_in_list", post_with("Transfer-Encoding: chunked, chunked\r\n"), 400},
      {"empty_coding", post_with("Transfer-Encoding: , chunked\r\n"), 400},
      {"empty_te", post_with("Transfer-Encoding:\r\n"), 400},
      {"coding_with_parameter", post_with("Transfer-Encoding: chunked;q=1\r\n"), 400},
      {"te_twice", post_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400},
      {"te_and_cl", post_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400},
      {"cl_and_te", post_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400},
      {"te_and_cl_unknown_coding", post_with("Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n"), 400},
      {"te_in_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"cl_plus", post_with("Content-Length: +5\r\n"), 400},
      {"cl_minus", post_with("Content-Length: -1\r\n"), 400},
      {"cl_hex", post_with("Content-Length: 0x5\r\n"), 400},
      {"cl_list", post_with("Content-Length: 5, 6\r\n"), 400},
      {"cl_same_list", post_with("Content-Length: 5, 5\r\n"), 400},
      {"cl_two_values", post_with("Content-Length: 5\r\nContent-Length: 6\r\n"), 400},
      {"cl_repeated", post_with("Content-Length: 5\r\nContent-Length: 5\r\n"), 400},
      {"cl_empty", post_with("Content-Length:\r\n"), 400},
      {"cl_huge", post_with("Content-Length: 99999999999999999999\r\n"), 400},
      {"obs_fold", get_with("X-A: b\r\n c\r\n"), 400},
      {"obs_fold_te", post_with("X-A: b\r\n Transfer-Encoding: chunked\r\n"), 400},
      {"space_before_colon", post_with("Transfer-Encoding : chunked\r\n"), 400},
      {"tab_before_colon", post_with("Content-Length\t: 5\r\n"), 400},
      {"no_colon", get_with("X-A\r\n"), 400},
      {"empty_name", get_with(": b\r\n"), 400},
      {"bad_name_char", get_with("X(A): b\r\n"), 400},
      {"nul_in_value", get_with(std::string("X-A: a\0b\r\n", 10)), 400},
      {"vt_in_value", get_with("X-A: a\vb\r\n"), 400},
      {"del_in_value", get_with("X-A: a\x7f\r\n"), 400},
      {"bare_cr_in_value", get_with("X-A: a\rb\r\n"), 400},
      {"bare_cr_ending", get_with("X-A: a\r\r\n"), 400},
      {"bare_lf", "GET / HTTP/1.1\nHost: x\n\n", 400},
      {"bare_lf_field", get_with("X-A: a\n"), 400},
      {"non_ascii_target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"latin1_target", "GET /a\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"ctl_in_target", "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"tab_in_target", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"del_in_target", "GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"space_in_target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"two_spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"bad_version", "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400},
      {"bad_method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"empty_line_first", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
  };
}

class RequestHeadRejects : public testing::TestWithParam<Rejected> {};

TEST_P(RequestHeadRejects, WholeAndByteByByte) {
  const auto& param = GetParam();
  auto verdict = check_request_head(param.head, {});
  EXPECT_TRUE(verdict.rejected());
  EXPECT_EQ(verdict.status, param.status) << verdict.reason;
  EXPECT_FALSE(verdict.reason.empty());
  expect_same(fed_byte_by_byte(param.head, {}), verdict);
}

INSTANTIATE_TEST_SUITE_P(Smuggling, RequestHeadRejects, testing::ValuesIn(rejected_heads()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RequestTarget, VisibleAsciiOnly) {
  EXPECT_TRUE(valid_request_target("/a/b?c=d&e=%20f"));
  EXPECT_TRUE(valid_request_target("*"));
  EXPECT_TRUE(valid_request_target("http://h:80/p?q"));
  EXPECT_TRUE(valid_request_target("/{}|\\^`\"<>"));  // RFC 3986 excludes them; browsers and h11 let them through
  EXPECT_FALSE(valid_request_target(""));
  EXPECT_FALSE(valid_request_target("/a b"));
  EXPECT_FALSE(valid_request_target("/\x80"));
  EXPECT_FALSE(valid_request_target(std::string("/\0", 2)));
}

TEST(Host, UriHostAndPortOnly) {
  for (const char* host : {"example.com", "example.com:8080", "127.0.0.1:80", "[::1]", "[::1]:443",
                           "[v1.fe80::a+en1]", "xn--caf-dma.example", "a%20b", "a_b~c!$&'()*+,;=", "", "h:"}) {
    EXPECT_TRUE(valid_host(host)) << host;
  }
  for (const char* host : {"a b", "user@example.com", "a/b", "example.com:80:80", "example.com:8o", "[::1",
                           "[]", "[::1]x", "a%2", "a%zz", "caf\xc3\xa9", "a\tb", "a?b", "a#b"}) {
    EXPECT_FALSE(valid_host(host)) << host;
  }
}

}  // namespace
}  // namespace asgi_bridge::gateway
