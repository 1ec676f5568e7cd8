#pragma once
// The access log (--access-log): one line per exchange, built here from an
// AccessRecord the sessions fill. A record holds views into the session's
// own data, so filling one allocates nothing; the line is built only when
// the access log is on. The same record feeds the metrics (ShardMetrics::count).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "metrics.hpp"

namespace asgi_bridge::gateway {

struct AccessRecord {
  enum class Kind {
    http,                 // an HTTP request and its response (the app's or the gateway's own)
    websocket_handshake,  // a WebSocket upgrade answered: 101, 403, a denial, a gateway error
    websocket_close,      // an accepted WebSocket ended
  };
  Kind kind = Kind::http;
  std::string_view client;         // the client's host, as --proxy-headers resolved it; empty: a Unix socket peer
  std::optional<int> client_port;
  // The request line: method and target when the head was parsed, else the
  // raw first line as received (a rejected head), possibly empty.
  std::string_view method;
  std::string_view target;
  int http_version = 11;           // 10, 11 or 20 (HTTP/2)
  std::string_view raw_request_line;
  std::string_view referer;
  std::string_view user_agent;
  // HTTP status sent (0: none, the client left first); websocket_close: the close code.
  int status = 0;
  std::uint64_t bytes_received = 0;  // HTTP: request head and body; WebSocket close: message payloads
  std::uint64_t bytes_sent = 0;      // HTTP: response head and body; WebSocket close: message payloads
  std::chrono::nanoseconds duration{};  // HTTP: head read to response end; handshake: the hold; close: since 101
  std::string_view worker;         // the worker that answered; empty: none
  std::optional<GatewayReason> gateway_reason;  // set when the gateway made the response itself
  // websocket_close only.
  Closer closed_by = Closer::client;
  std::uint64_t messages_received = 0;
  std::uint64_t messages_sent = 0;
};

// --access-log-format: Apache/nginx "combined" (with the fields it lacks
// appended as key=value), or Daphne's own lines.
enum class AccessLogFormat { combined, daphne };
// Throws std::invalid_argument for an unknown name.
AccessLogFormat parse_access_log_format(std::string_view name);

// The text line for `record` in `format`.
std::string format_access_line(const AccessRecord& record, AccessLogFormat format);
// --log-format json: a JSON object with the text line as "message" and every
// field under its own key (log.cpp puts time, level and logger first).
std::string format_access_json(const AccessRecord& record, AccessLogFormat format);

// Writes the record's line to the "access" logger.
void write_access_log(const AccessRecord& record, AccessLogFormat format, bool json);

}  // namespace asgi_bridge::gateway
