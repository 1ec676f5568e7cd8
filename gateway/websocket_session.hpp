#pragma once
// One WebSocket connection. The upgrade request is held — no 101 is sent —
// until the owning worker answers websocket.accept (101), websocket.close
// (403) or a denial response (the app's own status, headers and body). Once
// open, a reader coroutine turns frames into websocket.receive events (gated
// by the worker's credits) while the session's main coroutine is the single
// writer of frames the worker sends.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "bus_link.hpp"
#include "client_stream.hpp"
#include "config.hpp"
#include "dispatcher.hpp"
#include "response_check.hpp"
#include "shard.hpp"

namespace asgi_bridge::gateway {

// `early`: what the HTTP session read behind the upgrade request. RFC 6455
// §4.1 has a client wait for our 101 before it sends a frame; one that does
// not still loses nothing: those frames are handed to Beast's accept.
void start_websocket_session(ClientStream stream, SocketEnds ends,
                             boost::beast::http::request<boost::beast::http::empty_body> request,
                             protocol::Headers headers, std::string early, Shard& shard, Dispatcher& dispatcher,
                             const Config& config);

class WebSocketSession : public Drainable,
                         public BroadcastSubscriber,
                         public DirectTaker,
                         public std::enable_shared_from_this<WebSocketSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::empty_body>;

  WebSocketSession(ClientStream stream, SocketEnds ends, Request request, protocol::Headers headers, std::string early,
                   Shard& shard, Dispatcher& dispatcher, const Config& config);
  ~WebSocketSession() override;

  void start();
  void drain() override;
  void deliver(const PublicationPtr& publication, const FrameHead& head) override;
  bool take_now(WorkerMessage& reply) override;

 private:
  using Clock = std::chrono::steady_clock;
  enum class State { handshake, open, closing, done };
  struct Refusal {  // an upgrade request answered with an HTTP error
    int status;
    const char* why;
    std::string_view extra_headers;
  };
  // Who answered an upgrade request: the app (none) or the gateway, and why.
  using Origin = std::optional<GatewayReason>;

  boost::asio::awaitable<void> run();
  std::optional<Refusal> send_connect();
  boost::asio::awaitable<void> hold_handshake();
  void watch_handshake_client();
  static ResponseHeadCheck check_head(const protocol::Event& event);
  boost::asio::awaitable<void> reject_invalid_head(const ResponseHeadCheck& check, const std::string& worker_id);
  boost::asio::awaitable<void> accept(protocol::WebSocketAccept& accept);
  boost::asio::awaitable<void> deny(protocol::WebSocketHttpResponseStart& start);
  boost::asio::awaitable<void> serve_open();
  void read_next();
  void read_part(std::size_t limit);
  void on_read(const boost::system::error_code& ec);
  void forward_message();
  void end_reader(const boost::system::error_code& ec);
  boost::asio::awaitable<void> on_open_event(WorkerMessage& reply);
  boost::asio::awaitable<void> close(int code, std::string reason, Closer who);
  void note_close(int code, Closer who);
  void count_in(std::size_t bytes);
  void count_out(std::size_t bytes);
  void report_handshake(int status, Origin origin);
  void report_close();
  void set_keepalive(bool on);
  void wait_for_silence();
  void arm_keepalive(Clock::time_point at);
  void on_keepalive_timer();
  void on_control_frame(boost::beast::websocket::frame_type kind);
  void fail_bad_close_code();
  int client_close_code() const;
  boost::asio::awaitable<void> reject(int status, Origin origin, const char* why, std::string_view extra_headers = {});
  boost::asio::awaitable<bool> write_raw(std::string_view a, std::string_view b = {});

  // The asgi-bridge.broadcast extension (docs/broadcast.md).
  bool subscribe(const std::string& channel);
  void unsubscribe(const std::string& channel);
  void unsubscribe_all();
  bool write_now(const PublicationPtr& publication, const FrameHead& head);
  std::size_t try_write_frame(const FrameHead& head, std::string_view payload);
  void write_rest(const FrameHead& head, PublicationPtr payload, std::size_t written);
  void drop_slow_subscriber();
  boost::asio::awaitable<void> write_broadcast();

  bool check_sequence(const WorkerMessage& reply);
  void send_disconnect(int code, std::string reason = {});
  boost::asio::awaitable<void> tls_shutdown();
  void teardown();

  // What only the handshake needs, freed once it is over.
  struct Upgrade {
    Request request;
    protocol::Headers headers;  // in arrival order, for the scope
    SocketEnds ends;
    // Frames a client sent before our 101 (RFC 6455 says it must wait; some
    // do not) that came in the read of its head: handed to Beast with it.
    std::string early;
  };

  boost::beast::websocket::stream<ClientStream> ws_;
  std::unique_ptr<Upgrade> upgrade_;
  Shard& shard_;
  Dispatcher& dispatcher_;
  const Config& config_;
  std::uint64_t drain_token_ = 0;
  BusLink link_;  // its connection id, sequence numbers and credits
  State state_ = State::handshake;
  bool disconnect_sent_ = false;
  bool watching_client_ = false;  // the handshake watcher's wait is live
  bool reader_running_ = false;
  bool paused_for_credit_ = false;  // the reader waits for the worker's credit
  bool failing_ = false;            // closing 1007 for bad UTF-8: the reader forwards nothing more
  bool draining_ = false;
  boost::asio::steady_timer close_deadline_;   // the client closed: the teardown's limit
  boost::asio::steady_timer lifetime_;
  // Keep-alive: a ping after --ping-interval of silence, close 1011 when its
  // pong is later than --ping-timeout.
  boost::asio::steady_timer keepalive_;
  Clock::time_point last_heard_;  // the client's last frame
  bool awaiting_pong_ = false;
  bool pinging_ = false;          // our ping is being written
  boost::beast::flat_buffer read_buffer_;
  std::vector<std::string> channels_;  // subscribed to, at most k_max_subscriptions
  // Publishes not yet written, oldest at broadcast_head_: a pointer each,
  // the payloads are shared. A Broadcast in the inbox says it is not empty.
  std::vector<PublicationPtr> broadcasts_;
  std::size_t broadcast_head_ = 0;
  std::size_t broadcast_bytes_ = 0;    // their payloads
  bool slow_subscriber_ = false;       // the queue overflowed: closing 1013
  bool writing_message_ = false;       // a message of ours is going through Beast: write_now() waits
  bool compressing_ = false;           // permessage-deflate agreed: the app's messages go through Beast

  // What the access log and the metrics say of the connection.
  Clock::time_point started_ = Clock::now();  // the upgrade request's arrival
  Clock::time_point opened_;                  // our 101 sent
  std::uint64_t messages_in_ = 0;
  std::uint64_t messages_out_ = 0;
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
  int close_code_ = 1006;  // the first close: ours or the client's
  Closer closed_by_ = Closer::client;
  bool close_noted_ = false;
  // --access-log only: the request's client (as resolved), target and worker.
  std::optional<protocol::Endpoint> client_;
  std::string target_;
  std::string worker_;
};

}  // namespace asgi_bridge::gateway
