#pragma once
// Checks a response head that an application sent (http.response.start,
// websocket.http.response.start, websocket.accept's headers) before any of it
// reaches a client. Apps are buggy: a head the HTTP grammar forbids would
// desynchronise the client (two Content-Lengths, a status 101 followed by more
// HTTP) or split the response. Pure functions of the event's values: no Beast,
// no I/O, so a fuzz target can call them directly.
#include <cstdint>
#include <optional>
#include <string>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::gateway {

struct ResponseHeadCheck {
  // Empty: the head may be written. Otherwise what is wrong, for a log line,
  // e.g. `content-length "abc" is not a decimal number`.
  std::string problem;
  // The rule broken, one of a few fixed words ("status", "content-length",
  // "transfer-encoding", "header name", "header value"): a key for rate
  // limiting the log lines, which the problem's quoted bytes cannot be.
  const char* rule = "";
  // The app's Content-Length (identical repeats collapse into one).
  std::optional<std::uint64_t> content_length;

  bool ok() const { return problem.empty(); }
};

// A final response head: status 200-599 (ASGI has no informational
// responses, and 101 belongs to the gateway's own upgrade), the header lines
// of check_response_headers, at most one Content-Length value of 1*DIGIT that
// fits 64 bits (repeats must be identical), and no Transfer-Encoding but
// "chunked" (the gateway frames the body itself and drops that one).
ResponseHeadCheck check_response_head(int status, const protocol::Headers& headers);

// Header lines alone: names are RFC 9110 tokens, values hold no control
// character but HTAB (no CR, LF, NUL, DEL...).
ResponseHeadCheck check_response_headers(const protocol::Headers& headers);

}  // namespace asgi_bridge::gateway
