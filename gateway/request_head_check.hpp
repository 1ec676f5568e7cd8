#pragma once
// The gateway's own check of a client's request head, before Beast parses it
// (design.md §8: limits are counted by the gateway, not trusted to a library).
// Boost 1.74's parser counts --max-header-size only over the bytes still
// unparsed, so a head sent in pieces is never limited; and it lets through
// framing that lets a client smuggle a second request past a proxy (RFC 9112
// §6.1, §6.3, §11.2). This check runs on bytes only (no sockets, no Beast), so
// the unit tests and the fuzzer drive it directly.
//
// It enforces, over the bytes as received:
// - the head (request line + field lines + the empty line, CRLFs included)
//   is at most `max_bytes`, and has at most `max_fields` field lines: 431;
// - every line ends with CRLF; no bare CR or LF, no obs-fold (a line starting
//   with SP/HTAB), no whitespace before a field's colon, field names are
//   tokens, field values hold no CTL but HTAB: 400;
// - the request line is `token SP target SP HTTP/d.d`, the target only
//   visible ASCII (no CTL, space, DEL or non-ASCII byte; RFC 9112 §3.2): 400;
// - framing: Content-Length is 1*DIGIT, given once (a repeat, even of the
//   same value, is refused as nginx does); Transfer-Encoding is given once,
//   only in HTTP/1.1, never with Content-Length, and is exactly `chunked`:
//   a list not ending in `chunked` is 400 (§6.3), another coding before it
//   is 501 (we implement none), a malformed list is 400.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace asgi_bridge::gateway {

struct HeadLimits {
  std::size_t max_bytes = 16 * 1024;
  std::size_t max_fields = 100;
};

struct HeadVerdict {
  enum class State { need_more, complete, rejected };
  State state = State::need_more;
  int status = 0;              // rejected: 400, 431 or 501
  std::string_view reason;     // rejected: why, for the log (a string literal)
  std::size_t head_bytes = 0;  // complete: the head's length, its final CRLF included

  bool complete() const { return state == State::complete; }
  bool rejected() const { return state == State::rejected; }
};

class RequestHeadCheck {
 public:
  explicit RequestHeadCheck(HeadLimits limits) : limits_(limits) {}

  // `received`: the bytes received so far for this request, from its first
  // byte. Each call passes the same bytes and possibly more; the check
  // resumes where it stopped, so a head arriving byte by byte costs linear
  // time. Bytes past the head (a body, a pipelined request) are not looked
  // at. Never reads past `max_bytes`: once `received` holds that many bytes
  // without a complete head, the verdict is 431, so a caller that reads at
  // most `max_bytes - received.size()` more bytes holds at most `max_bytes`.
  HeadVerdict feed(std::string_view received);

 private:
  HeadVerdict on_line(std::string_view line);  // one line, CRLF stripped
  HeadVerdict on_line_content(std::string_view line);
  HeadVerdict on_request_line(std::string_view line);
  HeadVerdict on_field_line(std::string_view line);
  HeadVerdict on_framing_field(std::string_view name, std::string_view value);
  HeadVerdict on_end_of_head(std::size_t head_bytes);

  HeadLimits limits_;
  std::size_t scanned_ = 0;     // bytes looked at so far
  std::size_t line_start_ = 0;  // where the current line began
  bool seen_request_line_ = false;
  bool http10_ = false;
  std::size_t fields_ = 0;
  bool content_length_ = false;
  bool transfer_encoding_ = false;
  HeadVerdict coding_;  // the verdict on the Transfer-Encoding value, given at the end
  std::optional<HeadVerdict> final_;  // once decided, every later call returns it
};

// The whole check over one buffer: what a fuzzer or a test calls.
HeadVerdict check_request_head(std::string_view bytes, HeadLimits limits);

// RFC 9112 §3.2 / RFC 3986: a request-target holds only visible ASCII.
bool valid_request_target(std::string_view target);

// A Host field value: uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2):
// a reg-name (unreserved, sub-delims, pct-encoded) or an IP literal in
// brackets; empty is valid (no authority). No space, slash or userinfo.
bool valid_host(std::string_view host);

}  // namespace asgi_bridge::gateway
