#include "connection.hpp"

#include <exception>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/core/demangle.hpp>

#include "event_check.hpp"
#include "http_connection.hpp"
#include "log.hpp"
#include "websocket_connection.hpp"

namespace asgi_bridge::worker::detail {

std::shared_ptr<Connection> Connection::create(const boost::asio::any_io_executor& executor, protocol::Scope&& scope,
                                               protocol::Event&& first, ConnectionInfo info, Emit emit) {
  std::shared_ptr<Connection> connection;
  if (scope.type == protocol::ScopeType::http) {
    connection.reset(new HttpConnection(executor, std::move(scope), std::move(info), std::move(emit)));
  } else {
    connection.reset(new WebSocketConnection(executor, std::move(scope), std::move(info), std::move(emit)));
  }
  connection->queue_.push_back(std::move(first));
  return connection;
}

Connection::Connection(const boost::asio::any_io_executor& executor, protocol::Scope&& scope, ConnectionInfo info,
                       Emit emit)
    : executor_(executor),
      scope_(std::move(scope)),
      info_(std::move(info)),
      body_piece_(protocol::body_piece(info_.features, info_.window)),
      emit_(std::move(emit)),
      changed_(executor_),  // the member: the Notifier keeps a reference
      flow_(info_.window) {}

// --- from the worker ----------------------------------------------------------

bool Connection::feed(protocol::Event event) {
  if (!expects(event)) return false;
  if (disconnected_) return true;  // nothing the app could do with it
  on_incoming(std::move(event));
  changed();
  return true;
}

void Connection::add_credit(std::uint64_t bytes) {
  flow_.acknowledged(bytes);
  if (flow_.can_send()) changed();
}

// --- the app instance -----------------------------------------------------------

boost::asio::awaitable<void> Connection::run(const App& app) {
  auto self = shared_from_this();
  std::string failure;
  bool client_gone = false;
  // No co_await in a handler: remember the failure, report it after.
  try {
    // The scope is the app's from here on: moved, not copied (every header a string).
    co_await app(std::move(scope_), Receive(self), Send(self));
  } catch (const ClientDisconnected& e) {
    failure = std::string("ClientDisconnected: ") + e.what();
    client_gone = true;
  } catch (const std::exception& e) {
    failure = boost::core::demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  finish_after_app(failure, client_gone);
}

void Connection::finish_after_app(const std::string& failure, bool client_gone) {
  if (failure.empty()) {
    on_return();
    return;
  }
  if (client_gone && over()) {
    // ASGI 2.4: the expected end of an app that kept sending to a gone client.
    log().debug("conn {}/{}: app stopped on {}", info_.gateway_id, info_.conn_id, failure);
    return;
  }
  log().error("conn {}/{}: exception in the application: {}", info_.gateway_id, info_.conn_id, failure);
  fail(failure);
}

// --- receive and send ------------------------------------------------------------

protocol::Event Connection::take() {
  protocol::Event event = std::move(queue_.front());
  queue_.pop_front();
  if (auto events = flow_.consumed(); events > 0 && !over()) {
    protocol::Envelope credit;
    credit.kind = protocol::Kind::credit;
    credit.gateway_id = info_.gateway_id;
    credit.worker_id = info_.worker_id;
    credit.conn_id = info_.conn_id;
    credit.events = events;
    emit_(std::move(credit));
  }
  return event;
}

boost::asio::awaitable<void> Connection::send(protocol::Event event) {
  check_event_values(event);
  auto size = protocol::payload_size(event);
  auto ticket = next_ticket_++;
  // Wait for the earlier sends, then (for a payload) for the window; a
  // connection that ends meanwhile makes advance() throw below.
  while (!disconnected_ && !failed_ && (serving_ != ticket || (size > 0 && !flow_.can_send()))) {
    co_await wait_for_change();
  }
  try {
    advance(event);
  } catch (...) {
    pass_turn(ticket);
    throw;
  }
  try {
    if (auto* start = std::get_if<protocol::HttpResponseStart>(&event)) {
      // Held back, or sent; a body that came with it goes on as a body event of its own.
      if (send_start(*start)) {
        protocol::HttpResponseBody body{std::move(*start->body), start->more_body};
        if (body.body.size() > body_piece_) {
          co_await send_pieces(std::move(body));
        } else {
          flow_.sent(size);
          emit_event(std::move(body));
        }
      }
    } else if (auto* body = std::get_if<protocol::HttpResponseBody>(&event); body && body->body.size() > body_piece_) {
      co_await send_pieces(std::move(*body));
    } else if (auto* denial = std::get_if<protocol::WebSocketHttpResponseBody>(&event);
               denial && denial->body.size() > body_piece_) {
      co_await send_pieces(std::move(*denial));
    } else {
      flow_.sent(size);
      emit_event(std::move(event));
    }
  } catch (...) {
    pass_turn(ticket);
    throw;
  }
  pass_turn(ticket);
}

// One body as consecutive body events of body_piece_ bytes, each in turn
// within the window (docs/protocol.md §5); all but the last with more_body.
// The state machine has taken the whole body already; the turn is ours.
// The first piece keeps the body's own buffer (cut to size); only the pieces
// after it are copied out, once each (a 300 KiB body in 256 KiB pieces: 44 KiB copied).
template <typename BodyEvent>
boost::asio::awaitable<void> Connection::send_pieces(BodyEvent event) {
  std::vector<protocol::Bytes> later;
  for (std::size_t start = body_piece_; start < event.body.size(); start += body_piece_) {
    later.emplace_back(event.body, start, body_piece_);
  }
  event.body.resize(body_piece_);
  for (std::size_t i = 0; i <= later.size(); ++i) {
    if (!flow_.can_send()) flush_held_start();  // never held while we wait
    while (!disconnected_ && !failed_ && !flow_.can_send()) co_await wait_for_change();
    if (failed_) co_return;
    if (disconnected_) throw ClientDisconnected("client disconnected");
    protocol::Bytes piece = i == 0 ? std::move(event.body) : std::move(later[i - 1]);
    bool last = i == later.size();
    flow_.sent(piece.size());
    emit_event(BodyEvent{std::move(piece), last ? event.more_body : true});
  }
}

// An app's start: held back for its first body when the gateway takes the two
// in one message (docs/protocol.md §2.5), else sent now. True when the start
// came with a body of its own (the ASGI start followed by that body): the
// caller sends it next, and emit_event() joins it to the held start.
bool Connection::send_start(protocol::HttpResponseStart& start) {
  bool with_body = start.body.has_value();
  if ((info_.features & protocol::k_feature_start_body) == 0) {
    protocol::HttpResponseStart alone{start.status, std::move(start.headers), start.trailers, std::nullopt, false};
    emit_event(std::move(alone));
    return with_body;
  }
  held_start_.emplace(start.status, std::move(start.headers), start.trailers, std::nullopt, false);
  if (!with_body) {
    // The head must not wait for more than the app's current run: once the
    // app's coroutine suspends or ends, this thread runs the posted flush.
    // One post per streamed response; a whole one (http_app) never gets here.
    boost::asio::post(executor_, [self = shared_from_this()] { self->flush_held_start(); });
  }
  return with_body;
}

void Connection::flush_held_start() {
  if (!held_start_) return;
  protocol::Event start(std::move(*held_start_));
  held_start_.reset();
  emit_event(std::move(start));
}

void Connection::pass_turn(std::uint64_t ticket) {
  if (serving_ != ticket) return;  // left early on a connection that is over
  ++serving_;
  changed();
}

void Connection::emit_event(protocol::Event event) {
  if (failed_) return;
  if (held_start_) {
    auto* body = std::get_if<protocol::HttpResponseBody>(&event);
    if (body == nullptr || body->body.size() > body_piece_) {
      flush_held_start();
    } else {
      // One message for the start and its first body.
      held_start_->body = std::move(body->body);
      held_start_->more_body = body->more_body;
      event = std::move(*held_start_);
      held_start_.reset();
    }
  }
  protocol::Envelope envelope;
  envelope.kind = protocol::Kind::event;
  envelope.gateway_id = info_.gateway_id;
  envelope.worker_id = info_.worker_id;
  envelope.conn_id = info_.conn_id;
  envelope.seq = seq_++;
  envelope.event = std::move(event);
  emit_(std::move(envelope));
}

void Connection::abort(std::string problem) {
  if (!failed_) report_error(std::move(problem));
  gateway_lost();
}

void Connection::fail(std::string message) {
  if (over()) return;  // the client is gone or already has its whole answer
  report_error(std::move(message));
}

void Connection::report_error(std::string message) {
  flush_held_start();  // the gateway sees the start, then the error (as without holding)
  failed_ = true;
  changed();
  protocol::Envelope error;
  error.kind = protocol::Kind::error;
  error.gateway_id = info_.gateway_id;
  error.worker_id = info_.worker_id;
  error.conn_id = info_.conn_id;
  // `message` is a msgpack str: keep it valid UTF-8 whatever the app's what() holds.
  if (!is_valid_utf8(message)) {
    for (auto& c : message) {
      if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    }
  }
  error.message = std::move(message);
  emit_(std::move(error));
}

}  // namespace asgi_bridge::worker::detail
