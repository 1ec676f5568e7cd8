#include "http_session.hpp"

#include <algorithm>
#include <array>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <fmt/format.h>

#include "access_log.hpp"
#include "asgi_adapter.hpp"
#include "asgi_bridge/protocol/codec.hpp"
#include "http2_session.hpp"
#include "response_events.hpp"
#include "log.hpp"
#include "asgi_bridge/bus/log_limiter.hpp"
#include "request_head_check.hpp"
#include "response_check.hpp"
#include "session_spawn.hpp"
#include "websocket_session.hpp"

namespace asgi_bridge::gateway {
namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

constexpr std::size_t k_body_chunk = 64 * 1024;
constexpr std::size_t k_head_read = 4096;  // a typical request head in one read
constexpr std::string_view k_continue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr auto k_tls_shutdown_timeout = std::chrono::seconds(2);

// stream_truncated: a TLS client closed the TCP connection without close_notify.
bool is_disconnect(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor ||
         ec == asio::ssl::error::stream_truncated;
}

bool header_contains_token(const RequestHeader& request, http::field field, std::string_view token) {
  auto [begin, end] = request.equal_range(field);
  for (auto it = begin; it != end; ++it) {
    if (lower(it->value()).find(token) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

HttpSession::HttpSession(ClientStream stream, Shard& shard, Dispatcher& dispatcher, const Config& config)
    : stream_(std::move(stream)),
      shard_(shard),
      dispatcher_(dispatcher),
      config_(config),
      // Bounded: a chunk-size line or trailer that never ends fails with
      // buffer_overflow (400) instead of growing the buffer for ever.
      buffer_(std::max(config.max_header_size, k_body_chunk) + k_head_read),
      read_deadline_(stream_.get_executor()),
      write_deadline_(stream_.get_executor()),
      body_deadline_(stream_.get_executor()),
      body_rate_(config.min_body_rate, std::chrono::duration_cast<Clock::duration>(config.min_body_rate_grace)),
      ends_(prepare_socket(stream_.socket(), stream_.is_tls())),
      link_(stream_.get_executor(), shard, dispatcher) {}

HttpSession::~HttpSession() {
  shard_.untrack(drain_token_);  // the link ends an exchange still open
}

void HttpSession::start() {
  drain_token_ = shard_.track(weak_from_this());
  read_deadline_.on_due(weak_from_this(), [this] { on_timeout(read_deadline_); });
  write_deadline_.on_due(weak_from_this(), [this] { on_timeout(write_deadline_); });
  spawn_session(stream_.get_executor(), [self = shared_from_this()]() { return self->run(); }, log::http());
}

void HttpSession::drain() {
  draining_ = true;
  if (idle_) close_socket();
}

awaitable<void> HttpSession::run() {
  bool handshaken = co_await tls_handshake();
  if (!handshaken) {
    close_socket();
    co_return;
  }
  if (config_.http2 && stream_.is_tls() && negotiated_http2(stream_)) {
    hand_over_to_http2(std::string(buffered()));
    co_return;
  }
  if (config_.http2 && !stream_.is_tls()) {
    auto first = co_await read_first_bytes();
    if (first == FirstBytes::http2) {
      hand_over_to_http2(std::string(buffered()));
      co_return;
    }
    if (first == FirstBytes::none) {
      close_socket();
      co_return;
    }
  }
  // GCC 12 miscompiles co_await inside && / || (SIGILL): await on its own line.
  while (!draining_) {
    bool have_request = co_await read_head();
    if (!have_request) break;
    if (boost::beast::websocket::is_upgrade(parser_->request())) {
      shard_.untrack(drain_token_);
      drain_token_ = 0;
      start_websocket_session(std::move(stream_), std::move(ends_), std::move(parser_->request()), std::move(parser_->headers()),
                              std::string(buffered()), shard_, dispatcher_, config_);
      co_return;
    }
    if (!co_await serve()) break;
  }
  if (head_too_slow_) co_await answer_slow_head();
  co_await tls_shutdown();
  close_socket();
}

// h2c with prior knowledge: a plain connection's first bytes are HTTP/2's
// client preface. They are read as read_head would read them (which then
// finds them buffered), until they can no longer be the preface.
awaitable<HttpSession::FirstBytes> HttpSession::read_first_bytes() {
  boost::system::error_code ec;
  arm(read_deadline_, config_.keepalive_timeout);
  while (!ec && buffer_.size() < k_http2_preface.size() && k_http2_preface.substr(0, buffer_.size()) == buffered()) {
    auto n = co_await stream_.async_read_some(buffer_.prepare(k_head_read), redirect_error(use_awaitable, ec));
    buffer_.commit(n);
  }
  read_deadline_.clear();
  // Closed, failed or timed out before the bytes could tell: an unfinished
  // head gets no answer (as read_head gives none), and the socket is not read
  // again once its end was seen (a second read there never completed).
  if (ec || buffer_.size() == 0) co_return FirstBytes::none;
  co_return buffered().substr(0, k_http2_preface.size()) == k_http2_preface ? FirstBytes::http2 : FirstBytes::http1;
}

// The connection speaks HTTP/2 from here on (docs/http2.md); `received`:
// its bytes already read, from the client preface on.
void HttpSession::hand_over_to_http2(std::string received) {
  shard_.untrack(drain_token_);
  drain_token_ = 0;
  start_http2_session(std::move(stream_), std::move(ends_), std::move(received), shard_, dispatcher_, config_);
}

// --- TLS ------------------------------------------------------------------------

// The handshake gets the request head's deadline (--request-timeout); one
// that fails ends only this connection.
awaitable<bool> HttpSession::tls_handshake() {
  auto* tls = stream_.tls();
  if (!tls) co_return true;
  boost::system::error_code ec;
  arm(read_deadline_, config_.request_timeout);
  co_await tls->async_handshake(asio::ssl::stream_base::server, redirect_error(use_awaitable, ec));
  read_deadline_.clear();
  if (!ec) co_return true;
  if (timed_out_ || draining_) co_return false;
  // A client that connects and leaves (a TCP health check) is no news.
  log::http().log(is_disconnect(ec) ? spdlog::level::debug : spdlog::level::info, "{}: TLS handshake failed: {}",
                  ends_.label(), ec.message());
  co_return false;
}

// close_notify tells the client that the response really ended with the
// connection (one without a length would otherwise look cut short). The
// client's answer gets a short bounded wait, then the socket closes anyway.
awaitable<void> HttpSession::tls_shutdown() {
  auto* tls = stream_.tls();
  if (!tls || timed_out_) co_return;
  boost::system::error_code ec;
  arm(write_deadline_, k_tls_shutdown_timeout);
  co_await tls->async_shutdown(redirect_error(use_awaitable, ec));
  write_deadline_.clear();
}

// --- request ----------------------------------------------------------------

awaitable<bool> HttpSession::read_head() {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(config_.max_header_size));
  parser_->body_limit(config_.max_body_size);
  idle_ = true;
  boost::system::error_code ec;
  // RFC 9112 §2.2: empty lines before a request line are ignored (a client
  // may send a CRLF after a POST body). The connection is idle meanwhile,
  // within the same --keepalive-timeout, and max_header_size bytes of them
  // are answered 400.
  auto blank = drop_empty_lines();
  if (awaiting_request_line() && blank <= config_.max_header_size) {  // idle keep-alive: wait for the first bytes
    arm(read_deadline_, config_.keepalive_timeout);
    // A read, not async_wait(wait_read): Asio tries a read at once (often the
    // next request is there already), where a wait always re-arms epoll with
    // an epoll_ctl: one system call per request saved. Over TLS a wait could
    // also miss bytes OpenSSL has already taken off the socket.
    bool after_response = head_started_ != Clock::time_point{};
    do {
      auto n = after_response ? co_await read_after_round(buffer_.prepare(k_head_read), ec)
                              : co_await stream_.async_read_some(buffer_.prepare(k_head_read), redirect_error(use_awaitable, ec));
      buffer_.commit(n);
      after_response = false;
      blank += drop_empty_lines();
    } while (!ec && !draining_ && awaiting_request_line() && blank <= config_.max_header_size);
    read_deadline_.clear();
    if (ec || draining_) co_return false;
  }
  idle_ = false;
  if (blank > config_.max_header_size) co_return co_await reject_request(400, "empty lines without a request");
  head_started_ = Clock::now();
  bytes_in_ = bytes_out_ = 0;
  sent_status_ = 0;
  gateway_reason_.reset();
  arm(read_deadline_, config_.request_timeout);
  // The gateway counts the head itself (Beast 1.74 does not count a head
  // that arrives in pieces), and reads no more than the limit: the check
  // decides once max_header_size bytes are buffered, so `room` stays > 0.
  RequestHeadCheck check({config_.max_header_size, config_.max_header_count});
  auto verdict = check.feed(buffered());
  while (verdict.state == HeadVerdict::State::need_more) {
    auto room = std::min(k_head_read, config_.max_header_size - buffer_.size());
    auto n = co_await stream_.async_read_some(buffer_.prepare(room), redirect_error(use_awaitable, ec));
    buffer_.commit(n);
    if (ec) break;
    verdict = check.feed(buffered());
  }
  read_deadline_.clear();
  if (timed_out_ || is_disconnect(ec)) co_return false;
  if (ec) {
    auto why = ec.message();
    co_return co_await reject_request(400, why);
  }
  if (verdict.rejected()) co_return co_await reject_request(verdict.status, verdict.reason);
  // Beast parses the head just checked, whole, and nothing past it.
  auto used = parser_->put(asio::buffer(buffer_.data().data(), verdict.head_bytes), ec);
  if (!ec && (used != verdict.head_bytes || !parser_->is_header_done())) ec = http::error::partial_message;
  if (ec) {
    auto why = ec.message();
    co_return co_await reject_request(ec == http::error::body_limit ? 413 : 400, why);
  }
  buffer_.consume(used);
  bytes_in_ += used;
  co_return true;
}

// Drops the CRLFs at the front of the buffer; how many bytes they were.
std::size_t HttpSession::drop_empty_lines() {
  auto bytes = buffered();
  std::size_t n = 0;
  while (bytes.substr(n, 2) == "\r\n") n += 2;
  buffer_.consume(n);
  return n;
}

// Nothing of a request line yet: no byte, or a CR that may start an empty line.
bool HttpSession::awaiting_request_line() const { return buffer_.size() == 0 || buffered() == "\r"; }

// The read that waits for a keep-alive connection's next request, started
// once the responses queued in this round have gone out: the client has then
// had time to send it, and Asio's first try finds it, rather than failing
// with EAGAIN at once and reading again when epoll reports it (a system call
// saved). The read is started from a posted handler, not after a co_await of
// a post: that would cost a coroutine frame of its own.
awaitable<std::size_t> HttpSession::read_after_round(asio::mutable_buffer buffer, boost::system::error_code& ec) {
  auto token = redirect_error(use_awaitable, ec);
  return asio::async_initiate<decltype(token), void(boost::system::error_code, std::size_t)>(
      [this, buffer](auto handler) {
        asio::post(stream_.get_executor(), [this, buffer, handler = std::move(handler)]() mutable {
          stream_.async_read_some(buffer, std::move(handler));
        });
      },
      token);
}

std::string_view HttpSession::buffered() const {
  return {static_cast<const char*>(buffer_.data().data()), buffer_.size()};
}

// The client gets `status` and the connection closes: after a malformed head
// nothing tells where the next request would start. The log line is rate
// limited per client address and reason: a client can send bad heads fast.
awaitable<bool> HttpSession::reject_request(int status, std::string_view reason) {
  auto peer = ends_.peer_address ? ends_.peer_address->to_string() : std::string("unix");
  bus::LogLimiter::warn(log::http(), shard_.log_limiter(), fmt::format("{} {}", peer, reason), "{}: bad request ({}): {}", ends_.label(),
                   status, reason);
  if (bytes_in_ == 0) bytes_in_ = buffer_.size();  // a head refused unparsed: what was read of it
  co_await write(format_error_response(status, config_.server_name));
  sent_status_ = status;
  gateway_reason_ = reason_of_status(status);
  report_exchange();
  co_return false;
}

GatewayReason HttpSession::reason_of_status(int status) {
  if (status == 408) return GatewayReason::client_timeout;
  return status == 413 || status == 431 ? GatewayReason::limit : GatewayReason::bad_request;
}

awaitable<bool> HttpSession::serve() {
  auto& request = parser_->request();
  auto scope = make_scope(request, std::move(parser_->headers()), protocol::ScopeType::http, ends_, config_);
  if (!scope) co_return co_await reject_request(400, "invalid request target");
  if (config_.access_log) client_ = scope->client;  // as --proxy-headers resolved it
  if (!has_valid_host(request)) co_return co_await reject_request(400, "no valid Host, or more than one");
  link_.open();
  body_bytes_written_ = 0;
  client_gone_ = disconnect_sent_ = head_written_ = close_after_ = false;
  response_ = Response::awaiting_start;
  start_.reset();
  content_length_.reset();
  trailers_.clear();
  started_at_ = Clock::now();
  body_rate_.reset();
  body_too_slow_ = false;
  head_request_ = request.method() == http::verb::head;
  keep_alive_ = request.keep_alive();
  trailers_allowed_ = header_contains_token(request, http::field::te, "trailers");
  redispatchable_ = request.method() == http::verb::get || head_request_;

  std::string chunk;
  if (!parser_->is_done()) {
    // RFC 9110 §10.1.1: an HTTP/1.0 client knows no 1xx; its expectation is ignored.
    if (request.version() >= 11 && header_contains_token(request, http::field::expect, "100-continue")) {
      bool written = co_await write(k_continue);
      if (!written) {
        end_exchange();
        report_exchange();
        co_return false;
      }
    }
    auto result = co_await read_body_chunk(chunk);
    if (result != ReadResult::ok) {
      if (result != ReadResult::client_gone) {
        co_await write(format_error_response(status_of(result), config_.server_name));
        sent_status_ = status_of(result);
        gateway_reason_ = reason_of(result);
      }
      end_exchange();
      report_exchange();
      co_return false;
    }
  }
  body_complete_ = parser_->is_done();
  link_.send_first(protocol::HttpRequest{std::move(chunk), !body_complete_}, std::move(*scope), redispatchable_);
  if (body_complete_) {
    shard_.disconnect_sweep().enrol(*this);  // watched only if the response is slow
  } else {
    reader_running_ = true;
    asio::co_spawn(stream_.get_executor(), [self = shared_from_this()]() { return self->read_rest(); }, asio::detached);
  }
  co_await respond();
  leave_sweep();
  if (reader_running_) co_await stop_reader();  // a frame saved when the reader is done
  end_exchange();
  report_exchange();
  co_return keep_alive_ && !close_after_ && body_complete_ && !client_gone_ && !draining_;
}

awaitable<HttpSession::ReadResult> HttpSession::read_body_chunk(std::string& chunk) {
  // A body declared shorter than a chunk gets a buffer of its own size: a
  // 200-byte JSON body should not cost a zero-filled 64 KiB one.
  auto remaining = parser_->content_length_remaining();
  chunk.resize(remaining && *remaining > 0 ? std::min<std::uint64_t>(*remaining, k_body_chunk) : k_body_chunk);
  parser_->lend_body_buffer(chunk.data(), chunk.size());
  boost::system::error_code ec;
  arm_body_deadline();
  // Bodies move in chunks of up to 64 KiB: keep reading while bytes are
  // already there, rather than sending an event per socket read.
  buffer_.reserve(k_body_chunk);
  while (!parser_->is_done() && parser_->body_bytes() < chunk.size() && !ec) {
    boost::system::error_code ignored;
    if (parser_->body_bytes() > 0 && stream_.socket().available(ignored) == 0) break;  // never wait holding data
    if (buffer_.size() == 0 && !parser_->chunked()) {
      co_await read_body_in_place(chunk, ec);
    } else {
      co_await http::async_read_some(stream_, buffer_, *parser_, redirect_error(use_awaitable, ec));
    }
    if (ec == http::error::need_buffer) ec = {};
  }
  body_deadline_.cancel();
  body_rate_.read_ends(Clock::now(), parser_->body_bytes());
  chunk.resize(parser_->body_bytes());
  bytes_in_ += chunk.size();
  parser_->lend_body_buffer(nullptr, 0);
  auto result = read_result(ec);
  if (result != ReadResult::ok && result != ReadResult::client_gone) log_body_rejected(result);
  co_return result;
}

// A Content-Length body with nothing buffered: the socket's bytes go straight
// into the chunk, and the parser, handed them where they already are, only
// counts them (RequestParser::take_body does not copy them onto themselves).
// A 64 KiB body is then not copied through buffer_ first. The read stops at the
// body's end: the bytes of a pipelined request after it belong in buffer_.
awaitable<void> HttpSession::read_body_in_place(std::string& chunk, boost::system::error_code& ec) {
  char* at = chunk.data() + parser_->body_bytes();
  std::size_t room = chunk.size() - parser_->body_bytes();
  if (auto remaining = parser_->content_length_remaining()) room = std::min<std::uint64_t>(room, *remaining);
  auto n = co_await stream_.async_read_some(asio::buffer(at, room), redirect_error(use_awaitable, ec));
  if (ec) co_return;  // eof: the client left within the body (client_gone, as Beast's partial_message)
  parser_->put(asio::buffer(at, n), ec);
}

HttpSession::ReadResult HttpSession::read_result(const boost::system::error_code& ec) const {
  if (!ec) return ReadResult::ok;
  if (body_too_slow_) return ReadResult::too_slow;  // the deadline cancelled the read
  if (ec == http::error::body_limit) return ReadResult::too_large;
  if (timed_out_ || is_disconnect(ec) || ec == http::error::partial_message) return ReadResult::client_gone;
  return ReadResult::malformed;
}

int HttpSession::status_of(ReadResult result) {
  return result == ReadResult::too_slow ? 408 : result == ReadResult::too_large ? 413 : 400;
}

GatewayReason HttpSession::reason_of(ReadResult result) {
  return result == ReadResult::too_slow    ? GatewayReason::client_timeout
         : result == ReadResult::too_large ? GatewayReason::limit
                                           : GatewayReason::bad_request;
}

// A client can send bad bodies at will: its lines are limited per address.
void HttpSession::log_body_rejected(ReadResult result) {
  auto waited = std::chrono::duration<double>(body_rate_.waited()).count();
  auto why = result == ReadResult::too_slow
                 ? fmt::format("request body too slow: {} bytes in {:.1f} s of waiting (--min-body-rate {}, "
                               "--min-body-rate-grace {}, --request-timeout {})",
                               body_rate_.bytes(), waited, config_.min_body_rate, config_.min_body_rate_grace.count(),
                               config_.request_timeout.count())
             : result == ReadResult::too_large ? std::string("request body over --max-body-size")
                                               : std::string("malformed request body");
  auto outcome = head_written_ ? std::string("aborting the response") : fmt::format("answering {}", status_of(result));
  bus::LogLimiter::warn(log::http(), shard_.log_limiter(), client_key(status_of(result)), "{}: {}; {}",
                   ends_.label(), why, outcome);
}

// The body read's deadline: --request-timeout without a byte, or the end of
// what --min-body-rate allows the body so far, whichever comes first.
void HttpSession::arm_body_deadline() {
  auto now = Clock::now();
  auto deadline = body_rate_.read_starts(now);
  if (config_.request_timeout.count() > 0) {
    deadline = std::min(deadline, now + std::chrono::duration_cast<Clock::duration>(config_.request_timeout));
  }
  if (deadline == Clock::time_point::max()) return;
  body_deadline_.expires_at(deadline);
  body_deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->on_body_too_slow();
  });
}

// Before the response head went out the reader answers 408; after, the
// response can only be cut short.
void HttpSession::on_body_too_slow() {
  if (!body_rate_.reading() || body_deadline_.expiry() > Clock::now()) return;  // a late wake-up
  body_too_slow_ = true;
  if (head_written_) {
    close_socket();
    return;
  }
  boost::system::error_code ignored;
  stream_.socket().cancel(ignored);
}

// Runs beside respond(): streams the rest of the body while the worker grants
// credit, then watches the idle socket so a client that leaves is noticed.
awaitable<void> HttpSession::read_rest() {
  auto inbox = link_.inbox();
  while (!body_complete_ && !stop_reading_) {
    while (link_.window_full() && !stop_reading_) co_await link_.wait_for_credit();
    if (stop_reading_) break;
    std::string chunk;
    auto result = co_await read_body_chunk(chunk);
    if (stop_reading_) break;
    if (result == ReadResult::client_gone) {
      inbox->push(ClientGone{});
      break;
    }
    if (result != ReadResult::ok) {
      inbox->push(RequestInvalid{status_of(result)});
      break;
    }
    body_complete_ = parser_->is_done();
    link_.send_event(protocol::HttpRequest{std::move(chunk), !body_complete_});
  }
  if (body_complete_ && !stop_reading_) {
    watch_for_disconnect();  // it reports the reader's end
    co_return;
  }
  reader_running_ = false;
  inbox->push(ReaderStopped{});
}

// The disconnect sweep's call: the response has been waited for a while
// (DisconnectSweep). A read now costs nothing worth saving.
void HttpSession::start_watch() {
  reader_running_ = true;
  watch_for_disconnect();
}

// The request is whole: watch the socket while the response is on its way,
// so a client that leaves is noticed, and keep the bytes of a pipelined
// request for its turn; then the reader has ended. A callback, not a
// coroutine: a coroutine costs frames and a spawn that a callback does not.
void HttpSession::watch_for_disconnect() {
  // A full buffer (a client pipelining far ahead) gets an empty read, which
  // completes at once: the reader ends without watching.
  stream_.async_read_some(
      buffer_.prepare(std::min(k_head_read, buffer_.max_size() - buffer_.size())),
      [self = shared_from_this(), inbox = link_.inbox()](const boost::system::error_code& ec, std::size_t n) {
        if (!ec) {
          self->buffer_.commit(n);
        } else if (!self->stop_reading_) {
          inbox->push(ClientGone{});
        }
        self->reader_running_ = false;
        inbox->push(ReaderStopped{});
      });
}

awaitable<void> HttpSession::stop_reader() {
  if (!reader_running_) co_return;
  stop_reading_ = true;
  link_.wake();
  boost::system::error_code ignored;
  stream_.socket().cancel(ignored);
  while (reader_running_) co_await link_.inbox()->pop();
  stop_reading_ = false;
}

// --- response ---------------------------------------------------------------

// Takes events with try_pop() and waits on the inbox's timer, not with
// Inbox::pop(): that is a coroutine, a frame allocated for every event.
awaitable<void> HttpSession::respond() {
  auto http_timeout = std::chrono::duration_cast<Clock::duration>(config_.http_timeout);
  auto& inbox = *link_.inbox();
  while (response_ != Response::done) {
    auto deadline = response_ == Response::awaiting_start && http_timeout.count() > 0 ? started_at_ + http_timeout
                                                                                      : Clock::time_point::max();
    auto event = inbox.try_pop();
    if (!event && Clock::now() < deadline) {
      co_await inbox.wait(deadline);
      continue;
    }
    if (!event) {
      send_disconnect();
      co_await fail_exchange(504, GatewayReason::app_timeout, "the response did not start within --http-timeout");
    } else if (auto* reply = std::get_if<WorkerMessage>(&*event)) {
      if (auto next = handle(*reply)) co_await std::move(*next);
    } else if (auto* failure = std::get_if<BusFailure>(&*event)) {
      bool no_capacity = *failure == BusFailure::no_capacity;
      co_await fail_exchange(no_capacity ? 503 : 502,
                             no_capacity ? GatewayReason::no_worker : GatewayReason::worker_lost,
                             no_capacity ? "no worker available" : "worker lost");
    } else if (std::holds_alternative<ClientGone>(*event)) {
      log::http().debug("conn {}: client left before the response completed", link_.conn_id());
      client_gone_ = true;
      send_disconnect();
      response_ = Response::done;
    } else if (auto* invalid = std::get_if<RequestInvalid>(&*event)) {
      send_disconnect();
      co_await answer_error(invalid->status, reason_of_status(invalid->status));  // the reader logged why
    }
  }
}

// What the worker's message asks for; what is left to await, if anything.
// Not a coroutine, so that a response's start and body cost no frame of
// their own (each awaited coroutine allocates one): the start is handled at
// once, the body's write is on_body() itself, the rare rest handle_other().
// A start with its first body (docs/protocol.md §4.2) is the start, then
// that body.
std::optional<awaitable<void>> HttpSession::handle(WorkerMessage& reply) {
  using Step = ResponseStep::Kind;
  if (config_.access_log && worker_.empty()) worker_ = reply.worker_id;
  auto step = classify_response_message(reply, link_, response_);
  if (step.kind == Step::body) {
    auto& body = std::get<protocol::HttpResponseBody>(*reply.event);
    return on_body(body.body, body.more_body);
  }
  if (step.kind == Step::start && on_start(std::get<protocol::HttpResponseStart>(*reply.event), reply.worker_id)) {
    if (start_->body) return on_body(*start_->body, start_->more_body);
    return std::nullopt;
  }
  if (step.kind == Step::none || step.kind == Step::credit) return std::nullopt;
  return handle_other(reply, step);
}

awaitable<void> HttpSession::handle_other(WorkerMessage& reply, ResponseStep step) {
  using Step = ResponseStep::Kind;
  if (step.kind == Step::app_error) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), reply.worker_id + ": app error",
                     "conn {}: application error on worker {}: {}", link_.conn_id(), reply.worker_id, reply.error);
    co_await fail_exchange(500, GatewayReason::app_error, "application error");
    co_return;
  }
  if (step.kind == Step::start) {  // on_start() refused it (handle())
    send_disconnect();
    co_await answer_error(500, GatewayReason::invalid_response);
    co_return;
  }
  if (step.kind == Step::trailers) {
    auto& trailers = std::get<protocol::HttpResponseTrailers>(*reply.event);
    for (auto& header : trailers.headers) trailers_.push_back(std::move(header));
    if (!trailers.more_trailers) {
      end_response();
      if (chunked_) co_await write_last_chunk(&trailers_);
    }
    co_return;
  }
  bus::LogLimiter::warn(log::http(), shard_.log_limiter(), reply.worker_id + ": invalid event",
                   "conn {}: invalid event from worker {}: {}", link_.conn_id(), reply.worker_id, step.violation);
  send_disconnect();
  co_await fail_exchange(502, GatewayReason::invalid_response, step.violation);
}

// The app's head is checked before any of it is written: one the HTTP grammar
// forbids is logged here, and answered 500 by the caller, ending the exchange as
// any invalid event does. Not a coroutine: a frame per request saved.
bool HttpSession::on_start(protocol::HttpResponseStart& start, const std::string& worker_id) {
  auto check = check_response_head(start.status, start.headers);
  if (!check.ok()) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), worker_id + " invalid head: " + check.rule,
                     "conn {}: invalid http.response.start from worker {}: {}; answering 500", link_.conn_id(),
                     worker_id, check.problem);
    return false;
  }
  content_length_ = check.content_length;
  close_after_ = close_after_ || app_asks_to_close(start.headers);
  start_ = std::move(start);
  response_ = Response::started;
  return true;
}

awaitable<void> HttpSession::on_body(const std::string& body, bool more_body) {
  std::string head;
  if (!head_written_) {
    int status = start_->status;
    body_allowed_ = !(head_request_ || status == 204 || status == 304);
    bool http10 = parser_->request().version() < 11;
    chunked_ = body_allowed_ && !content_length_ && !http10;
    close_after_ = close_after_ || !keep_alive_ || draining_ || !body_complete_ ||
                   (body_allowed_ && !content_length_ && !chunked_);
    head = format_response_head({status, &start_->headers, chunked_, close_after_, !close_after_ && http10,
                                 config_.server_name});
    head_written_ = true;
    sent_status_ = status;
  }
  std::string_view payload = body_allowed_ ? std::string_view(body) : std::string_view{};
  if (content_length_ && body_bytes_written_ + payload.size() > *content_length_) {
    payload = payload.substr(0, *content_length_ - body_bytes_written_);  // never send more than announced
  }
  body_bytes_written_ += payload.size();
  std::string chunk_head = chunked_ && !payload.empty() ? fmt::format("{:x}\r\n", payload.size()) : std::string{};
  std::string_view chunk_tail = chunk_head.empty() ? std::string_view{} : std::string_view("\r\n");
  if (!head.empty() || !payload.empty()) {
    // head + chunk header go first; payload and its CRLF follow in the same write
    head += chunk_head;
    if (!co_await write(head, payload, chunk_tail)) {
      client_gone_ = true;
      send_disconnect();
      response_ = Response::done;
      co_return;
    }
  }
  if (more_body) {
    link_.on_written(body.size());
  } else if (start_->trailers) {
    response_ = Response::awaiting_trailers;
  } else {
    end_response();
    if (chunked_) co_await write_last_chunk(nullptr);
  }
}

// The response's last event came. Not a coroutine: a response with a
// Content-Length (the usual one) writes nothing more, and a frame is saved.
void HttpSession::end_response() {
  response_ = Response::done;
  if (content_length_ && body_bytes_written_ != *content_length_ && body_allowed_) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), "content-length mismatch",
                     "conn {}: the app sent {} body bytes for content-length {}", link_.conn_id(), body_bytes_written_,
                     *content_length_);
    close_after_ = true;  // the client cannot find the end of this response otherwise
  }
}

// A chunked response's end: the last chunk, with the trailers the client accepts.
awaitable<void> HttpSession::write_last_chunk(const protocol::Headers* trailers) {
  std::string last = "0\r\n";
  if (trailers && trailers_allowed_) {
    for (const auto& header : *trailers) last.append(header.name).append(": ").append(header.value).append("\r\n");
  }
  last += "\r\n";
  if (!co_await write(last)) client_gone_ = true;
}

// Before the head went out the client gets `status`; after, the response
// can only be cut short, which the client sees as an incomplete message.
awaitable<void> HttpSession::fail_exchange(int status, GatewayReason reason, const char* why) {
  if (head_written_) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), why, "conn {}: aborting the response: {}", link_.conn_id(),
                     why);
  } else {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), why, "conn {}: answering {}: {}", link_.conn_id(), status,
                     why);
  }
  co_await answer_error(status, reason);
}

// fail_exchange without its log line, for callers that logged the cause themselves.
awaitable<void> HttpSession::answer_error(int status, GatewayReason reason) {
  response_ = Response::done;
  close_after_ = true;
  if (head_written_) {
    close_socket();
    co_return;
  }
  head_written_ = true;
  sent_status_ = status;
  gateway_reason_ = reason;
  co_await write(format_error_response(status, config_.server_name, status == 503 ? "retry-after: 1\r\n" : ""));
}

// --- plumbing -----------------------------------------------------------------

awaitable<bool> HttpSession::write(std::string_view a, std::string_view b, std::string_view c) {
  std::array<asio::const_buffer, 3> buffers{asio::buffer(a), asio::buffer(b), asio::buffer(c)};
  // A response the socket takes whole (almost every small one) goes in one
  // non-blocking sendmsg: no deadline timer to arm and cancel, no
  // asynchronous operation to allocate and resume from. The rest of a
  // partial write (a full socket, TLS) takes the asynchronous path.
  if (c.empty()) {
    auto sent = stream_.try_write_now(buffers[0], buffers[1]);
    bytes_out_ += sent;
    if (sent == a.size() + b.size()) co_return true;
    for (auto& buffer : buffers) {
      auto taken = std::min(sent, buffer.size());
      buffer += taken;
      sent -= taken;
    }
  }
  boost::system::error_code ec;
  arm(write_deadline_, config_.request_timeout);
  auto written = co_await asio::async_write(stream_, buffers, redirect_error(use_awaitable, ec));
  bytes_out_ += written;
  write_deadline_.clear();
  if (ec) log::http().debug("conn {}: write failed: {}", link_.conn_id(), ec.message());
  co_return !ec;
}

void HttpSession::send_disconnect() {
  if (disconnect_sent_) return;
  disconnect_sent_ = true;
  link_.send_event(protocol::HttpDisconnect{});
}

void HttpSession::end_exchange() { link_.end(); }

void HttpSession::close_socket() { stream_.close(); }

void HttpSession::arm(LazyDeadline& deadline, Seconds timeout) {
  if (timeout.count() <= 0) return;
  deadline.set(std::chrono::duration_cast<Clock::duration>(timeout));
}

void HttpSession::on_timeout(const LazyDeadline& deadline) {
  // The read deadline past the idle wait is the request head's (--request-timeout).
  if (&deadline == &read_deadline_ && !idle_) {
    if (parser_->is_header_done()) return;  // the head came just in time
    head_too_slow_ = true;
    boost::system::error_code ignored;
    stream_.socket().cancel(ignored);  // read_head gives up; run() answers 408
    return;
  }
  timed_out_ = true;
  log::http().debug("{}: connection timed out", ends_.label());
  close_socket();
}

// The whole head must arrive within --request-timeout of its first byte,
// however it is trickled.
awaitable<void> HttpSession::answer_slow_head() {
  bus::LogLimiter::warn(log::http(), shard_.log_limiter(), client_key(408),
                   "{}: request head not complete within --request-timeout ({} s); answering 408", ends_.label(),
                   config_.request_timeout.count());
  if (bytes_in_ == 0) bytes_in_ = buffer_.size();  // the part of the head that came
  co_await write(format_error_response(408, config_.server_name));
  sent_status_ = 408;
  gateway_reason_ = GatewayReason::client_timeout;
  report_exchange();
}

// The exchange's metrics, and its access log line. With the log off this
// fills a record of views and counts: nothing is copied or allocated.
void HttpSession::report_exchange() {
  AccessRecord record;
  record.status = sent_status_;
  record.gateway_reason = sent_status_ != 0 ? gateway_reason_ : std::nullopt;
  record.bytes_received = bytes_in_;
  record.bytes_sent = bytes_out_;
  record.duration = Clock::now() - head_started_;
  shard_.metrics().count(record);
  if (!config_.access_log) return;
  const auto& client = client_ ? client_ : ends_.client;
  if (client) {
    record.client = client->host;
    record.client_port = client->port;
  }
  record.worker = worker_;
  if (parser_ && parser_->is_header_done()) {
    const auto& request = parser_->request();
    auto view = [](boost::beast::string_view v) { return std::string_view(v.data(), v.size()); };
    record.method = view(request.method_string());
    record.target = view(request.target());
    record.http_version = request.version() == 10 ? 10 : 11;
    record.referer = view(request[http::field::referer]);
    record.user_agent = view(request[http::field::user_agent]);
  } else {
    record.raw_request_line = request_line_received();
  }
  write_access_log(record, config_.access_log_format, config_.log_format == "json");
  client_.reset();
  worker_.clear();
}

// The first line of a head refused before it was parsed, as far as it came
// (at most 256 bytes of it).
std::string_view HttpSession::request_line_received() const {
  auto line = buffered().substr(0, 256);
  return line.substr(0, line.find_first_of("\r\n"));
}

// Per client address (not port: a client opens many connections) and status.
std::string HttpSession::client_key(int status) const {
  return fmt::format("{} {}", ends_.peer_address ? ends_.peer_address->to_string() : ends_.label(), status);
}

}  // namespace asgi_bridge::gateway
