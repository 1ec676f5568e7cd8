#pragma once
// One client connection in HTTP/2 (RFC 9113), framed by nghttp2: h2 agreed by
// ALPN on a TLS listener, or h2c with prior knowledge on a plain one (the
// HttpSession that read the connection's first bytes hands it over). Each
// stream is one ASGI `http` connection on the bus, under the scope and event
// rules of HTTP/1.1 with http_version "2". Request bodies reach the worker
// as its credits allow, and only then reopen the client's stream window;
// response bodies leave as the client's windows allow, and only then give the
// worker its byte credits. So a client that stops reading stops the worker,
// not the gateway's memory. Limits and attack defences: docs/http2.md.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "asgi_adapter.hpp"
#include "bus_link.hpp"
#include "client_stream.hpp"
#include "config.hpp"
#include "dispatcher.hpp"
#include "response_events.hpp"
#include "shard.hpp"

struct nghttp2_session;

namespace asgi_bridge::gateway {

// An h2c client's first bytes (RFC 9113 §3.4): HttpSession looks for them.
inline constexpr std::string_view k_http2_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// The TLS handshake agreed on h2 by ALPN.
bool negotiated_http2(ClientStream& stream);

class Http2Session : public Drainable, public std::enable_shared_from_this<Http2Session> {
 public:
  // `received`: what was already read from the connection (from the client preface on).
  Http2Session(ClientStream stream, SocketEnds ends, std::string received, Shard& shard, Dispatcher& dispatcher,
               const Config& config);
  ~Http2Session() override;
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  void start();
  void drain() override;

  struct Stream;  // one request and its response; defined in the .cpp
  struct Callbacks;  // nghttp2's callbacks, friends of the session

 private:
  using Clock = std::chrono::steady_clock;
  using StreamPtr = std::shared_ptr<Stream>;

  // --- the connection
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> write_loop();
  boost::asio::awaitable<bool> write(const std::string& bytes);
  bool open_session();
  void receive(const char* data, std::size_t size);
  void linger();
  void wake_writer();
  bool finished() const;
  void end_connection(std::uint32_t error_code, std::string_view why);
  void close_socket();
  void arm_tick();
  void tick();
  void check_stream_deadlines(Stream& stream, Clock::time_point now);
  void check_body_deadlines(Stream& stream, Clock::time_point now);
  void watch_body(Stream& stream);
  bool count_reset();
  StreamPtr find(std::int32_t stream_id) const;
  std::string peer() const;

  // --- nghttp2's events
  void on_begin_request(std::int32_t stream_id);
  void on_header(Stream& stream, std::string_view name, std::string_view value);
  void on_request_head(const StreamPtr& stream, bool end_stream);
  void on_data(std::int32_t stream_id, const char* data, std::size_t size);
  void on_body_end(Stream& stream);
  void give_up_body(Stream& stream);
  void on_stream_close(std::int32_t stream_id, std::uint32_t error_code);
  void on_end_stream_sent(std::int32_t stream_id);

  // --- one exchange (a stream on the bus)
  bool begin_exchange(Stream& stream);
  boost::asio::awaitable<void> serve(StreamPtr stream);
  boost::asio::awaitable<void> respond(Stream& stream);
  void handle(Stream& stream, WorkerMessage& reply);
  bool on_start(Stream& stream, protocol::HttpResponseStart& start, const std::string& worker_id);
  void on_body(Stream& stream, protocol::HttpResponseBody& body);
  void on_trailers(Stream& stream, protocol::HttpResponseTrailers& trailers);
  void forward_body(Stream& stream);
  void send_disconnect(Stream& stream);
  void fail(Stream& stream, int status, GatewayReason reason, const char* why);
  void answer_error(Stream& stream, int status, GatewayReason reason);
  void submit_head(Stream& stream, int status, const protocol::Headers& headers);
  void abort_after_head(Stream& stream);
  void reset(Stream& stream, std::uint32_t error_code);
  void report(Stream& stream);

  ClientStream stream_;
  SocketEnds ends_;
  std::string received_;  // handed over by HttpSession, fed to nghttp2 first
  Shard& shard_;
  Dispatcher& dispatcher_;
  const Config& config_;
  std::uint64_t drain_token_ = 0;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<std::int32_t, StreamPtr> streams_;  // open in nghttp2
  std::size_t exchanges_ = 0;  // serve() coroutines running
  boost::asio::steady_timer writer_wake_;
  boost::asio::steady_timer write_deadline_;
  boost::asio::steady_timer ticker_;
  bool write_wanted_ = false;
  bool ending_ = false;   // no more reading: flush what nghttp2 has queued (a GOAWAY), then close
  bool closed_ = false;   // the socket is closed
  bool draining_ = false;
  Clock::time_point idle_since_;
  // Rapid reset (CVE-2023-44487): a token bucket of the client's RST_STREAMs.
  double reset_tokens_ = 0;
  Clock::time_point reset_refilled_;
};

// HttpSession's hand-over of a connection that speaks HTTP/2.
void start_http2_session(ClientStream stream, SocketEnds ends, std::string received, Shard& shard,
                         Dispatcher& dispatcher, const Config& config);

}  // namespace asgi_bridge::gateway
