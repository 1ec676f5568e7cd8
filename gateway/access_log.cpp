#include "access_log.hpp"

#include <ctime>
#include <iterator>
#include <stdexcept>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "log.hpp"

namespace asgi_bridge::gateway {
namespace {

using Out = std::back_insert_iterator<std::string>;
using Kind = AccessRecord::Kind;

// As nginx escapes its log variables: what a client sent cannot end a quoted
// field or forge a line (quote, backslash, control and non-ASCII bytes as \xHH).
void append_escaped(std::string& out, std::string_view text) {
  if (text.empty()) {
    out += '-';
    return;
  }
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '"' || c == '\\') {
      fmt::format_to(Out(out), "\\x{:02X}", byte);
    } else {
      out += c;
    }
  }
}

std::string_view version_text(int version) {
  return version == 20 ? "HTTP/2.0" : version == 10 ? "HTTP/1.0" : "HTTP/1.1";
}

// "GET /path HTTP/1.1", or the raw first line of a head the gateway refused.
void append_request_line(std::string& out, const AccessRecord& record) {
  if (record.kind == Kind::websocket_close) {
    out += "WSDISCONNECT ";
    append_escaped(out, record.target);
    return;
  }
  if (record.method.empty()) {
    append_escaped(out, record.raw_request_line);
    return;
  }
  append_escaped(out, record.method);
  out += ' ';
  append_escaped(out, record.target);
  out += ' ';
  out += version_text(record.http_version);
}

std::string_view origin_of(const AccessRecord& record) {
  if (record.kind == Kind::websocket_close) return to_string(record.closed_by);
  if (record.status == 0) return "none";
  return record.gateway_reason ? "gateway" : "app";
}

double seconds(std::chrono::nanoseconds duration) { return std::chrono::duration<double>(duration).count(); }

std::tm utc_now() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  return fmt::gmtime(now);
}

// host - - [10/Oct/2026:13:55:36 +0000] "GET /x HTTP/1.1" 200 1234 "referer" "agent" rt=0.002 ...
// The status position holds the close code on a WebSocket's close line, and
// 499 (nginx's "client closed request") when the client left before any
// response.
std::string combined_line(const AccessRecord& record) {
  std::string out;
  out.reserve(256);
  append_escaped(out, record.client.empty() ? std::string_view("unix:") : record.client);
  fmt::format_to(Out(out), " - - [{:%d/%b/%Y:%H:%M:%S} +0000] \"", utc_now());
  append_request_line(out, record);
  fmt::format_to(Out(out), "\" {} {} \"", record.status == 0 ? 499 : record.status, record.bytes_sent);
  append_escaped(out, record.referer);
  out += "\" \"";
  append_escaped(out, record.user_agent);
  fmt::format_to(Out(out), "\" rt={:.6f} worker=", seconds(record.duration));
  append_escaped(out, record.worker);
  if (record.kind == Kind::websocket_close) {
    fmt::format_to(Out(out), " closed_by={} msgs_in={} bytes_in={} msgs_out={} bytes_out={}", origin_of(record),
                   record.messages_received, record.bytes_received, record.messages_sent, record.bytes_sent);
    return out;
  }
  fmt::format_to(Out(out), " origin={}", origin_of(record));
  if (record.gateway_reason) fmt::format_to(Out(out), " reason={}", to_string(*record.gateway_reason));
  if (record.kind == Kind::websocket_handshake) out += " ws=handshake";
  return out;
}

// As Daphne writes it (daphne/access.py): host - - [date] "request" status length,
// its date local and without a zone (here: UTC), WebSockets as WSCONNECT,
// WSREJECT and WSDISCONNECT lines with no status or length.
std::string daphne_line(const AccessRecord& record) {
  std::string out;
  out.reserve(128);
  append_escaped(out, record.client.empty() ? std::string_view("unix:") : record.client);
  fmt::format_to(Out(out), " - - [{:%d/%b/%Y:%H:%M:%S}] \"", utc_now());
  if (record.kind == Kind::http) {
    if (record.method.empty()) {
      append_escaped(out, record.raw_request_line);
    } else {
      append_escaped(out, record.method);
      out += ' ';
      append_escaped(out, record.target);
    }
    out += '"';
    if (record.status == 0) {
      out += " - -";
    } else {
      fmt::format_to(Out(out), " {} {}", record.status, record.bytes_sent);
    }
    return out;
  }
  out += record.kind == Kind::websocket_close ? "WSDISCONNECT " : record.status == 101 ? "WSCONNECT " : "WSREJECT ";
  append_escaped(out, record.target);
  out += "\" - -";
  return out;
}

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::http: return "http";
    case Kind::websocket_handshake: return "websocket.handshake";
    case Kind::websocket_close: return "websocket.close";
  }
  return "unknown";
}

// An empty view as JSON null.
nlohmann::ordered_json text_or_null(std::string_view text) {
  return text.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(std::string(text));
}

}  // namespace

AccessLogFormat parse_access_log_format(std::string_view name) {
  if (name == "combined") return AccessLogFormat::combined;
  if (name == "daphne") return AccessLogFormat::daphne;
  throw std::invalid_argument(fmt::format("unknown access log format '{}' (combined or daphne)", name));
}

std::string format_access_line(const AccessRecord& record, AccessLogFormat format) {
  return format == AccessLogFormat::daphne ? daphne_line(record) : combined_line(record);
}

std::string format_access_json(const AccessRecord& record, AccessLogFormat format) {
  nlohmann::ordered_json line;
  line["message"] = format_access_line(record, format);
  line["type"] = kind_name(record.kind);
  line["client"] = text_or_null(record.client);
  line["client_port"] = record.client_port ? nlohmann::ordered_json(*record.client_port) : nullptr;
  if (!record.method.empty() || record.kind != Kind::http) {
    line["method"] = record.kind == Kind::http ? std::string(record.method) : std::string("GET");
    line["target"] = std::string(record.target);
    line["http_version"] = record.http_version == 20 ? "2" : record.http_version == 10 ? "1.0" : "1.1";
  } else {
    line["request_line"] = std::string(record.raw_request_line);
  }
  line["referer"] = text_or_null(record.referer);
  line["user_agent"] = text_or_null(record.user_agent);
  if (record.kind == Kind::websocket_close) {
    line["close_code"] = record.status;
    line["closed_by"] = to_string(record.closed_by);
    line["messages_received"] = record.messages_received;
    line["messages_sent"] = record.messages_sent;
  } else {
    line["status"] = record.status == 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(record.status);
    line["origin"] = origin_of(record);
    line["reason"] = record.gateway_reason ? nlohmann::ordered_json(to_string(*record.gateway_reason)) : nullptr;
  }
  line["bytes_received"] = record.bytes_received;
  line["bytes_sent"] = record.bytes_sent;
  line["duration"] = seconds(record.duration);
  line["worker"] = text_or_null(record.worker);
  // replace: a client's invalid UTF-8 (a target, a User-Agent) never fails the line.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void write_access_log(const AccessRecord& record, AccessLogFormat format, bool json) {
  auto line = json ? format_access_json(record, format) : format_access_line(record, format);
  log::access().info("{}", line);
}

}  // namespace asgi_bridge::gateway
