// Fuzz target (b): the gateway's checks on what a worker sends. Every bus
// message goes through decode(), which validates it (docs/protocol.md §4.3,
// protocol/src/validate.cpp); a response start that passes is formatted into
// the head the client receives. Whatever the worker sends, that head must be
// one well-formed header block: CR and LF only as line ends, one blank line
// at its end (no response splitting).
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "asgi_adapter.hpp"
#include "asgi_bridge/protocol/codec.hpp"
#include "response_check.hpp"
#include "validate.hpp"

using namespace asgi_bridge;

namespace {

void check_head(const std::string& head) {
  auto end = head.find("\r\n\r\n");
  if (end == std::string::npos || end + 4 != head.size()) std::abort();  // a second header block
  for (std::size_t i = 0; i < head.size(); ++i) {
    bool line_end = head[i] == '\r' ? i + 1 < head.size() && head[i + 1] == '\n'
                                    : head[i] != '\n' || (i > 0 && head[i - 1] == '\r');
    if (!line_end || head[i] == '\0') std::abort();  // a bare CR or LF, or a NUL
  }
}

void format_heads(const protocol::Headers& headers, int status) {
  for (bool chunked : {false, true}) {
    gateway::ResponseHead head;
    head.status = status;
    head.app_headers = &headers;
    head.chunked = chunked;
    head.close = !chunked;
    head.server_name = "asgi-bridge";
    check_head(gateway::format_response_head(head));
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// The gateway's check of an app's head (gateway/response_check.*), which
// decides whether the head is written at all: what it passes is a final
// status with a Content-Length it read right.
void check_response_check(const protocol::Headers& headers, int status) {
  auto check = gateway::check_response_head(status, headers);
  if (!check.ok()) return;  // the client gets the gateway's 500 instead
  if (status < 200 || status > 599) std::abort();
  for (const auto& header : headers) {
    if (header.name.empty()) std::abort();
    if (!check.content_length || !iequals(header.name, "content-length")) continue;
    // Passed: all digits, at most 19 of them, so the value fits and agrees.
    if (std::stoull(header.value) != *check.content_length) std::abort();
  }
}

// What each event the gateway formats for a client must satisfy.
void check_event(const protocol::Event& event) {
  if (const auto* start = std::get_if<protocol::HttpResponseStart>(&event)) {
    if (start->status < 100 || start->status > 599) std::abort();
    check_response_check(start->headers, start->status);
    format_heads(start->headers, start->status);
  } else if (const auto* start = std::get_if<protocol::WebSocketHttpResponseStart>(&event)) {
    check_response_check(start->headers, start->status);
    format_heads(start->headers, start->status);
  } else if (const auto* accept = std::get_if<protocol::WebSocketAccept>(&event)) {
    (void)gateway::check_response_headers(accept->headers);
    format_heads(accept->headers, 101);
  } else if (const auto* close = std::get_if<protocol::WebSocketClose>(&event)) {
    if (!protocol::detail::is_valid_close_code(close->code)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto decoded = protocol::decode(std::string_view(reinterpret_cast<const char*>(data), size));
  const auto* envelope = std::get_if<protocol::Envelope>(&decoded);
  if (envelope != nullptr && envelope->event) check_event(*envelope->event);
  return 0;
}
