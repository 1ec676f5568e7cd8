#pragma once
// One client connection (TCP or Unix socket, plain or TLS) in HTTP/1.x mode. For each request it builds the
// ASGI scope, hands the request to a worker through the dispatcher, streams
// the body in (gated by the worker's credits) and the response out, then
// keeps the connection alive or closes it. A WebSocket upgrade request is
// handed to a WebSocketSession together with the stream.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include "body_rate.hpp"
#include "bus_link.hpp"
#include "client_stream.hpp"
#include "config.hpp"
#include "disconnect_sweep.hpp"
#include "dispatcher.hpp"
#include "lazy_deadline.hpp"
#include "request_parser.hpp"
#include "response_events.hpp"
#include "shard.hpp"

namespace asgi_bridge::gateway {

class HttpSession : public Drainable, public SweepWatched, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(ClientStream stream, Shard& shard, Dispatcher& dispatcher, const Config& config);
  ~HttpSession() override;

  void start();
  void drain() override;
  void start_watch() override;

 private:
  using Parser = RequestParser;
  using Clock = std::chrono::steady_clock;
  using Response = ResponsePhase;  // the same phases as an HTTP/2 stream's

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> tls_handshake();
  enum class FirstBytes { http1, http2, none };  // none: the client left (or failed) before they could tell
  boost::asio::awaitable<FirstBytes> read_first_bytes();
  void hand_over_to_http2(std::string received);
  boost::asio::awaitable<void> tls_shutdown();
  boost::asio::awaitable<bool> read_head();
  boost::asio::awaitable<std::size_t> read_after_round(boost::asio::mutable_buffer buffer, boost::system::error_code& ec);
  boost::asio::awaitable<bool> reject_request(int status, std::string_view reason);
  static GatewayReason reason_of_status(int status);
  std::string_view buffered() const;  // the bytes read and not yet parsed
  std::size_t drop_empty_lines();
  bool awaiting_request_line() const;
  boost::asio::awaitable<bool> serve();
  enum class ReadResult { ok, client_gone, too_large, too_slow, malformed };
  boost::asio::awaitable<ReadResult> read_body_chunk(std::string& chunk);
  boost::asio::awaitable<void> read_body_in_place(std::string& chunk, boost::system::error_code& ec);
  ReadResult read_result(const boost::system::error_code& ec) const;
  static int status_of(ReadResult result);
  static GatewayReason reason_of(ReadResult result);
  void log_body_rejected(ReadResult result);
  void arm_body_deadline();
  void on_body_too_slow();
  boost::asio::awaitable<void> read_rest();
  void watch_for_disconnect();
  boost::asio::awaitable<void> respond();
  std::optional<boost::asio::awaitable<void>> handle(WorkerMessage& reply);
  boost::asio::awaitable<void> handle_other(WorkerMessage& reply, ResponseStep step);
  bool on_start(protocol::HttpResponseStart& start, const std::string& worker_id);
  // A body event's, or a start's first body (held in start_ meanwhile).
  boost::asio::awaitable<void> on_body(const std::string& body, bool more_body);
  void end_response();
  boost::asio::awaitable<void> write_last_chunk(const protocol::Headers* trailers);
  boost::asio::awaitable<void> fail_exchange(int status, GatewayReason reason, const char* why);
  boost::asio::awaitable<void> answer_error(int status, GatewayReason reason);
  void report_exchange();
  std::string_view request_line_received() const;
  boost::asio::awaitable<bool> write(std::string_view a, std::string_view b = {}, std::string_view c = {});
  boost::asio::awaitable<void> stop_reader();

  void send_disconnect();
  void end_exchange();
  void close_socket();
  void arm(LazyDeadline& deadline, Seconds timeout);
  void on_timeout(const LazyDeadline& deadline);
  boost::asio::awaitable<void> answer_slow_head();
  std::string client_key(int status) const;

  ClientStream stream_;
  Shard& shard_;
  Dispatcher& dispatcher_;
  const Config& config_;
  std::uint64_t drain_token_ = 0;
  boost::beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  LazyDeadline read_deadline_;   // keep-alive wait, request head, TLS handshake
  LazyDeadline write_deadline_;
  boost::asio::steady_timer body_deadline_;  // read_body_chunk's (arm_body_deadline)
  BodyRate body_rate_;
  SocketEnds ends_;
  bool idle_ = true;       // waiting for a request head: drain may close at once
  bool draining_ = false;
  bool timed_out_ = false;
  bool stop_reading_ = false;
  bool head_too_slow_ = false;  // the head deadline cancelled its read
  bool body_too_slow_ = false;  // the body deadline cancelled the read

  // The exchange in progress (one request and its response).
  BusLink link_;  // its connection id, sequence numbers and credits
  bool reader_running_ = false;
  bool body_complete_ = false;
  bool client_gone_ = false;
  bool disconnect_sent_ = false;
  bool redispatchable_ = false;
  bool head_request_ = false;
  bool keep_alive_ = false;
  bool trailers_allowed_ = false;
  Response response_ = Response::awaiting_start;
  std::optional<protocol::HttpResponseStart> start_;
  bool head_written_ = false;
  bool chunked_ = false;
  bool body_allowed_ = true;
  bool close_after_ = false;
  std::optional<std::uint64_t> content_length_;
  std::uint64_t body_bytes_written_ = 0;
  protocol::Headers trailers_;
  Clock::time_point started_at_;

  // What the access log and the metrics say of the exchange (report_exchange).
  Clock::time_point head_started_;  // its first byte read
  std::uint64_t bytes_in_ = 0;      // request head and body
  std::uint64_t bytes_out_ = 0;     // everything written
  int sent_status_ = 0;             // 0: no response went out
  std::optional<GatewayReason> gateway_reason_;  // the gateway made the response
  // --access-log only, so that a request with the log off copies nothing.
  std::optional<protocol::Endpoint> client_;  // as --proxy-headers resolved it
  std::string worker_;
};

}  // namespace asgi_bridge::gateway
