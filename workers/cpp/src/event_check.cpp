#include "event_check.hpp"

#include <cstdint>
#include <string>

#include "asgi_bridge/protocol/http_grammar.hpp"
#include "asgi_bridge/worker/errors.hpp"

namespace asgi_bridge::worker::detail {
namespace {

using namespace std::string_literals;

void check_headers(const protocol::Headers& headers, const char* field) {
  for (const auto& header : headers) {
    if (!protocol::http::is_token(header.name)) {
      throw InvalidEvent(field + ": header name '"s + header.name + "' is not an RFC 9110 token");
    }
    if (!protocol::http::is_safe_field_value(header.value)) {
      throw InvalidEvent(field + ": value of header '"s + header.name + "' contains CR, LF or NUL");
    }
  }
}

void check_status(int status, const char* type) {
  if (status < 100 || status > 599) {
    throw InvalidEvent(type + ".status: "s + std::to_string(status) + " out of range 100..599");
  }
}

void check_text(std::string_view text, const char* field) {
  if (!is_valid_utf8(text)) throw InvalidEvent(field + ": not valid UTF-8"s);
}

bool is_valid_close_code(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

struct Checker {
  void operator()(const protocol::HttpResponseStart& e) const {
    check_status(e.status, "http.response.start");
    check_headers(e.headers, "http.response.start.headers");
  }
  void operator()(const protocol::HttpResponseTrailers& e) const {
    check_headers(e.headers, "http.response.trailers.headers");
  }
  void operator()(const protocol::WebSocketAccept& e) const {
    if (e.subprotocol) check_text(*e.subprotocol, "websocket.accept.subprotocol");
    check_headers(e.headers, "websocket.accept.headers");
  }
  void operator()(const protocol::WebSocketSend& e) const {
    if (e.text) check_text(e.data, "websocket.send.text");
  }
  void operator()(const protocol::WebSocketClose& e) const {
    if (!is_valid_close_code(e.code)) {
      throw InvalidEvent("websocket.close.code: " + std::to_string(e.code) +
                         " is not 1000-1003, 1007-1014 or 3000-4999");
    }
    if (e.reason.size() > 123) throw InvalidEvent("websocket.close.reason: longer than 123 bytes");
    check_text(e.reason, "websocket.close.reason");
  }
  void operator()(const protocol::WebSocketHttpResponseStart& e) const {
    check_status(e.status, "websocket.http.response.start");
    check_headers(e.headers, "websocket.http.response.start.headers");
  }
  void operator()(const protocol::BroadcastSubscribe& e) const { check_channel(e.channel, "asgi-bridge.subscribe"); }
  void operator()(const protocol::BroadcastUnsubscribe& e) const {
    check_channel(e.channel, "asgi-bridge.unsubscribe");
  }
  // Bodies are bytes; incoming-only types are refused by the state machine.
  template <typename Other>
  void operator()(const Other&) const {}
};

// Length of the UTF-8 sequence starting with `lead`, 0 if it cannot start one.
int sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

}  // namespace

void check_channel(const std::string& channel, const char* where) {
  if (!protocol::is_valid_channel(channel)) {
    throw InvalidEvent(where + ".channel: '"s + channel.substr(0, 60) +
                       "' is not a channel name (1-128 bytes of letters, digits, - _ . : / @)");
  }
}

void check_event_values(const protocol::Event& event) { std::visit(Checker{}, event); }

// Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
// above U+10FFFF — what the codecs and Python's decoder accept.
bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    auto lead = static_cast<unsigned char>(text[i]);
    int length = sequence_length(lead);
    if (length == 0 || i + length > text.size()) return false;
    for (int k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    }
    if (length > 1) {
      auto second = static_cast<unsigned char>(text[i + 1]);
      if (lead == 0xE0 && second < 0xA0) return false;  // overlong
      if (lead == 0xED && second > 0x9F) return false;  // surrogates
      if (lead == 0xF0 && second < 0x90) return false;  // overlong
      if (lead == 0xF4 && second > 0x8F) return false;  // above U+10FFFF
    }
    i += static_cast<std::size_t>(length);
  }
  return true;
}

}  // namespace asgi_bridge::worker::detail
