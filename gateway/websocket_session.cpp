#include "websocket_session.hpp"

#include <algorithm>
#include <array>
#include <iterator>
#include <limits>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket/error.hpp>
#include <fmt/format.h>

#include "access_log.hpp"
#include "asgi_adapter.hpp"
#include "asgi_bridge/protocol/codec.hpp"
#include "log.hpp"
#include "asgi_bridge/bus/log_limiter.hpp"
#include "session_spawn.hpp"

namespace asgi_bridge::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;

namespace {

// How long the closing handshake and TCP teardown may take (Beast's handshake timeout too).
constexpr auto k_close_timeout = std::chrono::seconds(5);

// The reader's buffer: the first read of a message asks for at most this much
// (larger messages take more reads), and a buffer grown past the second is
// freed once its message is forwarded.
constexpr std::size_t k_first_read = 128;
constexpr std::size_t k_kept_read_buffer = 16 * 1024;

// Channels one WebSocket may be subscribed to at once (docs/broadcast.md):
// each costs a string and a set entry on the shard.
constexpr std::size_t k_max_subscriptions = 64;
// Payload bytes queued to one WebSocket beyond which it is not keeping up,
// whatever --broadcast-queue says: what a stalled socket can pin.
constexpr std::size_t k_max_broadcast_bytes = 64 * 1024 * 1024;
// A queue's storage beyond this many entries is given back once it empties.
constexpr std::size_t k_kept_broadcast_slots = 64;

// RFC 6455 §4.2.1: the key is 16 bytes in base64: 22 characters of its
// alphabet and "==". (Any 24 bytes would pass a length check.)
bool valid_websocket_key(std::string_view key) {
  auto is_base64 = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
  };
  return key.size() == 24 && key.substr(22) == "==" && std::all_of(key.begin(), key.begin() + 22, is_base64);
}

// What Beast reads of an upgrade request to answer it (RFC 6455 §4.2.1, the
// deflate offer), as a head for async_accept(buffers): short whatever the
// client's target and fields were, so within Beast's own 8 KiB head limit.
// The values passed the gateway's head check: no CR, LF or other CTL.
std::string handshake_head(const WebSocketSession::Request& request) {
  std::string head = "GET / HTTP/1.1\r\n";
  for (auto name : {http::field::host, http::field::connection, http::field::upgrade, http::field::sec_websocket_key,
                    http::field::sec_websocket_version, http::field::sec_websocket_extensions}) {
    if (auto it = request.find(name); it != request.end()) {
      head.append(it->name_string()).append(": ").append(it->value()).append("\r\n");
    }
  }
  return head + "\r\n";
}

// 0 when the upgrade request is acceptable, else the status to answer.
int handshake_status(const WebSocketSession::Request& request) {
  if (!has_valid_host(request)) return 400;
  // One key ("MUST NOT appear more than once"), looked up once.
  auto [key, after_key] = request.equal_range(http::field::sec_websocket_key);
  if (key == after_key || std::next(key) != after_key || !valid_websocket_key(key->value())) return 400;
  auto version = request[http::field::sec_websocket_version];
  if (version.empty()) return 400;
  if (version != "13") return 426;
  return 0;
}

// RFC 6455 §7.4: Beast 1.74 itself fails a close frame whose code is below
// 1000, reserved (1004-1006, 1014, 1015) or unassigned (1016-2999), answering
// 1002; it takes anything from 3000 up as valid and would echo 5000 or 65535.
// Nothing above 4999 is assigned: such a code breaks the protocol as well.
bool close_code_beyond_range(std::uint16_t code) { return code > 4999; }

// True when a text message ends inside a multi-byte UTF-8 sequence. Beast
// validates every byte as it arrives, but (Boost 1.74) skips its end-of-message
// check when the final frame is empty, so such a message would get through.
bool ends_inside_utf8_sequence(std::string_view text) {
  std::size_t continuation_bytes = 0;
  for (auto it = text.rbegin(); it != text.rend() && continuation_bytes < 4; ++it) {
    auto c = static_cast<unsigned char>(*it);
    if ((c & 0xC0) != 0x80) {
      std::size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
      return continuation_bytes + 1 < length;
    }
    ++continuation_bytes;
  }
  return false;
}

// Whether the client's first permessage-deflate offer, the one Beast
// answers, has client_max_window_bits: only then may we choose its window
// (RFC 7692 §7.1.2.2).
bool offers_client_window(const WebSocketSession::Request& request) {
  for (const auto& extension : http::ext_list(request[http::field::sec_websocket_extensions])) {
    if (!beast::iequals(extension.first, "permessage-deflate")) continue;
    for (const auto& param : extension.second) {
      if (beast::iequals(param.first, "client_max_window_bits")) return true;
    }
    return false;
  }
  return false;
}

// permessage-deflate as configured. Beast 1.74 declines the extension
// outright when it wants a client window under 15 bits and the offer leaves
// the client's window unnamed: such a client keeps compression with the full
// window instead (as the websockets library does).
websocket::permessage_deflate deflate_option(const Config& config, const WebSocketSession::Request& request) {
  websocket::permessage_deflate option;
  option.server_enable = true;
  option.server_max_window_bits = config.ws_deflate_server_window_bits;
  option.client_max_window_bits = offers_client_window(request) ? config.ws_deflate_client_window_bits : 15;
  option.server_no_context_takeover = config.ws_deflate_server_no_context_takeover;
  option.client_no_context_takeover = config.ws_deflate_client_no_context_takeover;
  return option;
}

}  // namespace

void start_websocket_session(ClientStream stream, SocketEnds ends, WebSocketSession::Request request,
                             protocol::Headers headers, std::string early, Shard& shard, Dispatcher& dispatcher,
                             const Config& config) {
  std::make_shared<WebSocketSession>(std::move(stream), std::move(ends), std::move(request), std::move(headers),
                                     std::move(early), shard, dispatcher, config)
      ->start();
}

WebSocketSession::WebSocketSession(ClientStream stream, SocketEnds ends, Request request, protocol::Headers headers,
                                   std::string early, Shard& shard, Dispatcher& dispatcher, const Config& config)
    : ws_(std::move(stream)),
      upgrade_(std::make_unique<Upgrade>(std::move(request), std::move(headers), std::move(ends), std::move(early))),
      shard_(shard),
      dispatcher_(dispatcher),
      config_(config),
      link_(ws_.get_executor(), shard, dispatcher),
      close_deadline_(ws_.get_executor()),
      lifetime_(ws_.get_executor()),
      keepalive_(ws_.get_executor()) {}

WebSocketSession::~WebSocketSession() {
  unsubscribe_all();  // the registry holds a plain pointer to us
  if (link_.inbox()) link_.inbox()->take_directly(nullptr);  // and so does the inbox
  shard_.untrack(drain_token_);  // the link ends a connection still open
}

void WebSocketSession::start() {
  drain_token_ = shard_.track(weak_from_this());
  spawn_session(ws_.get_executor(), [self = shared_from_this()]() { return self->run(); }, log::websocket());
}

// SIGTERM: an open WebSocket gets the drain period to finish, then 1001.
void WebSocketSession::drain() {
  draining_ = true;
  lifetime_.expires_after(std::chrono::duration_cast<Clock::duration>(config_.drain_timeout));
  lifetime_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (auto self = weak.lock(); self && !ec && self->link_.inbox()) self->link_.inbox()->push(LocalClose{1001});
  });
}

awaitable<void> WebSocketSession::run() {
  if (auto refusal = send_connect()) {
    co_await reject(refusal->status, GatewayReason::bad_request, refusal->why, refusal->extra_headers);
    co_await tls_shutdown();
    co_return;
  }
  co_await hold_handshake();
  upgrade_.reset();  // only the handshake needed it; an open WebSocket may idle for hours
  if (state_ == State::open) {
    co_await serve_open();  // Beast's closing handshake ends TLS too
    report_close();
  } else {
    co_await tls_shutdown();
  }
  teardown();
}

// Not a coroutine: the scope it builds must not live on in run()'s frame,
// which stays allocated for as long as the connection is open.
std::optional<WebSocketSession::Refusal> WebSocketSession::send_connect() {
  if (int status = handshake_status(upgrade_->request)) {
    log::websocket().info("{}: bad WebSocket handshake ({})", upgrade_->ends.label(), status);
    return Refusal{status, "bad handshake", status == 426 ? "sec-websocket-version: 13\r\n" : ""};
  }
  auto scope = make_scope(upgrade_->request, std::move(upgrade_->headers), protocol::ScopeType::websocket,
                          upgrade_->ends, config_);
  if (!scope) return Refusal{400, "bad request target", ""};
  if (config_.access_log) client_ = scope->client;
  link_.open();
  link_.send_first(protocol::WebSocketConnect{}, std::move(*scope), true);
  return std::nullopt;
}

// --- the held handshake -------------------------------------------------------

awaitable<void> WebSocketSession::hold_handshake() {
  watch_handshake_client();
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(config_.websocket_connect_timeout);
  while (state_ == State::handshake) {
    auto event = co_await link_.inbox()->pop(deadline);
    if (!event) {
      send_disconnect(1006);
      co_await reject(504, GatewayReason::app_timeout, "no accept or close within --websocket-connect-timeout");
    } else if (auto* failure = std::get_if<BusFailure>(&*event)) {
      bool no_capacity = *failure == BusFailure::no_capacity;
      if (!no_capacity) send_disconnect(1006);
      co_await reject(no_capacity ? 503 : 502, no_capacity ? GatewayReason::no_worker : GatewayReason::worker_lost,
                      no_capacity ? "no worker available" : "worker lost", no_capacity ? "retry-after: 1\r\n" : "");
    } else if (auto* gone = std::get_if<ClientGone>(&*event)) {
      log::websocket().debug("conn {}: client left during the handshake", link_.conn_id());
      send_disconnect(gone->code);
      state_ = State::done;
      report_handshake(0, std::nullopt);
    } else if (auto* reply = std::get_if<WorkerMessage>(&*event)) {
      if (config_.access_log && worker_.empty()) worker_ = reply->worker_id;
      if (reply->kind == protocol::Kind::error) {
        bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), reply->worker_id + ": app error",
                         "conn {}: application error on worker {}: {}", link_.conn_id(), reply->worker_id, reply->error);
        co_await reject(500, GatewayReason::app_error, "application error");
        continue;
      }
      if (reply->kind != protocol::Kind::event || !check_sequence(*reply)) continue;
      if (auto check = check_head(*reply->event); !check.ok()) {
        co_await reject_invalid_head(check, reply->worker_id);
      } else if (auto* accepted = std::get_if<protocol::WebSocketAccept>(&*reply->event)) {
        co_await accept(*accepted);
      } else if (std::holds_alternative<protocol::WebSocketClose>(*reply->event)) {
        co_await reject(403, std::nullopt, "the application closed before accepting");
      } else if (auto* start = std::get_if<protocol::WebSocketHttpResponseStart>(&*reply->event)) {
        co_await deny(*start);
      } else {
        send_disconnect(1006);
        co_await reject(502, GatewayReason::invalid_response, "invalid event before accept");
      }
    }
  }
}

// The head an accept or a denial response would write, checked
// (check_response_head); ok for other events.
ResponseHeadCheck WebSocketSession::check_head(const protocol::Event& event) {
  if (const auto* accepted = std::get_if<protocol::WebSocketAccept>(&event)) {
    return check_response_headers(accepted->headers);
  }
  if (const auto* start = std::get_if<protocol::WebSocketHttpResponseStart>(&event)) {
    return check_response_head(start->status, start->headers);
  }
  return {};
}

// As any invalid event before accept ends the app's connection, with a 500
// for the client: nothing of the app's head is written.
awaitable<void> WebSocketSession::reject_invalid_head(const ResponseHeadCheck& check, const std::string& worker_id) {
  bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), worker_id + " invalid head: " + check.rule,
                   "conn {}: invalid handshake response from worker {}: {}", link_.conn_id(), worker_id,
                   check.problem);
  send_disconnect(1006);
  co_await reject(500, GatewayReason::invalid_response, "invalid handshake response from the app");
}

// The client must stay silent until our 101; readable with nothing to read
// means it closed. (Over TLS a client that leaves politely sends close_notify
// first: that one is noticed only when the answer cannot be written.) A
// callback, not a coroutine: accept() cancels the wait and clears
// watching_client_, so a completion already queued does nothing.
void WebSocketSession::watch_handshake_client() {
  watching_client_ = true;
  auto& socket = ws_.next_layer().socket();
  socket.async_wait(StreamSocket::wait_read, [weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (!self || !self->watching_client_ || ec == asio::error::operation_aborted) return;
    self->watching_client_ = false;
    boost::system::error_code ignored;
    if (self->state_ == State::handshake && self->ws_.next_layer().socket().available(ignored) == 0) {
      self->link_.inbox()->push(ClientGone{});
    }
  });
}

awaitable<void> WebSocketSession::accept(protocol::WebSocketAccept& accepted) {
  boost::system::error_code ec;
  watching_client_ = false;
  ws_.next_layer().socket().cancel(ec);  // the handshake watcher's wait, before Beast owns the socket
  auto server_name = config_.server_name;
  ws_.set_option(websocket::stream_base::decorator(
      [this, subprotocol = accepted.subprotocol, headers = std::move(accepted.headers), server_name](websocket::response_type& response) {
        // Beast has answered the offer by now: permessage-deflate is our only extension.
        compressing_ = response.count(http::field::sec_websocket_extensions) > 0;
        if (!server_name.empty()) response.set(http::field::server, server_name);
        for (const auto& header : headers) {
          auto name = lower(header.name);
          // Extensions are the gateway's: the app never sees the frames they change.
          if (name == "sec-websocket-protocol" || name == "sec-websocket-extensions" || name == "connection" ||
              name == "upgrade") {
            continue;
          }
          response.insert(header.name, header.value);
        }
        if (subprotocol) response.set(http::field::sec_websocket_protocol, *subprotocol);
      }));
  // Beast's own timer only bounds the handshakes (the closing one too); our
  // keep-alive timer does the pings.
  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = k_close_timeout;
  timeouts.idle_timeout = websocket::stream_base::none();
  timeouts.keep_alive_pings = false;
  ws_.set_option(timeouts);
  if (config_.ws_per_message_deflate) ws_.set_option(deflate_option(config_, upgrade_->request));
  // Of the inflated message: Beast checks it after each inflated chunk, so a
  // small frame that inflates past it is closed 1009 at the limit.
  ws_.read_message_max(config_.max_message_size);
  ws_.auto_fragment(false);  // one frame per message: one write, not one per 4 KiB
  ws_.control_callback([this](websocket::frame_type kind, beast::string_view) { on_control_frame(kind); });
  if (upgrade_->early.empty()) {
    co_await ws_.async_accept(upgrade_->request, redirect_error(use_awaitable, ec));
  } else {
    // Beast keeps what follows a head it parses itself for the frames.
    auto bytes = handshake_head(upgrade_->request) + upgrade_->early;
    co_await ws_.async_accept(asio::buffer(bytes), redirect_error(use_awaitable, ec));
  }
  if (ec) {
    log::websocket().info("conn {}: handshake failed: {}", link_.conn_id(), ec.message());
    send_disconnect(1006);
    state_ = State::done;
    report_handshake(0, std::nullopt);
    co_return;
  }
  state_ = State::open;
  link_.inbox()->take_directly(this);
  set_keepalive(true);
  // An open WebSocket may idle for hours: drop the decorator's copy of the
  // app's headers (run() drops the upgrade request).
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type&) {}));
  log::websocket().debug("conn {}: accepted", link_.conn_id());
  opened_ = Clock::now();
  report_handshake(101, std::nullopt);
}

// The denial response extension: the app's status, headers and body, then close.
awaitable<void> WebSocketSession::deny(protocol::WebSocketHttpResponseStart& start) {
  auto head = format_response_head({start.status, &start.headers, false, true, false, config_.server_name});
  state_ = State::done;
  report_handshake(start.status, std::nullopt);
  if (!co_await write_raw(head)) co_return;
  for (;;) {
    auto event = co_await link_.inbox()->pop(Clock::now() + std::chrono::duration_cast<Clock::duration>(config_.request_timeout));
    if (!event) break;
    auto* reply = std::get_if<WorkerMessage>(&*event);
    if (!reply) break;
    if (reply->kind != protocol::Kind::event || !check_sequence(*reply)) continue;
    auto* body = std::get_if<protocol::WebSocketHttpResponseBody>(&*reply->event);
    if (!body) break;
    bool written = co_await write_raw(body->body);
    if (!written || !body->more_body) break;
  }
}

// --- the open connection -----------------------------------------------------

awaitable<void> WebSocketSession::serve_open() {
  if (config_.websocket_timeout.count() > 0) {
    lifetime_.expires_after(std::chrono::duration_cast<Clock::duration>(config_.websocket_timeout));
    lifetime_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      if (auto self = weak.lock(); self && !ec && self->link_.inbox()) self->link_.inbox()->push(LocalClose{1000});
    });
  }
  reader_running_ = true;
  read_next();
  auto& inbox = *link_.inbox();
  while (state_ == State::open || state_ == State::closing) {
    auto event = inbox.try_pop();
    if (!event) {
      co_await inbox.wait();  // not pop(): its frame would stay allocated while idle
      continue;
    }
    if (auto* reply = std::get_if<WorkerMessage>(&*event)) {
      co_await on_open_event(*reply);
    } else if (std::holds_alternative<BusFailure>(*event)) {
      co_await close(1011, "", Closer::gateway);
    } else if (auto* local = std::get_if<LocalClose>(&*event)) {
      send_disconnect(local->code);
      co_await close(local->code, "", Closer::gateway);
    } else if (auto* gone = std::get_if<ClientGone>(&*event)) {
      send_disconnect(gone->code, gone->reason);
      state_ = State::done;
    } else if (std::holds_alternative<Broadcast>(*event)) {
      co_await write_broadcast();
    }
  }
}

// The reader: frames in, websocket.receive events out, paused while the
// worker's event window is full. Callbacks, not a coroutine: a coroutine's
// suspend and resume around each Beast read cost more than the read itself.
void WebSocketSession::read_next() {
  if (link_.window_full() && state_ != State::done) {
    // Paused for credits, we leave the client's pongs unread too: not its fault.
    if (!paused_for_credit_) set_keepalive(false);
    paused_for_credit_ = true;
    link_.when_credit([self = shared_from_this()] { self->read_next(); });
    return;
  }
  if (paused_for_credit_) {
    paused_for_credit_ = false;
    set_keepalive(true);
  }
  // One message, read in parts: Beast sizes the buffer before a frame
  // arrives (1,536 bytes for a whole-message read), so the first part is
  // capped and an idle connection's buffer stays small. A large message's
  // buffer is given back after it.
  read_buffer_.clear();
  if (read_buffer_.capacity() > k_kept_read_buffer) read_buffer_.shrink_to_fit();
  read_part(k_first_read);
}

// Beast's read into a dynamic buffer, without the composed operation it
// wraps around the read of a plain buffer: the part goes where the buffer
// prepares room, sized as Beast sizes it, then is committed.
void WebSocketSession::read_part(std::size_t limit) {
  auto room = read_buffer_.prepare(std::min(ws_.read_size_hint(read_buffer_), limit));
  ws_.async_read_some(room, [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
    self->read_buffer_.commit(n);
    self->on_read(ec);
  });
}

void WebSocketSession::on_read(const boost::system::error_code& ec) {
  if (!ec && !ws_.is_message_done()) {
    read_part(std::numeric_limits<std::size_t>::max());
    return;
  }
  if (ec) {
    end_reader(ec);
    return;
  }
  last_heard_ = Clock::now();
  if (!failing_) forward_message();
  read_next();
}

// A whole message read: to the worker as websocket.receive.
void WebSocketSession::forward_message() {
  // A flat_buffer's data is one contiguous run: encoded from where it was read.
  std::string_view data(static_cast<const char*>(read_buffer_.data().data()), read_buffer_.size());
  if (ws_.got_text() && ends_inside_utf8_sequence(data)) {
    failing_ = true;  // keep reading: the client's answer to our close ends the reader
    link_.inbox()->push(LocalClose{1007});
    return;
  }
  count_in(data.size());
  link_.send_websocket_receive(ws_.got_text(), data);
}

// The read failed: the connection is over (a close frame, a broken
// protocol, the socket's end); the session hears how.
void WebSocketSession::end_reader(const boost::system::error_code& ec) {
  ClientGone gone;
  if (ec == websocket::error::closed) {
    gone.code = client_close_code();
    gone.reason = std::string(ws_.reason().reason.c_str());
  } else if (ec == websocket::error::message_too_big) {
    gone.code = 1009;
  } else if (ec == websocket::error::bad_frame_payload) {
    gone.code = 1007;
  } else if (ec == websocket::condition::protocol_violation) {
    // Beast answered the client with 1002 (a bad close code, a bad frame...).
    log::websocket().info("conn {}: client broke the WebSocket protocol ({}): closed 1002", link_.conn_id(),
                          ec.message());
    gone.code = 1002;
  } else if (ec != asio::error::operation_aborted) {
    log::websocket().debug("conn {}: read ended: {}", link_.conn_id(), ec.message());
  }
  // Beast answered 1009, 1007 and 1002 itself; a client's close frame was noted as it came.
  note_close(gone.code, gone.code == 1009 || gone.code == 1007 || gone.code == 1002 ? Closer::gateway : Closer::client);
  if (link_.inbox()) link_.inbox()->push(std::move(gone));
  reader_running_ = false;
}

awaitable<void> WebSocketSession::on_open_event(WorkerMessage& reply) {
  using protocol::Kind;
  if (reply.kind == Kind::credit) {
    if (link_.on_credit(reply.events)) co_return;
    bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), reply.worker_id + ": credit",
                     "conn {}: worker {} acknowledged events never sent", link_.conn_id(), reply.worker_id);
    co_await close(1011, "", Closer::gateway);
    co_return;
  }
  if (reply.kind == Kind::error) {
    bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), reply.worker_id + ": app error",
                     "conn {}: application error on worker {}: {}", link_.conn_id(), reply.worker_id, reply.error);
    co_await close(1011, "", Closer::gateway);
    co_return;
  }
  if (reply.kind != Kind::event || !check_sequence(reply) || state_ != State::open) co_return;
  if (auto* send = std::get_if<protocol::WebSocketSend>(&*reply.event)) {
    boost::system::error_code ec;
    ws_.text(send->text);
    writing_message_ = true;
    co_await ws_.async_write(asio::buffer(send->data), redirect_error(use_awaitable, ec));
    writing_message_ = false;
    if (ec) co_return;  // the reader reports the end of the connection
    count_out(send->data.size());
    link_.on_written(send->data.size());
  } else if (auto* closing = std::get_if<protocol::WebSocketClose>(&*reply.event)) {
    co_await close(closing->code, closing->reason, Closer::app);
  } else if (auto* joining = std::get_if<protocol::BroadcastSubscribe>(&*reply.event)) {
    if (subscribe(joining->channel)) co_return;
    bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), reply.worker_id + ": subscriptions",
                     "conn {}: app on worker {} subscribed to more than {} channels; closing 1011", link_.conn_id(),
                     reply.worker_id, k_max_subscriptions);
    co_await close(1011, "", Closer::gateway);
  } else if (auto* leaving = std::get_if<protocol::BroadcastUnsubscribe>(&*reply.event)) {
    unsubscribe(leaving->channel);
  } else {
    bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), reply.worker_id + ": invalid event",
                     "conn {}: invalid event from worker {} after accept", link_.conn_id(), reply.worker_id);
    co_await close(1011, "", Closer::gateway);
  }
}

// Pings while `on` and --ping-interval is not 0. Off while the reader waits
// for credits: the client's pongs then sit unread, which is not its fault.
void WebSocketSession::set_keepalive(bool on) {
  awaiting_pong_ = false;
  if (!on || config_.ping_interval.count() <= 0) {
    keepalive_.cancel();
    return;
  }
  last_heard_ = Clock::now();
  wait_for_silence();
}

void WebSocketSession::wait_for_silence() {
  arm_keepalive(last_heard_ + std::chrono::duration_cast<Clock::duration>(config_.ping_interval));
}

void WebSocketSession::arm_keepalive(Clock::time_point at) {
  keepalive_.expires_at(at);
  keepalive_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (auto self = weak.lock(); self && !ec) self->on_keepalive_timer();
  });
}

// Silent for --ping-interval: ping, and give the pong --ping-timeout (0: no
// limit). No pong by then: close 1011, as uvicorn and Daphne do, rather than
// drop the connection without a word.
void WebSocketSession::on_keepalive_timer() {
  if (state_ != State::open) return;
  if (awaiting_pong_) {
    bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), "ping timeout",
                     "conn {}: no pong within --ping-timeout ({} s): closing 1011", link_.conn_id(),
                     config_.ping_timeout.count());
    if (link_.inbox()) link_.inbox()->push(LocalClose{1011});
    return;
  }
  if (Clock::now() < last_heard_ + std::chrono::duration_cast<Clock::duration>(config_.ping_interval)) {
    wait_for_silence();  // heard from since the timer was set
    return;
  }
  if (!pinging_) {
    pinging_ = true;
    ws_.async_ping({}, [self = shared_from_this()](const boost::system::error_code&) { self->pinging_ = false; });
  }
  if (config_.ping_timeout.count() <= 0) {
    last_heard_ = Clock::now();
    wait_for_silence();
    return;
  }
  awaiting_pong_ = true;
  arm_keepalive(Clock::now() + std::chrono::duration_cast<Clock::duration>(config_.ping_timeout));
}

// Any frame shows the client alive; a pong ends the wait for it.
// The client's close frame: Beast completes the read only after the TCP
// teardown (it waits for the client's FIN), so the app hears the close now;
// and that wait gets a deadline, which Beast (its idle timer off) does not give it.
void WebSocketSession::on_control_frame(websocket::frame_type kind) {
  last_heard_ = Clock::now();
  if (kind == websocket::frame_type::pong && awaiting_pong_) {
    awaiting_pong_ = false;
    wait_for_silence();  // replaces the pong's deadline
  }
  if (kind != websocket::frame_type::close) return;
  if (state_ == State::open && close_code_beyond_range(ws_.reason().code)) {
    fail_bad_close_code();
  } else if (state_ == State::open) {
    note_close(client_close_code(), Closer::client);
    send_disconnect(client_close_code(), std::string(ws_.reason().reason.c_str()));
  }
  close_deadline_.expires_after(k_close_timeout);
  close_deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (auto self = weak.lock(); self && !ec) {
      boost::system::error_code ignored;
      self->ws_.next_layer().socket().close(ignored);  // the reader then ends the session
    }
  });
}

// A close code Beast let through (above 4999): we fail the connection with
// 1002 as Beast does for the codes it knows are bad. Called inside Beast's
// read, before it echoes the client's close: a close started now writes
// first, and Beast's read then only waits for the TCP teardown.
void WebSocketSession::fail_bad_close_code() {
  log::websocket().info("conn {}: client sent close code {}, outside 1000-4999: closing 1002", link_.conn_id(),
                        ws_.reason().code);
  send_disconnect(1002);
  note_close(1002, Closer::gateway);
  state_ = State::closing;  // close() does nothing more: one close per stream
  ws_.async_close(websocket::close_reason(websocket::close_code::protocol_error),
                  [self = shared_from_this()](const boost::system::error_code&) {});
}

// The code of the client's close frame for websocket.disconnect (1005: none).
int WebSocketSession::client_close_code() const {
  auto code = ws_.reason().code;
  return code == websocket::close_code::none ? 1005 : code;
}

// Sends our close frame; the reader then sees the client's answer (or the
// Beast handshake timeout) and ends the connection.
awaitable<void> WebSocketSession::close(int code, std::string reason, Closer who) {
  if (state_ != State::open) co_return;
  state_ = State::closing;
  note_close(code, who);
  websocket::close_reason why;
  why.code = static_cast<std::uint16_t>(code);
  why.reason = reason;
  boost::system::error_code ec;
  co_await ws_.async_close(why, redirect_error(use_awaitable, ec));
  if (ec && !reader_running_) state_ = State::done;
}

// --- broadcast -----------------------------------------------------------------

// False past k_max_subscriptions; subscribing twice is one subscription.
bool WebSocketSession::subscribe(const std::string& channel) {
  if (std::find(channels_.begin(), channels_.end(), channel) != channels_.end()) return true;
  if (channels_.size() >= k_max_subscriptions) return false;
  channels_.push_back(channel);
  shard_.broadcasts().subscribe(channel, this);
  dispatcher_.metrics().add_subscriptions(1);
  return true;
}

void WebSocketSession::unsubscribe(const std::string& channel) {
  auto it = std::find(channels_.begin(), channels_.end(), channel);
  if (it == channels_.end()) return;
  shard_.broadcasts().unsubscribe(channel, this);
  channels_.erase(it);
  dispatcher_.metrics().add_subscriptions(-1);
}

// However the socket ends: its subscriptions end with it.
void WebSocketSession::unsubscribe_all() {
  for (const auto& channel : channels_) shard_.broadcasts().unsubscribe(channel, this);
  dispatcher_.metrics().add_subscriptions(-static_cast<std::int64_t>(channels_.size()));
  channels_.clear();
}

// The shard's fan-out: written at once when the socket is idle, else queued
// in publish order. A socket with --broadcast-queue publishes (or
// k_max_broadcast_bytes) not yet written is not keeping up: it is closed 1013
// rather than hold memory without bound.
void WebSocketSession::deliver(const PublicationPtr& publication, const FrameHead& head) {
  if (state_ != State::open || slow_subscriber_) return;  // closing: nothing more is written
  std::size_t queued = broadcasts_.size() - broadcast_head_;
  if (queued == 0 && write_now(publication, head)) return;
  if (queued >= config_.broadcast_queue || broadcast_bytes_ + publication->data.size() > k_max_broadcast_bytes) {
    drop_slow_subscriber();
    return;
  }
  broadcasts_.push_back(publication);
  broadcast_bytes_ += publication->data.size();
  if (queued == 0) link_.inbox()->push(Broadcast{});
}

// The fast path: the frame's head and the shared payload go to the socket in
// one sendmsg, now, inside the fan-out loop: no inbox event, no coroutine
// resume, no Beast operation, no reference taken. Only between messages:
// never inside one Beast is writing, nor after a close frame. False when the
// socket takes nothing now: the caller queues the publish for Beast.
bool WebSocketSession::write_now(const PublicationPtr& publication, const FrameHead& head) {
  auto written = try_write_frame(head, publication->data);
  if (written == 0) return false;
  count_out(publication->data.size());
  if (written < head.size + publication->data.size()) write_rest(head, publication, written);
  return true;
}

// A websocket.send (or a credit) arriving while nothing is queued before it:
// the frame goes to the socket from the delivery itself, as a publish does
// (write_now): no inbox entry, no wake-up of serve_open(), no Beast write.
// The rest takes the queue: other events, a compressed connection (Beast
// deflates), a socket that takes nothing now, an event out of sequence (the
// queue's check logs it).
bool WebSocketSession::take_now(WorkerMessage& reply) {
  if (state_ != State::open) return false;
  if (reply.kind == protocol::Kind::credit) return link_.on_credit(reply.events);  // false: refused by the queue's path
  if (reply.kind != protocol::Kind::event || compressing_ || !link_.is_next(reply)) return false;
  auto* send = std::get_if<protocol::WebSocketSend>(&*reply.event);
  if (!send || broadcast_head_ != broadcasts_.size()) return false;
  auto size = send->data.size();
  auto head = frame_head(send->text, size);
  auto written = try_write_frame(head, send->data);
  if (written == 0) return false;
  link_.accept_sequence(reply);
  if (written < head.size + size) {
    write_rest(head, std::make_shared<const Publication>(Publication{{}, std::move(send->data), send->text}), written);
  }
  count_out(size);
  link_.on_written(size);
  return true;
}

// One sendmsg of a whole frame, between messages only: never inside one
// Beast is writing, nor after a close frame. The bytes the socket took (0:
// none, the caller takes the slow path); fewer than all must go to
// write_rest() at once.
std::size_t WebSocketSession::try_write_frame(const FrameHead& head, std::string_view payload) {
  if (writing_message_ || !ws_.is_open()) return 0;
  return ws_.next_layer().try_write_now(asio::buffer(head.bytes.data(), head.size), asio::buffer(payload));
}

// The socket took part of the frame: the rest goes out before anything else is written.
void WebSocketSession::write_rest(const FrameHead& head, PublicationPtr payload, std::size_t written) {
  struct Rest {
    PublicationPtr publication;
    FrameHead head;
  };
  auto rest = std::make_shared<Rest>(Rest{std::move(payload), head});
  std::array<asio::const_buffer, 2> buffers{asio::buffer(rest->head.bytes.data(), rest->head.size),
                                            asio::buffer(rest->publication->data)};
  auto from_head = std::min(written, head.size);
  buffers[0] += from_head;
  buffers[1] += written - from_head;
  // The handler keeps the session (which owns the stream) and the bytes alive until written.
  ws_.next_layer().write_rest(buffers, [self = shared_from_this(), rest](const boost::system::error_code&, std::size_t) {});
}

// Policy "close 1013" (docs/broadcast.md): the queued publishes are dropped,
// the app hears websocket.disconnect 1013 and the client a close 1013 (Try
// Again Later: reconnect and resynchronise). A client that reads nothing
// never lets the write under way finish: the close deadline then cuts the
// TCP connection.
void WebSocketSession::drop_slow_subscriber() {
  slow_subscriber_ = true;  // later publishes are ignored; teardown ends the subscriptions
  auto dropped = broadcasts_.size() - broadcast_head_ + 1;
  broadcasts_.resize(std::min(broadcasts_.size(), broadcast_head_ + 1));  // keep the one being written
  dispatcher_.metrics().count_broadcast_dropped(Metrics::BroadcastDrop::slow_subscriber, dropped);
  bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), "broadcast: slow subscriber",
                   "conn {}: {} broadcast frames queued and not written: closing 1013", link_.conn_id(),
                   dropped - 1);
  send_disconnect(1013);  // now: the write under way may take until the close deadline
  link_.inbox()->push(LocalClose{1013});
  close_deadline_.expires_after(k_close_timeout);
  close_deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (auto self = weak.lock(); self && !ec) {
      boost::system::error_code ignored;
      self->ws_.next_layer().socket().close(ignored);
    }
  });
}

// The oldest queued publish, through Beast's writer, which keeps its state
// (pings, pongs, close) in order; the payload is the publish's own buffer,
// not a copy (docs/decisions.md, "Broadcast frames"). One per turn, so that
// a steady stream of publishes does not hold up the worker's own events.
awaitable<void> WebSocketSession::write_broadcast() {
  if (broadcast_head_ == broadcasts_.size()) co_return;
  auto publication = broadcasts_[broadcast_head_];  // stays queued while written: deliver() sees it
  if (state_ == State::open && !slow_subscriber_) {
    boost::system::error_code ec;
    ws_.text(publication->text);
    writing_message_ = true;
    co_await ws_.async_write(asio::buffer(publication->data), redirect_error(use_awaitable, ec));
    writing_message_ = false;
    if (!ec) count_out(publication->data.size());  // a message out, as the app's own
  }
  broadcast_bytes_ -= std::min(broadcast_bytes_, publication->data.size());
  if (++broadcast_head_ < broadcasts_.size()) {
    link_.inbox()->push(Broadcast{});
    co_return;
  }
  broadcasts_.clear();
  broadcast_head_ = 0;
  if (broadcasts_.capacity() > k_kept_broadcast_slots) std::vector<PublicationPtr>().swap(broadcasts_);
}

// --- plumbing -----------------------------------------------------------------

awaitable<void> WebSocketSession::reject(int status, Origin origin, const char* why, std::string_view extra_headers) {
  state_ = State::done;
  log::websocket().info("conn {}: answering {}: {}", link_.conn_id(), status, why);
  report_handshake(status, origin);
  co_await write_raw(format_error_response(status, config_.server_name, extra_headers));
}

// --- access log and metrics ---------------------------------------------------------

// The first close decides the line: the other side's answer to it is no news.
void WebSocketSession::note_close(int code, Closer who) {
  if (close_noted_) return;
  close_noted_ = true;
  close_code_ = code;
  closed_by_ = who;
}

void WebSocketSession::count_in(std::size_t bytes) {
  ++messages_in_;
  bytes_in_ += bytes;
  shard_.metrics().websocket_message_in(bytes);
}

void WebSocketSession::count_out(std::size_t bytes) {
  ++messages_out_;
  bytes_out_ += bytes;
  shard_.metrics().websocket_message_out(bytes);
}

// The upgrade request answered (status 0: the client left first). Called
// while upgrade_ still holds the request.
void WebSocketSession::report_handshake(int status, Origin origin) {
  AccessRecord record;
  record.kind = AccessRecord::Kind::websocket_handshake;
  record.status = status;
  record.gateway_reason = origin;
  record.duration = Clock::now() - started_;
  shard_.metrics().count(record);
  if (!config_.access_log || !upgrade_) return;
  const auto& request = upgrade_->request;
  auto view = [](beast::string_view v) { return std::string_view(v.data(), v.size()); };
  const auto& client = client_ ? client_ : upgrade_->ends.client;
  if (client) {
    record.client = client->host;
    record.client_port = client->port;
  }
  record.method = "GET";
  record.target = view(request.target());
  record.http_version = request.version() == 10 ? 10 : 11;
  record.referer = view(request[http::field::referer]);
  record.user_agent = view(request[http::field::user_agent]);
  record.worker = worker_;
  write_access_log(record, config_.access_log_format, config_.log_format == "json");
  if (status != 101) return;
  // The close line needs these after the upgrade request is freed.
  target_.assign(record.target);
  if (!client_) client_ = upgrade_->ends.client;
}

void WebSocketSession::report_close() {
  AccessRecord record;
  record.kind = AccessRecord::Kind::websocket_close;
  record.status = close_code_;
  record.closed_by = closed_by_;
  record.duration = Clock::now() - opened_;
  record.messages_received = messages_in_;
  record.messages_sent = messages_out_;
  record.bytes_received = bytes_in_;
  record.bytes_sent = bytes_out_;
  shard_.metrics().count(record);
  if (!config_.access_log) return;
  if (client_) {
    record.client = client_->host;
    record.client_port = client_->port;
  }
  record.target = target_;
  record.worker = worker_;
  write_access_log(record, config_.access_log_format, config_.log_format == "json");
}

awaitable<bool> WebSocketSession::write_raw(std::string_view a, std::string_view b) {
  std::array<asio::const_buffer, 2> buffers{asio::buffer(a), asio::buffer(b)};
  boost::system::error_code ec;
  co_await asio::async_write(ws_.next_layer(), buffers, redirect_error(use_awaitable, ec));
  co_return !ec;
}

bool WebSocketSession::check_sequence(const WorkerMessage& reply) {
  if (link_.accept_sequence(reply)) return true;
  bus::LogLimiter::warn(log::websocket(), shard_.log_limiter(), reply.worker_id + ": sequence",
                   "conn {}: event out of sequence from worker {}", link_.conn_id(), reply.worker_id);
  link_.inbox()->push(BusFailure::worker_lost);
  return false;
}

void WebSocketSession::send_disconnect(int code, std::string reason) {
  if (disconnect_sent_ || !link_.is_open()) return;
  disconnect_sent_ = true;
  link_.send_event(protocol::WebSocketDisconnect{code, std::move(reason)});
}

// A refusal's body may end with the connection: close_notify says it is
// complete. The client's answer gets the closing handshake's limit.
awaitable<void> WebSocketSession::tls_shutdown() {
  auto* tls = ws_.next_layer().tls();
  if (!tls) co_return;
  close_deadline_.expires_after(k_close_timeout);
  close_deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (auto self = weak.lock(); self && !ec) self->ws_.next_layer().close();
  });
  boost::system::error_code ec;
  co_await tls->async_shutdown(redirect_error(use_awaitable, ec));
  close_deadline_.cancel();
}

void WebSocketSession::teardown() {
  unsubscribe_all();
  if (link_.inbox()) link_.inbox()->take_directly(nullptr);
  lifetime_.cancel();
  keepalive_.cancel();
  close_deadline_.cancel();
  link_.wake();
  ws_.next_layer().close();
  if (link_.is_open()) link_.end();
}

}  // namespace asgi_bridge::gateway
