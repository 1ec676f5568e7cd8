#include "asgi_adapter.hpp"

#include <array>
#include <charconv>
#include <chrono>
#include <ctime>
#include <iterator>
#include <utility>

#include <boost/beast/http/status.hpp>
#include <fmt/format.h>

#include "asgi_bridge/protocol/http_grammar.hpp"
#include "list_items.hpp"
#include "request_head_check.hpp"

namespace asgi_bridge::gateway {
namespace http = boost::beast::http;
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if it is invalid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  std::size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (length == 0 || i + length > s.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  if (length == 2 && c < 0xC2) return 0;                                   // overlong
  if (length == 3) {
    unsigned char c1 = byte(i + 1);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) return 0;   // overlong, surrogate
  }
  if (length == 4) {
    unsigned char c1 = byte(i + 1);
    if ((c == 0xF0 && c1 < 0x90) || c > 0xF4 || (c == 0xF4 && c1 >= 0x90)) return 0;
  }
  return length;
}

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    if (auto n = utf8_sequence_length(s, i)) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

// Splits a request target into raw path and query; nullopt if malformed.
std::optional<std::pair<std::string_view, std::string_view>> split_target(std::string_view target) {
  if (target == "*") return std::pair{target, std::string_view{}};
  if (target.empty()) return std::nullopt;
  if (target.front() != '/') {
    // absolute-form: scheme://authority/path?query (sent to proxies)
    auto scheme_end = target.find("://");
    if (scheme_end == std::string_view::npos) return std::nullopt;
    auto path_start = target.find_first_of("/?", scheme_end + 3);
    target = path_start == std::string_view::npos ? std::string_view{"/"} : target.substr(path_start);
    if (target.front() == '?') return std::pair{std::string_view{"/"}, target.substr(1)};
  }
  auto question = target.find('?');
  if (question == std::string_view::npos) return std::pair{target, std::string_view{}};
  return std::pair{target.substr(0, question), target.substr(question + 1)};
}

}  // namespace

// Formatted once a second per thread (as nginx does), not per response:
// strftime and gmtime were a few per cent of a small response's cost.
const std::string& http_date() {
  thread_local std::time_t formatted_at = -1;
  thread_local std::string date;
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  if (now == formatted_at) return date;
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::array<char, 64> buffer{};
  auto n = std::strftime(buffer.data(), buffer.size(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  date.assign(buffer.data(), n);
  formatted_at = now;
  return date;
}

bool is_hop_by_hop_for_app(std::string_view name) {
  // The gateway owns the framing and connection management of a response.
  using protocol::http::iequals;
  return iequals(name, "transfer-encoding") || iequals(name, "connection") || iequals(name, "keep-alive");
}

bool app_asks_to_close(const protocol::Headers& headers) {
  using protocol::http::iequals;
  for (const auto& header : headers) {
    if (!iequals(header.name, "connection")) continue;
    for (auto option : list_items(header.value)) {
      if (iequals(option, "close")) return true;
    }
  }
  return false;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string percent_decode_utf8(std::string_view raw) {
  std::string decoded;
  decoded.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    int high = 0;
    int low = 0;
    if (raw[i] == '%' && i + 2 < raw.size() && (high = hex_value(raw[i + 1])) >= 0 &&
        (low = hex_value(raw[i + 2])) >= 0) {
      decoded.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else {
      decoded.push_back(raw[i]);
    }
  }
  return to_valid_utf8(decoded);
}

std::vector<std::string> offered_subprotocols(const RequestHeader& request) {
  std::vector<std::string> protocols;
  auto [begin, end] = request.equal_range(http::field::sec_websocket_protocol);
  for (auto field = begin; field != end; ++field) {
    for (auto item : list_items(field->value())) protocols.emplace_back(item);
  }
  return protocols;
}

std::optional<protocol::Scope> make_scope(const RequestHeader& request, protocol::Headers headers,
                                          protocol::ScopeType type, const SocketEnds& ends,
                                          const Config& config) {
  auto parts = split_target(request.target());
  if (!parts) return std::nullopt;
  protocol::Scope scope;
  scope.type = type;
  scope.http_version = request.version() == 10 ? "1.0" : "1.1";
  if (type == protocol::ScopeType::http) {
    scope.method = std::string(request.method_string());
    scope.scheme = ends.tls ? "https" : "http";
    scope.extensions = {"http.response.trailers"};
  } else {
    scope.scheme = ends.tls ? "wss" : "ws";
    scope.subprotocols = offered_subprotocols(request);
    scope.extensions = {"websocket.http.response", "asgi-bridge.broadcast"};
  }
  scope.raw_path = std::string(parts->first);
  scope.path = percent_decode_utf8(parts->first);
  scope.query_string = std::string(parts->second);
  scope.root_path = config.root_path;
  scope.headers = std::move(headers);
  scope.client = ends.client;
  scope.server = ends.server;
  // After the scheme of our own listener: a trusted proxy's X-Forwarded-Proto wins.
  if (config.proxy_headers) apply_proxy_headers(scope, ends.peer_address, config.trusted_proxies);
  return scope;
}

// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request
// with more than one Host line or an invalid one (an app or a proxy that builds
// URLs from it must not be handed a space, a slash or userinfo).
bool has_valid_host(const RequestHeader& request) {
  auto [first, last] = request.equal_range(http::field::host);
  if (first == last) return request.version() < 11;
  return std::next(first) == last && valid_host(first->value());
}

std::string format_response_head(const ResponseHead& head) {
  std::string out;
  out.reserve(256);
  auto reason = http::obsolete_reason(static_cast<http::status>(head.status));
  // Appended, not fmt::format_to()'d: formatting was most of this line's cost.
  std::array<char, 16> digits{};
  auto end = std::to_chars(digits.data(), digits.data() + digits.size(), head.status).ptr;
  out.append("HTTP/1.1 ").append(digits.data(), end).append(" ").append(reason.data(), reason.size()).append("\r\n");
  bool has_date = false;
  bool has_server = false;
  bool has_length = false;
  if (head.app_headers) {
    for (const auto& header : *head.app_headers) {
      // Compared without a lower-cased copy: a string per header and response.
      using protocol::http::iequals;
      std::string_view name = header.name;
      if (is_hop_by_hop_for_app(name)) continue;
      // Repeats are identical (check_response_head): one line, as RFC 9110 §8.6
      // wants, and none on a 204, which MUST NOT have one (as over HTTP/2).
      if (iequals(name, "content-length") && (head.status == 204 || std::exchange(has_length, true))) continue;
      has_date = has_date || iequals(name, "date");
      has_server = has_server || iequals(name, "server");
      out.append(header.name).append(": ").append(header.value).append("\r\n");
    }
  }
  if (!has_server && !head.server_name.empty()) out.append("server: ").append(head.server_name).append("\r\n");
  if (!has_date) out.append("date: ").append(http_date()).append("\r\n");
  if (head.chunked) out.append("transfer-encoding: chunked\r\n");
  if (head.close) {
    out.append("connection: close\r\n");
  } else if (head.keep_alive_header) {
    out.append("connection: keep-alive\r\n");
  }
  out.append("\r\n");
  return out;
}

std::string error_body(int status) {
  auto reason = http::obsolete_reason(static_cast<http::status>(status));
  return fmt::format("{} {}\n", status, std::string_view(reason.data(), reason.size()));
}

std::string format_error_response(int status, std::string_view server_name, std::string_view extra_headers) {
  auto reason = http::obsolete_reason(static_cast<http::status>(status));
  std::string body = error_body(status);
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", status, std::string_view(reason.data(), reason.size()));
  if (!server_name.empty()) out += fmt::format("server: {}\r\n", server_name);
  out += fmt::format("date: {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n", http_date(),
                     body.size());
  out.append(extra_headers);
  out += "connection: close\r\n\r\n";
  out += body;
  return out;
}

}  // namespace asgi_bridge::gateway
