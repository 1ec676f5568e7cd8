#pragma once
// A session's link to its worker over the bus: the connection id and inbox it
// is registered under on its shard, the sequence numbers of both directions,
// and both halves of flow control (events the worker has not consumed yet,
// bytes we wrote for it but have not acknowledged). HttpSession opens one per
// request, WebSocketSession one per connection. Shard thread only.
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "asgi_bridge/protocol/envelope.hpp"
#include "dispatcher.hpp"
#include "inbox.hpp"
#include "shard.hpp"

namespace asgi_bridge::gateway {

class BusLink {
 public:
  BusLink(const boost::asio::any_io_executor& executor, Shard& shard, Dispatcher& dispatcher);
  BusLink(const BusLink&) = delete;
  BusLink& operator=(const BusLink&) = delete;
  ~BusLink();

  // Registers a new connection on the shard (a fresh id, inbox and sequence).
  void open();
  // The connection is over at the gateway: the dispatcher and shard forget it.
  void end();
  bool is_open() const { return conn_id_ != 0; }
  std::uint64_t conn_id() const { return conn_id_; }
  const std::shared_ptr<Inbox>& inbox() const { return inbox_; }

  // The connection's first event: the dispatcher picks a worker for it.
  // `window`: the bytes the worker may send unacknowledged (docs/protocol.md §5).
  void send_first(protocol::Event event, protocol::Scope scope, bool redispatchable,
                  std::uint64_t window = protocol::k_default_byte_window);
  void send_event(protocol::Event event);
  // A WebSocket client's message as websocket.receive: send_event() without
  // building the event (protocol::encode_websocket_receive()).
  void send_websocket_receive(bool text, std::string_view data);

  // True for the worker's next event in sequence (and counts it).
  bool accept_sequence(const WorkerMessage& reply);
  // Whether it is the next in sequence, without counting it.
  bool is_next(const WorkerMessage& reply) const { return reply.seq == in_seq_; }
  // The worker consumed `events` of ours: the reader may go on. False when
  // it acknowledges events we never sent (a lying worker would have us read
  // the client without bound and queue it all towards itself).
  bool on_credit(std::uint64_t events);
  bool window_full() const { return events_in_flight_ >= protocol::k_event_window; }
  // Waits for the next credit or wake(); the caller re-checks its condition.
  boost::asio::awaitable<void> wait_for_credit();
  // The same for a callback: `then()` runs at the next credit or wake().
  template <typename Then>
  void when_credit(Then then) {
    credit_wake_.expires_at(boost::asio::steady_timer::time_point::max());
    credit_wake_.async_wait([then = std::move(then)](const boost::system::error_code&) mutable { then(); });
  }
  void wake() { credit_wake_.cancel(); }
  // `bytes` of the worker's output reached the client: acknowledged in batches.
  void on_written(std::uint64_t bytes);

 private:
  void post(protocol::Envelope& envelope, ToBus::Type type, bool redispatchable = false, bool websocket = false);
  static bus::MessageParts encode(protocol::Envelope&& envelope, bool redispatchable);

  Shard& shard_;
  Dispatcher& dispatcher_;
  boost::asio::steady_timer credit_wake_;
  std::uint64_t conn_id_ = 0;
  std::shared_ptr<Inbox> inbox_;
  std::uint64_t out_seq_ = 0;
  std::uint64_t in_seq_ = 0;
  unsigned events_in_flight_ = 0;
  std::uint64_t written_unacked_ = 0;
  std::uint64_t window_ = protocol::k_default_byte_window;
};

}  // namespace asgi_bridge::gateway
