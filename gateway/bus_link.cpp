#include "bus_link.hpp"

#include <algorithm>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "asgi_bridge/protocol/codec.hpp"

namespace asgi_bridge::gateway {

BusLink::BusLink(const boost::asio::any_io_executor& executor, Shard& shard, Dispatcher& dispatcher)
    : shard_(shard), dispatcher_(dispatcher), credit_wake_(executor) {}

BusLink::~BusLink() {
  if (is_open()) end();
}

void BusLink::open() {
  conn_id_ = shard_.new_conn_id();
  // Keep-alive requests reuse the last one's inbox when nothing else holds it
  // (the shard let go at end(); a pending socket watcher still would).
  if (inbox_ && inbox_.use_count() == 1) {
    inbox_->reset();
  } else {
    inbox_ = std::make_shared<Inbox>(credit_wake_.get_executor());
  }
  shard_.attach(conn_id_, inbox_);
  out_seq_ = in_seq_ = 0;
  events_in_flight_ = 0;
  written_unacked_ = 0;
}

void BusLink::end() {
  dispatcher_.post({.type = ToBus::Type::end, .conn_id = conn_id_, .encoded = {}, .redispatchable = false, .credit_bytes = 0, .websocket = false, .window = 0});
  shard_.detach(conn_id_);
  conn_id_ = 0;
}

void BusLink::send_first(protocol::Event event, protocol::Scope scope, bool redispatchable, std::uint64_t window) {
  window_ = window;
  protocol::Envelope envelope;
  envelope.kind = protocol::Kind::event;
  envelope.window = window;
  envelope.features = protocol::k_gateway_features;  // docs/protocol.md §2.5
  envelope.scope = std::move(scope);
  envelope.event = std::move(event);
  bool websocket = envelope.scope->type == protocol::ScopeType::websocket;
  post(envelope, ToBus::Type::first, redispatchable, websocket);
}

void BusLink::send_event(protocol::Event event) {
  protocol::Envelope envelope;
  envelope.kind = protocol::Kind::event;
  envelope.event = std::move(event);
  post(envelope, ToBus::Type::message);
}

void BusLink::send_websocket_receive(bool text, std::string_view data) {
  ++events_in_flight_;
  dispatcher_.post({.type = ToBus::Type::message,
                    .conn_id = conn_id_,
                    .encoded = {protocol::encode_websocket_receive(dispatcher_.gateway_id(), conn_id_, out_seq_++, text, data)},
                    .redispatchable = false,
                    .credit_bytes = 0,
                    .websocket = false,
                    .window = 0});
}

// A request's body is left out of the encoding (protocol::encode_split): the
// bus copies it once, into a shared-memory ring, or joins it. Not for a first
// event that may be sent again (re-dispatch): that one is kept whole.
bus::MessageParts BusLink::encode(protocol::Envelope&& envelope, bool redispatchable) {
  if (redispatchable) return {protocol::encode(envelope)};
  auto split = protocol::encode_split(std::move(envelope));
  return {std::move(split.head), std::move(split.body), std::move(split.tail)};
}

void BusLink::post(protocol::Envelope& envelope, ToBus::Type type, bool redispatchable, bool websocket) {
  envelope.gateway_id = dispatcher_.gateway_id();
  envelope.conn_id = conn_id_;
  envelope.seq = out_seq_++;
  ++events_in_flight_;
  dispatcher_.post({.type = type,
                    .conn_id = conn_id_,
                    .encoded = encode(std::move(envelope), redispatchable),
                    .redispatchable = redispatchable,
                    .credit_bytes = 0,
                    .websocket = websocket,
                    .window = type == ToBus::Type::first ? window_ : 0});
}

bool BusLink::accept_sequence(const WorkerMessage& reply) {
  if (reply.seq != in_seq_) return false;
  ++in_seq_;
  return true;
}

bool BusLink::on_credit(std::uint64_t events) {
  if (events > events_in_flight_) return false;
  events_in_flight_ -= static_cast<unsigned>(events);
  credit_wake_.cancel();
  return true;
}

boost::asio::awaitable<void> BusLink::wait_for_credit() {
  credit_wake_.expires_at(boost::asio::steady_timer::time_point::max());
  boost::system::error_code ignored;
  co_await credit_wake_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
}

void BusLink::on_written(std::uint64_t bytes) {
  written_unacked_ += bytes;
  if (written_unacked_ < window_ / 4) return;
  protocol::Envelope envelope;
  envelope.kind = protocol::Kind::credit;
  envelope.gateway_id = dispatcher_.gateway_id();
  envelope.conn_id = conn_id_;
  envelope.bytes = written_unacked_;
  dispatcher_.post({.type = ToBus::Type::message,
                    .conn_id = conn_id_,
                    .encoded = {protocol::encode(envelope)},
                    .redispatchable = false,
                    .credit_bytes = written_unacked_,
                    .websocket = false,
                    .window = 0});
  written_unacked_ = 0;
}

}  // namespace asgi_bridge::gateway
