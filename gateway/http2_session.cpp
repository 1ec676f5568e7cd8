#include "http2_session.hpp"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "access_log.hpp"
#include "body_rate.hpp"
#include "log.hpp"
#include "asgi_bridge/bus/log_limiter.hpp"
#include "response_check.hpp"
#include "session_spawn.hpp"

namespace asgi_bridge::gateway {
namespace asio = boost::asio;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

constexpr std::size_t k_read_size = 16 * 1024;
constexpr std::size_t k_write_batch = 64 * 1024;  // nghttp2's output gathered into one write
constexpr std::size_t k_body_event = 64 * 1024;   // request body bytes per http.request event
constexpr auto k_tick = std::chrono::seconds(1);
constexpr auto k_linger = std::chrono::seconds(1);
constexpr std::size_t k_linger_read_limit = 256 * 1024;
// The byte window each stream grants its worker (the bus's default is 1 MiB):
// the most a stream's response waits here for the client's windows, so that a
// connection's streams together hold at most --http2-max-concurrent-streams × it.
constexpr std::uint64_t k_stream_byte_window = 256 * 1024;
constexpr std::size_t k_header_overhead = 32;     // per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts (RFC 9113 §6.5.2)

// Headers RFC 9113 §8.2.2 forbids in HTTP/2: an app's are dropped.
bool is_connection_specific(std::string_view lower_name) {
  return is_hop_by_hop_for_app(lower_name) || lower_name == "upgrade" || lower_name == "proxy-connection" ||
         lower_name == "te";
}

std::string_view view(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

nghttp2_nv make_nv(const std::string& name, const std::string& value) {
  return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// nghttp2 copies name/value pairs on submit: these only live through the call.
std::vector<nghttp2_nv> to_nv(const protocol::Headers& headers) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(headers.size());
  for (const auto& header : headers) nv.push_back(make_nv(header.name, header.value));
  return nv;
}

}  // namespace

struct Http2Session::Stream {
  Stream(std::int32_t stream_id, const asio::any_io_executor& executor, Shard& shard, Dispatcher& dispatcher,
         const Config& config)
      : id(stream_id),
        body_rate(config.min_body_rate, std::chrono::duration_cast<Clock::duration>(config.min_body_rate_grace)),
        link(executor, shard, dispatcher) {}

  std::int32_t id;
  Clock::time_point began = Clock::now();

  // The request head, as nghttp2 decodes it.
  std::string method;
  std::string path;
  std::string authority;
  protocol::Headers headers;      // lower-case names, arrival order, cookies joined (RFC 9113 §8.2.3)
  std::size_t header_bytes = 0;   // counted as SETTINGS_MAX_HEADER_LIST_SIZE counts
  std::size_t header_count = 0;
  bool head_done = false;
  int refused = 0;                // the gateway answers this itself (400, 413, 431)
  const char* refused_why = "";
  bool expect_continue = false;
  std::optional<std::uint64_t> declared_length;
  std::string referer;            // --access-log only
  std::string user_agent;

  // The request body: received, not yet sent to the worker (at most the stream's window).
  std::string body;
  std::uint64_t body_received = 0;
  bool body_complete = false;     // the client's END_STREAM
  bool body_end_sent = false;     // the worker has the last http.request, or the body was given up (408, 413)
  // Both run only while the gateway waits for the client (watch_body).
  Clock::time_point body_progress = Clock::now();  // the last byte, for --request-timeout
  BodyRate body_rate;                              // --min-body-rate
  Clock::time_point body_deadline = Clock::time_point::max();

  // The exchange on the bus.
  BusLink link;
  bool disconnect_sent = false;
  ResponsePhase phase = ResponsePhase::awaiting_start;
  std::optional<protocol::HttpResponseStart> start;
  bool head_request = false;
  bool body_allowed = true;
  bool submitted = false;         // a response head went to nghttp2
  std::optional<std::uint64_t> content_length;
  std::uint64_t body_bytes_taken = 0;
  std::string out;                // response body bytes waiting for the client's windows
  std::size_t out_offset = 0;
  bool out_eof = false;
  bool trailers_pending = false;
  protocol::Headers trailers;
  bool aborting = false;          // reset (INTERNAL_ERROR) once `out` has gone: abort_after_head
  Clock::time_point out_progress = Clock::now();
  bool closed = false;            // nghttp2 closed the stream (sent, reset or connection gone)
  std::uint32_t close_code = NGHTTP2_NO_ERROR;

  // What the access log and the metrics say of it.
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  int sent_status = 0;
  std::optional<GatewayReason> gateway_reason;
  std::optional<protocol::Endpoint> client;
  std::string worker;

  std::size_t out_pending() const { return out.size() - out_offset; }
};

// --- nghttp2's callbacks --------------------------------------------------------

struct Http2Session::Callbacks {
  static Http2Session& self(void* user_data) { return *static_cast<Http2Session*>(user_data); }

  // The response body source: what the worker sent, as far as the client's
  // windows take it. Each byte handed over is credited to the worker.
  static long read_body(nghttp2_session* session, std::int32_t stream_id, std::uint8_t* buffer, std::size_t length,
                        std::uint32_t* flags, nghttp2_data_source* source, void*) {
    auto& stream = *static_cast<Stream*>(source->ptr);
    auto n = std::min(length, stream.out_pending());
    if (n > 0) {
      std::memcpy(buffer, stream.out.data() + stream.out_offset, n);
      stream.out_offset += n;
      stream.bytes_out += n;
      stream.out_progress = Clock::now();
      if (stream.out_offset == stream.out.size()) {
        stream.out.clear();
        stream.out_offset = 0;
        if (stream.out.capacity() > k_body_event) stream.out.shrink_to_fit();
      }
      if (stream.link.is_open() && stream.phase != ResponsePhase::done) stream.link.on_written(n);
    }
    // nghttp2 answers this with RST_STREAM INTERNAL_ERROR, after what went before.
    if (stream.aborting && stream.out_pending() == 0) {
      return n > 0 ? static_cast<long>(n) : static_cast<long>(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
    }
    if (stream.out_pending() > 0 || !stream.out_eof) return n > 0 ? static_cast<long>(n) : static_cast<long>(NGHTTP2_ERR_DEFERRED);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (stream.trailers_pending) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      auto nv = to_nv(stream.trailers);
      nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size());
    }
    return static_cast<long>(n);
  }

  static int begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      self(user_data).on_begin_request(frame->hd.stream_id);
    }
    return 0;
  }

  static int header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t name_length,
                    const std::uint8_t* value, std::size_t value_length, std::uint8_t, void* user_data) {
    auto stream = self(user_data).find(frame->hd.stream_id);
    // Trailers: ASGI has no request trailers, and keeping them would grow without bound.
    if (stream && !stream->head_done) {
      self(user_data).on_header(*stream, view(name, name_length), view(value, value_length));
    }
    return 0;
  }

  static int frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& session = self(user_data);
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
        if (auto stream = session.find(frame->hd.stream_id)) {
          if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            session.on_request_head(stream, end_stream);
          } else if (end_stream) {
            session.on_body_end(*stream);
          }
        }
        break;
      case NGHTTP2_DATA:
        if (auto stream = session.find(frame->hd.stream_id); stream && end_stream) session.on_body_end(*stream);
        break;
      case NGHTTP2_RST_STREAM:
        session.count_reset();
        break;
      default:
        break;
    }
    return 0;
  }

  static int data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id, const std::uint8_t* data,
                        std::size_t length, void* user_data) {
    self(user_data).on_data(stream_id, reinterpret_cast<const char*>(data), length);
    return 0;
  }

  static int stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code, void* user_data) {
    self(user_data).on_stream_close(stream_id, error_code);
    return 0;
  }

  static int frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end_stream && (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
      self(user_data).on_end_stream_sent(frame->hd.stream_id);
    }
    return 0;
  }

  static int error(nghttp2_session*, int, const char* message, std::size_t length, void* user_data) {
    log::http().debug("{}: HTTP/2: {}", self(user_data).ends_.label(), std::string_view(message, length));
    return 0;
  }
};

// --- hand-over from HttpSession -------------------------------------------------

bool negotiated_http2(ClientStream& stream) {
  auto* tls = stream.tls();
  if (!tls) return false;
  const unsigned char* protocol = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(tls->native_handle(), &protocol, &length);
  return length == 2 && std::memcmp(protocol, "h2", 2) == 0;
}

void start_http2_session(ClientStream stream, SocketEnds ends, std::string received, Shard& shard,
                         Dispatcher& dispatcher, const Config& config) {
  std::make_shared<Http2Session>(std::move(stream), std::move(ends), std::move(received), shard, dispatcher, config)
      ->start();
}

// --- the connection ---------------------------------------------------------------

Http2Session::Http2Session(ClientStream stream, SocketEnds ends, std::string received, Shard& shard,
                           Dispatcher& dispatcher, const Config& config)
    : stream_(std::move(stream)),
      ends_(std::move(ends)),
      received_(std::move(received)),
      shard_(shard),
      dispatcher_(dispatcher),
      config_(config),
      writer_wake_(stream_.get_executor()),
      write_deadline_(stream_.get_executor()),
      ticker_(stream_.get_executor()),
      idle_since_(Clock::now()),
      reset_refilled_(Clock::now()) {}

Http2Session::~Http2Session() {
  shard_.untrack(drain_token_);
  if (session_) nghttp2_session_del(session_);
}

void Http2Session::start() {
  drain_token_ = shard_.track(weak_from_this());
  spawn_session(stream_.get_executor(), [self = shared_from_this()]() { return self->run(); }, log::http());
}

// GOAWAY with the last stream taken: the streams in flight finish, then the
// connection closes (finished()).
void Http2Session::drain() {
  draining_ = true;
  if (!session_ || ending_) return;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  wake_writer();
}

bool Http2Session::open_session() {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0) return false;
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, Callbacks::begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, Callbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, Callbacks::frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, Callbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, Callbacks::stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, Callbacks::frame_send);
  nghttp2_session_callbacks_set_error_callback2(callbacks, Callbacks::error);
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  // The stream windows reopen only once the worker has the bytes (forward_body).
  nghttp2_option_set_no_auto_window_update(option, 1);
  // SETTINGS and PING floods: ACKs the client does not read end the connection.
  nghttp2_option_set_max_outbound_ack(option, 1000);
  nghttp2_option_set_max_settings(option, 32);
  // A header block in more than 8 CONTINUATION frames ends the connection.
  nghttp2_option_set_max_continuations(option, 8);
  int rv = nghttp2_session_server_new2(&session_, callbacks, this, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) return false;
  std::array<nghttp2_settings_entry, 2> settings{{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, static_cast<std::uint32_t>(config_.http2_max_concurrent_streams)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<std::uint32_t>(config_.max_header_size)},
  }};
  return nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size()) == 0;
}

awaitable<void> Http2Session::run() {
  if (!open_session()) {
    log::http().error("{}: cannot start an HTTP/2 session", ends_.label());
    close_socket();
    co_return;
  }
  reset_tokens_ = static_cast<double>(2 * config_.http2_max_concurrent_streams);
  asio::co_spawn(stream_.get_executor(), [self = shared_from_this()]() { return self->write_loop(); },
                 asio::detached);
  arm_tick();
  std::string received = std::move(received_);
  receive(received.data(), received.size());
  std::array<char, k_read_size> buffer{};
  std::size_t discarded = 0;
  while (!closed_) {
    boost::system::error_code ec;
    auto n = co_await stream_.async_read_some(asio::buffer(buffer), redirect_error(use_awaitable, ec));
    if (ec) {
      log::http().debug("{}: HTTP/2 connection read ended: {}", ends_.label(), ec.message());
      close_socket();  // the client left: nothing more to tell it
      break;
    }
    if (!ending_) {
      receive(buffer.data(), n);
    } else if ((discarded += n) > k_linger_read_limit) {
      close_socket();
    }
  }
}

// The connection is over at our end: the client gets what was queued (a
// GOAWAY), then our FIN; what it still sends meanwhile is read and dropped
// for a moment (closing with unread bytes would reset the connection, and
// the client could lose the GOAWAY: nginx's lingering close).
void Http2Session::linger() {
  if (closed_) return;
  boost::system::error_code ignored;
  stream_.socket().shutdown(StreamSocket::shutdown_send, ignored);
  write_deadline_.expires_after(k_linger);
  write_deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (!ec && self) self->close_socket();
  });
}

// Feeds nghttp2; past a fatal error the connection ends (ending_).
void Http2Session::receive(const char* data, std::size_t size) {
  if (size == 0) return;
  auto rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), size);
  if (rv < 0) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), peer() + " h2 " + nghttp2_strerror(static_cast<int>(rv)),
                     "{}: HTTP/2 connection ended: {}", ends_.label(), nghttp2_strerror(static_cast<int>(rv)));
    // Fatal to the session: nghttp2 queued nothing; the client still hears why.
    bool flood = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
    nghttp2_session_terminate_session(session_, flood ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    ending_ = true;
  }
  // Bodies that arrived go on to their workers as far as the credits allow.
  for (auto& [id, stream] : streams_) forward_body(*stream);
  wake_writer();
}

void Http2Session::wake_writer() {
  write_wanted_ = true;
  writer_wake_.cancel();
}

// Sends what nghttp2 has to send, in batches, until the connection is over.
awaitable<void> Http2Session::write_loop() {
  std::string batch;
  while (!closed_) {
    batch.clear();
    write_wanted_ = false;
    while (batch.size() < k_write_batch) {
      const std::uint8_t* data = nullptr;
      auto n = nghttp2_session_mem_send(session_, &data);
      if (n <= 0) break;
      batch.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
    if (!batch.empty()) {
      if (!co_await write(batch)) {
        close_socket();
        co_return;
      }
      continue;
    }
    if (finished()) break;
    if (!write_wanted_) {
      writer_wake_.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ignored;
      co_await writer_wake_.async_wait(redirect_error(use_awaitable, ignored));
    }
  }
  ending_ = true;
  linger();
}

awaitable<bool> Http2Session::write(const std::string& bytes) {
  boost::system::error_code ec;
  if (config_.request_timeout.count() > 0) {
    // A client that reads nothing of ours for --request-timeout is gone.
    write_deadline_.expires_after(std::chrono::duration_cast<Clock::duration>(config_.request_timeout));
    write_deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& error) {
      auto self = weak.lock();
      if (error || !self) return;
      bus::LogLimiter::warn(log::http(), self->shard_.log_limiter(), self->peer() + " h2 write stalled",
                       "{}: HTTP/2 client read nothing for --request-timeout; closing", self->ends_.label());
      self->close_socket();
    });
  }
  co_await asio::async_write(stream_, asio::buffer(bytes), redirect_error(use_awaitable, ec));
  write_deadline_.cancel();
  co_return !ec && !closed_;
}

// Nothing left to read or write: the client or we said GOAWAY (or drain) and
// every stream has ended.
bool Http2Session::finished() const {
  if (closed_) return true;
  if (nghttp2_session_want_write(session_)) return false;
  if (ending_ || !nghttp2_session_want_read(session_)) return true;
  return draining_ && streams_.empty() && exchanges_ == 0;
}

void Http2Session::end_connection(std::uint32_t error_code, std::string_view why) {
  if (ending_) return;
  log::http().debug("{}: ending the HTTP/2 connection: {}", ends_.label(), why);
  nghttp2_session_terminate_session(session_, error_code);
  ending_ = true;
  wake_writer();
}

// Every exchange still open hears that its client is gone.
void Http2Session::close_socket() {
  if (closed_) return;
  closed_ = true;
  ticker_.cancel();
  writer_wake_.cancel();
  stream_.close();
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) {
    stream->closed = true;
    stream->close_code = NGHTTP2_CANCEL;
    if (stream->link.is_open()) {
      stream->link.inbox()->push(ClientGone{});
    } else if (stream->head_done) {
      report(*stream);
    }
  }
}

void Http2Session::arm_tick() {
  ticker_.expires_after(k_tick);
  ticker_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->closed_) return;
    self->tick();
    self->arm_tick();
  });
}

// Once a second: the idle connection, the stalled header block, and each
// stream's body and output deadlines.
void Http2Session::tick() {
  auto now = Clock::now();
  auto keepalive = std::chrono::duration_cast<Clock::duration>(config_.keepalive_timeout);
  if (streams_.empty() && exchanges_ == 0) {
    if (keepalive.count() > 0 && now - idle_since_ >= keepalive) end_connection(NGHTTP2_NO_ERROR, "idle");
    return;
  }
  idle_since_ = now;
  std::vector<StreamPtr> streams;
  streams.reserve(streams_.size());
  for (auto& [id, stream] : streams_) streams.push_back(stream);
  for (auto& stream : streams) check_stream_deadlines(*stream, now);
  wake_writer();
}

void Http2Session::check_stream_deadlines(Stream& stream, Clock::time_point now) {
  if (stream.closed) return;
  check_body_deadlines(stream, now);
  auto timeout = std::chrono::duration_cast<Clock::duration>(config_.request_timeout);
  if (timeout.count() <= 0) return;
  if (!stream.head_done) {
    // A header block the client never ends blocks the whole connection.
    if (now - stream.began >= timeout) end_connection(NGHTTP2_PROTOCOL_ERROR, "request head not complete");
    return;
  }
  if ((stream.out_pending() > 0 || stream.aborting) && now - stream.out_progress >= timeout) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), peer() + " h2 stalled stream",
                     "{}: HTTP/2 stream {} took no response bytes for --request-timeout ({} s): resetting it",
                     ends_.label(), stream.id, config_.request_timeout.count());
    reset(stream, NGHTTP2_CANCEL);
  }
}

// A body that sends nothing for --request-timeout, or keeps below
// --min-body-rate (as HTTP/1.1's, docs/operations.md), counted only while the
// gateway waits for the client: 408, or a reset once the response started;
// the app hears http.disconnect. The connection's other streams go on.
void Http2Session::check_body_deadlines(Stream& stream, Clock::time_point now) {
  if (!stream.body_rate.reading() || stream.body_end_sent || !stream.link.is_open() ||
      stream.phase == ResponsePhase::done) {
    return;
  }
  auto timeout = std::chrono::duration_cast<Clock::duration>(config_.request_timeout);
  bool idle = timeout.count() > 0 && now - stream.body_progress >= timeout;
  if (!idle && now < stream.body_deadline) return;
  auto waited = std::chrono::duration<double>(stream.body_rate.waited() + (now - stream.body_progress)).count();
  std::string why = idle ? std::string("request body sent nothing for --request-timeout")
                         : fmt::format("request body too slow: {} bytes in {:.1f} s of waiting (--min-body-rate {}, "
                                       "--min-body-rate-grace {})",
                                       stream.body_rate.bytes(), waited, config_.min_body_rate,
                                       config_.min_body_rate_grace.count());
  bus::LogLimiter::warn(log::http(), shard_.log_limiter(), peer() + " h2 408", "{}: HTTP/2 stream {}: {}; {}", ends_.label(),
                   stream.id, why, stream.submitted ? "resetting it" : "answering 408");
  give_up_body(stream);
  stream.link.inbox()->push(RequestInvalid{408});
}

// The body's clocks run only while the gateway waits for the client, that is
// while every byte received went on to the worker: not while it holds bytes
// back for the worker's credits (the client's window is shut then), so a
// client is not blamed for the app's pace.
void Http2Session::watch_body(Stream& stream) {
  bool waiting = !stream.body_complete && !stream.body_end_sent && stream.body.empty();
  if (waiting == stream.body_rate.reading()) return;
  auto now = Clock::now();
  if (waiting) {
    stream.body_deadline = stream.body_rate.read_starts(now);
    stream.body_progress = now;
  } else {
    stream.body_rate.read_ends(now, 0);
  }
}

// Rapid reset (CVE-2023-44487): every stream the client opens costs a
// dispatch to a worker even when reset at once. A token bucket of twice
// --http2-max-concurrent-streams, refilled at that many per second; past it
// GOAWAY ENHANCE_YOUR_CALM. False when the connection ends.
bool Http2Session::count_reset() {
  auto now = Clock::now();
  auto limit = static_cast<double>(2 * config_.http2_max_concurrent_streams);
  auto refill = std::chrono::duration<double>(now - reset_refilled_).count() *
                static_cast<double>(config_.http2_max_concurrent_streams);
  reset_tokens_ = std::min(limit, reset_tokens_ + refill);
  reset_refilled_ = now;
  if (reset_tokens_ >= 1) {
    reset_tokens_ -= 1;
    return true;
  }
  bus::LogLimiter::warn(log::http(), shard_.log_limiter(), peer() + " h2 rapid reset",
                   "{}: HTTP/2 client reset streams faster than {} per second (rapid reset): GOAWAY ENHANCE_YOUR_CALM",
                   ends_.label(), config_.http2_max_concurrent_streams);
  end_connection(NGHTTP2_ENHANCE_YOUR_CALM, "rapid reset");
  return false;
}

Http2Session::StreamPtr Http2Session::find(std::int32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second;
}

// Log lines are limited per client address (not port: a client opens many connections).
std::string Http2Session::peer() const {
  return ends_.peer_address ? ends_.peer_address->to_string() : ends_.label();
}

// --- nghttp2's events -------------------------------------------------------------

void Http2Session::on_begin_request(std::int32_t stream_id) {
  streams_[stream_id] = std::make_shared<Stream>(stream_id, stream_.get_executor(), shard_, dispatcher_, config_);
}

// Past --max-header-size (counted as SETTINGS_MAX_HEADER_LIST_SIZE counts) or
// --max-header-count the rest is dropped unstored and the stream answered 431:
// an HPACK bomb (a large table entry referenced again and again) costs
// decoding, never memory.
void Http2Session::on_header(Stream& stream, std::string_view name, std::string_view value) {
  if (stream.refused == 431) return;
  stream.header_bytes += name.size() + value.size() + k_header_overhead;
  bool pseudo = !name.empty() && name.front() == ':';
  if (!pseudo) ++stream.header_count;
  if (stream.header_bytes > config_.max_header_size || stream.header_count > config_.max_header_count) {
    stream.refused = 431;
    stream.refused_why = stream.header_count > config_.max_header_count ? "too many header fields"
                                                                        : "header list over --max-header-size";
    protocol::Headers().swap(stream.headers);
    return;
  }
  if (pseudo) {
    if (name == ":method") stream.method = value;
    if (name == ":path") stream.path = value;
    if (name == ":authority") stream.authority = value;
    return;  // :scheme is the listener's (make_scope)
  }
  if (name == "content-length") {
    std::uint64_t length = 0;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), length);
    if (error == std::errc() && end == value.data() + value.size()) stream.declared_length = length;
  }
  if (name == "expect" && lower(value) == "100-continue") stream.expect_continue = true;
  if (config_.access_log && name == "referer") stream.referer = value;
  if (config_.access_log && name == "user-agent") stream.user_agent = value;
  if (name == "cookie") {
    auto joined = std::find_if(stream.headers.begin(), stream.headers.end(),
                               [](const protocol::Header& header) { return header.name == "cookie"; });
    if (joined != stream.headers.end()) {
      joined->value.append("; ").append(value);
      return;
    }
  }
  stream.headers.push_back({std::string(name), std::string(value)});
}

void Http2Session::on_request_head(const StreamPtr& stream, bool end_stream) {
  stream->head_done = true;
  stream->head_request = stream->method == "HEAD";
  stream->body_complete = end_stream;
  stream->body_progress = Clock::now();
  if (stream->refused == 0 && stream->declared_length && *stream->declared_length > config_.max_body_size) {
    stream->refused = 413;
    stream->refused_why = "request body over --max-body-size";
  }
  if (stream->refused != 0) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), fmt::format("{} {}", peer(), stream->refused),
                     "{}: HTTP/2 stream {}: bad request ({}): {}", ends_.label(), stream->id, stream->refused,
                     stream->refused_why);
    answer_error(*stream, stream->refused, stream->refused == 400 ? GatewayReason::bad_request : GatewayReason::limit);
    return;
  }
  if (stream->expect_continue && !end_stream) {
    static const std::string k_status = ":status";
    static const std::string k_continue = "100";
    auto nv = make_nv(k_status, k_continue);
    nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream->id, nullptr, &nv, 1, nullptr);
  }
  if (!begin_exchange(*stream)) return;
  ++exchanges_;
  asio::co_spawn(stream_.get_executor(), [self = shared_from_this(), stream]() { return self->serve(stream); },
                 asio::detached);
}

void Http2Session::on_data(std::int32_t stream_id, const char* data, std::size_t size) {
  // The connection's window reopens at once; each stream's only once its
  // worker has the bytes: streams × the stream window bound what waits here.
  nghttp2_session_consume_connection(session_, size);
  auto stream = find(stream_id);
  bool wanted = stream && stream->link.is_open() && !stream->body_end_sent && stream->phase != ResponsePhase::done;
  if (wanted && stream->body_received + size > config_.max_body_size) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), peer() + " 413", "{}: HTTP/2 stream {}: {}", ends_.label(),
                     stream_id, "request body over --max-body-size");
    give_up_body(*stream);
    stream->link.inbox()->push(RequestInvalid{413});
    wanted = false;
  }
  if (!wanted) {
    nghttp2_session_consume_stream(session_, stream_id, size);
    return;
  }
  stream->body_received += size;
  stream->body.append(data, size);
  stream->body_progress = Clock::now();
  stream->body_rate.read_ends(stream->body_progress, size);
}

void Http2Session::on_body_end(Stream& stream) { stream.body_complete = true; }

// A body refused on its way (408, 413): nothing more goes to the worker, whose
// app hears http.disconnect (a last http.request would tell it a cut body was
// whole), and what the client still sends is dropped; once the answer is out,
// on_end_stream_sent stops the rest.
void Http2Session::give_up_body(Stream& stream) {
  stream.body_end_sent = true;
  std::string().swap(stream.body);
}

void Http2Session::on_stream_close(std::int32_t stream_id, std::uint32_t error_code) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  auto stream = std::move(it->second);
  streams_.erase(it);
  stream->closed = true;
  stream->close_code = error_code;
  if (stream->link.is_open()) {
    stream->link.inbox()->push(ClientGone{});  // wakes serve(), whatever it waits for
  } else if (stream->head_done && stream->sent_status != 0) {
    report(*stream);  // answered by the gateway without a worker
  }
  if (streams_.empty()) idle_since_ = Clock::now();
  wake_writer();
}

// Our response ended while the client still sends its request: RFC 9113
// §8.1 lets a server stop the rest with RST_STREAM NO_ERROR.
void Http2Session::on_end_stream_sent(std::int32_t stream_id) {
  auto stream = find(stream_id);
  if (stream && !stream->body_complete) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR);
  }
}

// --- one exchange -----------------------------------------------------------------

// The stream's scope goes to a worker at once, with an empty first body
// event when a body follows (forward_body sends the rest in order).
bool Http2Session::begin_exchange(Stream& s) {
  RequestHeader request;
  request.method_string(s.method);
  request.target(s.path);
  request.version(20);
  protocol::Headers headers;
  bool has_host = std::any_of(s.headers.begin(), s.headers.end(),
                              [](const protocol::Header& header) { return header.name == "host"; });
  if (!has_host && !s.authority.empty()) headers.push_back({"host", s.authority});
  for (auto& header : s.headers) headers.push_back(std::move(header));
  protocol::Headers().swap(s.headers);
  auto scope = make_scope(request, std::move(headers), protocol::ScopeType::http, ends_, config_);
  if (!scope) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), peer() + " h2 400", "{}: HTTP/2 stream {}: bad :path",
                     ends_.label(), s.id);
    answer_error(s, 400, GatewayReason::bad_request);
    return false;
  }
  scope->http_version = "2";
  if (config_.access_log) s.client = scope->client;
  s.link.open();
  s.body_end_sent = s.body_complete;
  s.link.send_first(protocol::HttpRequest{std::string(), !s.body_complete}, std::move(*scope),
                    s.method == "GET" || s.head_request, k_stream_byte_window);
  return true;
}

awaitable<void> Http2Session::serve(StreamPtr stream) {
  auto& s = *stream;
  co_await respond(s);
  // The response is with nghttp2: wait until it has left (or the stream was reset).
  while (!s.closed) co_await s.link.inbox()->pop();
  s.link.end();
  report(s);
  --exchanges_;
  if (streams_.empty() && exchanges_ == 0) idle_since_ = Clock::now();
  wake_writer();  // a draining connection may be done
}

awaitable<void> Http2Session::respond(Stream& s) {
  auto http_timeout = std::chrono::duration_cast<Clock::duration>(config_.http_timeout);
  while (s.phase != ResponsePhase::done) {
    auto deadline = s.phase == ResponsePhase::awaiting_start && http_timeout.count() > 0 ? s.began + http_timeout
                                                                                          : Clock::time_point::max();
    auto event = co_await s.link.inbox()->pop(deadline);
    if (!event) {
      send_disconnect(s);
      fail(s, 504, GatewayReason::app_timeout, "the response did not start within --http-timeout");
    } else if (auto* reply = std::get_if<WorkerMessage>(&*event)) {
      handle(s, *reply);
    } else if (auto* failure = std::get_if<BusFailure>(&*event)) {
      bool no_capacity = *failure == BusFailure::no_capacity;
      fail(s, no_capacity ? 503 : 502, no_capacity ? GatewayReason::no_worker : GatewayReason::worker_lost,
           no_capacity ? "no worker available" : "worker lost");
    } else if (std::holds_alternative<ClientGone>(*event)) {
      log::http().debug("conn {}: HTTP/2 stream {} ended before its response completed", s.link.conn_id(), s.id);
      send_disconnect(s);
      s.phase = ResponsePhase::done;
    } else if (auto* invalid = std::get_if<RequestInvalid>(&*event)) {
      send_disconnect(s);
      answer_error(s, invalid->status, invalid->status == 408 ? GatewayReason::client_timeout : GatewayReason::limit);
    }
    wake_writer();
  }
}

void Http2Session::handle(Stream& s, WorkerMessage& reply) {
  if (config_.access_log && s.worker.empty()) s.worker = reply.worker_id;
  auto step = classify_response_message(reply, s.link, s.phase);
  using Kind = ResponseStep::Kind;
  switch (step.kind) {
    case Kind::none:
      return;
    case Kind::credit:
      forward_body(s);
      return;
    case Kind::app_error:
      bus::LogLimiter::warn(log::http(), shard_.log_limiter(), reply.worker_id + ": app error",
                       "conn {}: application error on worker {}: {}", s.link.conn_id(), reply.worker_id, reply.error);
      fail(s, 500, GatewayReason::app_error, "application error");
      return;
    case Kind::start:
      if (on_start(s, std::get<protocol::HttpResponseStart>(*reply.event), reply.worker_id) && s.start->body) {
        // A start with its first body (docs/protocol.md §4.2): the start, then that body.
        protocol::HttpResponseBody body{std::move(*s.start->body), s.start->more_body};
        s.start->body.reset();
        on_body(s, body);
      }
      return;
    case Kind::body:
      on_body(s, std::get<protocol::HttpResponseBody>(*reply.event));
      return;
    case Kind::trailers:
      on_trailers(s, std::get<protocol::HttpResponseTrailers>(*reply.event));
      return;
    case Kind::violation:
      bus::LogLimiter::warn(log::http(), shard_.log_limiter(), reply.worker_id + ": invalid event",
                       "conn {}: invalid event from worker {}: {}", s.link.conn_id(), reply.worker_id, step.violation);
      send_disconnect(s);
      fail(s, 502, GatewayReason::invalid_response, step.violation);
      return;
  }
}

bool Http2Session::on_start(Stream& s, protocol::HttpResponseStart& start, const std::string& worker_id) {
  auto check = check_response_head(start.status, start.headers);
  if (!check.ok()) {
    bus::LogLimiter::warn(log::http(), shard_.log_limiter(), worker_id + " invalid head: " + check.rule,
                     "conn {}: invalid http.response.start from worker {}: {}; answering 500", s.link.conn_id(),
                     worker_id, check.problem);
    send_disconnect(s);
    answer_error(s, 500, GatewayReason::invalid_response);
    return false;
  }
  s.content_length = check.content_length;
  s.start = std::move(start);
  s.phase = ResponsePhase::started;
  return true;
}

// The head goes out with the first body event (as over HTTP/1.1); the
// payload waits in `out` for the client's windows (read_body_source).
void Http2Session::on_body(Stream& s, protocol::HttpResponseBody& body) {
  if (!s.submitted) {
    int status = s.start->status;
    s.body_allowed = !(s.head_request || status == 204 || status == 304);
    submit_head(s, status, s.start->headers);
  }
  std::string_view payload = s.body_allowed ? std::string_view(body.body) : std::string_view{};
  if (s.content_length && s.body_bytes_taken + payload.size() > *s.content_length) {
    payload = payload.substr(0, *s.content_length - s.body_bytes_taken);  // never send more than announced
  }
  s.body_bytes_taken += payload.size();
  if (s.out_pending() == 0) s.out_progress = Clock::now();
  s.out.append(payload);
  // Bytes dropped here never wait for the client: credited at once.
  if (body.more_body && payload.size() < body.body.size()) s.link.on_written(body.body.size() - payload.size());
  if (!body.more_body) {
    if (s.start->trailers) {
      s.phase = ResponsePhase::awaiting_trailers;
    } else {
      s.out_eof = true;
      s.phase = ResponsePhase::done;
    }
    if (s.content_length && s.body_bytes_taken != *s.content_length && s.body_allowed) {
      bus::LogLimiter::warn(log::http(), shard_.log_limiter(), "content-length mismatch",
                       "conn {}: the app sent {} body bytes for content-length {}; resetting the HTTP/2 stream",
                       s.link.conn_id(), s.body_bytes_taken, *s.content_length);
      abort_after_head(s);
    }
  }
  nghttp2_session_resume_data(session_, s.id);
}

void Http2Session::on_trailers(Stream& s, protocol::HttpResponseTrailers& trailers) {
  for (auto& header : trailers.headers) {
    auto name = lower(header.name);
    if (!is_connection_specific(name)) s.trailers.push_back({std::move(name), std::move(header.value)});
  }
  if (trailers.more_trailers) return;
  // A response without content (HEAD, 204, 304) has no trailer section either.
  s.trailers_pending = s.body_allowed && !s.trailers.empty();
  s.out_eof = true;
  s.phase = ResponsePhase::done;
  nghttp2_session_resume_data(session_, s.id);
}

// Body bytes received go to the worker while its event window has room; only
// then does the client's stream window reopen by as much.
void Http2Session::forward_body(Stream& s) {
  if (!s.link.is_open() || s.body_end_sent) return;
  while (!s.link.window_full() && (!s.body.empty() || s.body_complete) && !s.body_end_sent) {
    std::string chunk;
    if (s.body.size() <= k_body_event) {
      chunk = std::move(s.body);
      s.body.clear();
    } else {
      chunk = s.body.substr(0, k_body_event);
      s.body.erase(0, k_body_event);
    }
    bool last = s.body_complete && s.body.empty();
    auto size = chunk.size();
    s.bytes_in += size;
    s.link.send_event(protocol::HttpRequest{std::move(chunk), !last});
    s.body_end_sent = last;
    if (size > 0 && !s.closed) nghttp2_session_consume_stream(session_, s.id, size);
  }
  watch_body(s);
}

void Http2Session::send_disconnect(Stream& s) {
  if (s.disconnect_sent || !s.link.is_open()) return;
  s.disconnect_sent = true;
  s.link.send_event(protocol::HttpDisconnect{});
}

void Http2Session::fail(Stream& s, int status, GatewayReason reason, const char* why) {
  bus::LogLimiter::warn(log::http(), shard_.log_limiter(), why, "conn {}: HTTP/2 stream {}: {}: {}", s.link.conn_id(),
                   s.id, s.submitted ? std::string("resetting it") : fmt::format("answering {}", status), why);
  answer_error(s, status, reason);
}

// Before the head went out the client gets `status` from the gateway; after,
// the stream can only be reset.
void Http2Session::answer_error(Stream& s, int status, GatewayReason reason) {
  s.phase = ResponsePhase::done;
  if (s.closed) return;
  if (s.submitted) {
    abort_after_head(s);
    return;
  }
  s.gateway_reason = reason;
  s.body_allowed = !s.head_request;
  s.out = s.body_allowed ? error_body(status) : std::string();
  s.out_offset = 0;
  s.out_eof = true;
  protocol::Headers headers{{"content-type", "text/plain; charset=utf-8"},
                            {"content-length", std::to_string(error_body(status).size())}};
  if (status == 503) headers.push_back({"retry-after", "1"});
  submit_head(s, status, headers);
  wake_writer();
}

void Http2Session::submit_head(Stream& s, int status, const protocol::Headers& app_headers) {
  protocol::Headers headers{{":status", std::to_string(status)}};
  bool has_server = false;
  bool has_date = false;
  bool has_length = false;
  for (const auto& header : app_headers) {
    auto name = lower(header.name);
    if (is_connection_specific(name)) continue;
    // Repeats are identical (check_response_head): one field.
    if (name == "content-length" && (status == 204 || std::exchange(has_length, true))) continue;
    has_server = has_server || name == "server";
    has_date = has_date || name == "date";
    headers.push_back({std::move(name), header.value});
  }
  if (!has_server && !config_.server_name.empty()) headers.push_back({"server", config_.server_name});
  if (!has_date) headers.push_back({"date", http_date()});
  for (const auto& header : headers) s.bytes_out += header.name.size() + header.value.size();
  auto nv = to_nv(headers);
  nghttp2_data_provider provider{};
  provider.source.ptr = &s;
  provider.read_callback = Callbacks::read_body;
  s.submitted = true;
  s.sent_status = status;
  s.out_progress = Clock::now();
  nghttp2_submit_response(session_, s.id, nv.data(), nv.size(), &provider);
}

// After the head went to nghttp2 the stream can only be reset. Resetting at
// once would drop what nghttp2 still holds (a RST_STREAM goes before a queued
// head, which is then never sent): the head and the body bytes the app sent
// go out first, then read_body ends the stream with RST_STREAM INTERNAL_ERROR,
// as HTTP/1.1 cuts a connection after what it wrote. A client whose window
// stays shut meanwhile is reset by the stall deadline (check_stream_deadlines).
void Http2Session::abort_after_head(Stream& s) {
  if (s.closed || s.aborting) return;
  s.aborting = true;
  s.out_progress = Clock::now();
  nghttp2_session_resume_data(session_, s.id);
  wake_writer();
}

void Http2Session::reset(Stream& s, std::uint32_t error_code) {
  if (s.closed) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, error_code);
  wake_writer();
}

// The stream's metrics and access log line, as HttpSession::report_exchange.
void Http2Session::report(Stream& s) {
  AccessRecord record;
  record.status = s.sent_status;
  record.gateway_reason = s.sent_status != 0 ? s.gateway_reason : std::nullopt;
  record.bytes_received = s.bytes_in + s.header_bytes;
  record.bytes_sent = s.bytes_out;
  record.duration = Clock::now() - s.began;
  shard_.metrics().count(record);
  if (!config_.access_log) return;
  const auto& client = s.client ? s.client : ends_.client;
  if (client) {
    record.client = client->host;
    record.client_port = client->port;
  }
  record.worker = s.worker;
  record.method = s.method;
  record.target = s.path;
  record.http_version = 20;
  record.referer = s.referer;
  record.user_agent = s.user_agent;
  write_access_log(record, config_.access_log_format, config_.log_format == "json");
}

}  // namespace asgi_bridge::gateway
