#include "request_head_check.hpp"

#include <algorithm>
#include <array>

#include "asgi_bridge/protocol/http_grammar.hpp"

namespace asgi_bridge::gateway {
namespace {

using State = HeadVerdict::State;

HeadVerdict reject(int status, std::string_view reason) { return {State::rejected, status, reason, 0}; }

using protocol::http::iequals;
using protocol::http::is_field_value;
using protocol::http::is_ows;
using protocol::http::is_tchar;
using protocol::http::is_token;
using protocol::http::trim_ows;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// HTTP/d.d (RFC 9112 §2.3)
bool is_http_version(std::string_view v) {
  return v.size() == 8 && v.substr(0, 5) == "HTTP/" && is_digit(v[5]) && v[6] == '.' && is_digit(v[7]);
}

// The Transfer-Encoding value: the only coding we implement is chunked, and
// it must come last (RFC 9112 §6.3), once. A verdict in state need_more: fine.
HeadVerdict check_codings(std::string_view value) {
  bool chunked_last = false;
  bool chunked_before = false;
  bool other = false;
  while (true) {
    auto comma = value.find(',');
    auto coding = trim_ows(value.substr(0, comma));
    if (!is_token(coding)) return reject(400, "malformed Transfer-Encoding");
    chunked_before = chunked_before || chunked_last;
    chunked_last = iequals(coding, "chunked");
    other = other || !chunked_last;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  if (!chunked_last) return reject(400, "Transfer-Encoding does not end in chunked");
  if (chunked_before) return reject(400, "chunked applied twice in Transfer-Encoding");
  if (other) return reject(501, "unsupported transfer coding");
  return {};
}

}  // namespace

bool valid_request_target(std::string_view target) {
  return !target.empty() && std::all_of(target.begin(), target.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7F;
  });
}

namespace {

bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// unreserved / sub-delims (RFC 3986 §2): a table, as every request's Host goes through it.
constexpr std::array<bool, 256> make_reg_name_table() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) {
    table[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  }
  for (char c : std::string_view("-._~!$&'()*+,;=")) table[static_cast<unsigned char>(c)] = true;
  return table;
}
constexpr auto k_reg_name_char = make_reg_name_table();

// reg-name = *( unreserved / pct-encoded / sub-delims ); with `colons`, the
// inside of an IP literal (IPv6address, IPvFuture) as loosely: ":" too.
bool valid_host_chars(std::string_view text, bool colons) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) return false;
      i += 2;
    } else if (!k_reg_name_char[static_cast<unsigned char>(c)] && !(colons && c == ':')) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool valid_host(std::string_view host) {
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string_view::npos || close == 1 || !valid_host_chars(host.substr(1, close - 1), true)) return false;
    port = host.substr(close + 1);
  } else {
    auto colon = host.find(':');
    if (colon != std::string_view::npos) port = host.substr(colon);
    if (!valid_host_chars(host.substr(0, colon), false)) return false;
  }
  if (port.empty()) return true;
  return port.front() == ':' && std::all_of(port.begin() + 1, port.end(), is_digit);
}

HeadVerdict RequestHeadCheck::feed(std::string_view received) {
  if (final_) return *final_;
  // Nothing past max_bytes can belong to a head within the limit.
  auto end = std::min(received.size(), limits_.max_bytes);
  while (scanned_ < end) {
    auto lf = received.find('\n', scanned_);
    if (lf == std::string_view::npos || lf >= end) {
      scanned_ = end;
      break;
    }
    scanned_ = lf + 1;
    HeadVerdict verdict;
    if (lf == line_start_ || received[lf - 1] != '\r') {
      verdict = reject(400, "a line not ending in CRLF (bare LF)");
    } else {
      auto line = received.substr(line_start_, lf - 1 - line_start_);
      line_start_ = scanned_;
      verdict = line.empty() && seen_request_line_ ? on_end_of_head(scanned_) : on_line(line);
    }
    if (verdict.state != State::need_more) {
      final_ = verdict;
      return verdict;
    }
  }
  if (received.size() >= limits_.max_bytes) {
    final_ = reject(431, "request head over --max-header-size bytes");
    return *final_;
  }
  return {};
}

HeadVerdict RequestHeadCheck::on_line(std::string_view line) {
  auto verdict = on_line_content(line);
  // A CR not followed by LF (every line check refuses it): some parsers end
  // the line there, others not. Looked for only once the line is refused.
  if (verdict.rejected() && verdict.status == 400 && line.find('\r') != std::string_view::npos) {
    return reject(400, "bare CR in the request head");
  }
  return verdict;
}

HeadVerdict RequestHeadCheck::on_line_content(std::string_view line) {
  if (!seen_request_line_) {
    seen_request_line_ = true;
    return on_request_line(line);
  }
  return on_field_line(line);
}

// request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
HeadVerdict RequestHeadCheck::on_request_line(std::string_view line) {
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return reject(400, "malformed request line");
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto version = line.substr(sp2 + 1);
  if (!is_token(method) || !is_http_version(version)) return reject(400, "malformed request line");
  if (!valid_request_target(target)) return reject(400, "invalid byte in the request target");
  http10_ = version < std::string_view("HTTP/1.1");
  return {};
}

// field-line = field-name ":" OWS field-value OWS (RFC 9112 §5)
HeadVerdict RequestHeadCheck::on_field_line(std::string_view line) {
  if (++fields_ > limits_.max_fields) return reject(431, "more than --max-header-count header fields");
  if (is_ows(line.front())) return reject(400, "obsolete line folding (a line starting with whitespace)");
  auto colon = line.find(':');
  auto name = line.substr(0, colon);
  for (char c : name) {
    if (is_ows(c)) return reject(400, "whitespace between a field name and its colon");
    if (!is_tchar(c)) return reject(400, "invalid character in a field name");
  }
  if (colon == std::string_view::npos) return reject(400, "a field line without a colon");
  if (name.empty()) return reject(400, "empty field name");
  auto value = line.substr(colon + 1);
  if (!is_field_value(value)) return reject(400, "invalid character in a field value");
  return on_framing_field(name, trim_ows(value));
}

HeadVerdict RequestHeadCheck::on_framing_field(std::string_view name, std::string_view value) {
  if (iequals(name, "content-length")) {
    // RFC 9110 §8.6 allows merging identical repeats; refusing them (as
    // nginx does) leaves no room for two parsers to disagree.
    if (content_length_) return reject(400, "Content-Length given twice");
    content_length_ = true;
    bool digits = !value.empty() && std::all_of(value.begin(), value.end(), is_digit);
    // 19 digits always fit in 64 bits; more is no body anyone will send.
    if (!digits || value.size() > 19) return reject(400, "invalid Content-Length");
  } else if (iequals(name, "transfer-encoding")) {
    if (transfer_encoding_) return reject(400, "Transfer-Encoding given twice");
    transfer_encoding_ = true;
    coding_ = check_codings(value);
  }
  return {};
}

HeadVerdict RequestHeadCheck::on_end_of_head(std::size_t head_bytes) {
  if (transfer_encoding_ && content_length_) return reject(400, "Transfer-Encoding with Content-Length");
  // RFC 9112 §6.1: framing by Transfer-Encoding in HTTP/1.0 is faulty.
  if (transfer_encoding_ && http10_) return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
  if (coding_.rejected()) return coding_;
  return {State::complete, 0, {}, head_bytes};
}

HeadVerdict check_request_head(std::string_view bytes, HeadLimits limits) {
  return RequestHeadCheck(limits).feed(bytes);
}

}  // namespace asgi_bridge::gateway
