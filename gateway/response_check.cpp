#include "response_check.hpp"

#include <string_view>

#include <fmt/format.h>

#include "asgi_bridge/protocol/http_grammar.hpp"

namespace asgi_bridge::gateway {
namespace {

constexpr std::size_t k_quoted_max = 64;  // a log line names a value, it does not copy it
constexpr std::size_t k_max_length_digits = 19;  // every 19-digit number fits 64 bits

using protocol::http::iequals;
using protocol::http::is_field_value;
using protocol::http::is_token;
using protocol::http::trim_ows;

bool is_digits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// "value" with what is not printable ASCII as \xHH, cut after k_quoted_max bytes.
std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text.substr(0, k_quoted_max)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (text.size() > k_quoted_max) out += "...";
  return out + "\"";
}

// Folds one Content-Length line into `check`, or sets its problem.
void take_content_length(std::string_view value, ResponseHeadCheck& check) {
  if (!is_digits(value) || value.size() > k_max_length_digits) {
    check.rule = "content-length";
    check.problem = fmt::format("content-length {} is not a decimal number of at most 19 digits", quoted(value));
    return;
  }
  std::uint64_t length = 0;
  for (char c : value) length = length * 10 + static_cast<std::uint64_t>(c - '0');
  if (check.content_length && *check.content_length != length) {
    check.rule = "content-length";
    check.problem = fmt::format("two different content-length values ({} and {})", *check.content_length, length);
    return;
  }
  check.content_length = length;
}

}  // namespace

ResponseHeadCheck check_response_headers(const protocol::Headers& headers) {
  ResponseHeadCheck check;
  for (const auto& header : headers) {
    if (!is_token(header.name)) {
      check.rule = "header name";
      check.problem = fmt::format("header name {} is not a token", quoted(header.name));
      return check;
    }
    if (!is_field_value(header.value)) {
      check.rule = "header value";
      check.problem = fmt::format("header {} has a control character in its value {}", quoted(header.name),
                                  quoted(header.value));
      return check;
    }
  }
  return check;
}

ResponseHeadCheck check_response_head(int status, const protocol::Headers& headers) {
  if (status < 200 || status > 599) {
    return {fmt::format("status {} is not a final status (200-599)", status), "status", std::nullopt};
  }
  auto check = check_response_headers(headers);
  for (const auto& header : headers) {
    if (!check.ok()) break;
    if (iequals(header.name, "content-length")) {
      take_content_length(header.value, check);
    } else if (iequals(header.name, "transfer-encoding") && !iequals(trim_ows(header.value), "chunked")) {
      check.rule = "transfer-encoding";
      check.problem = fmt::format("transfer-encoding {}: the gateway frames the body and applies no coding",
                                  quoted(header.value));
    }
  }
  return check;
}

}  // namespace asgi_bridge::gateway
