#pragma once
// One ASGI connection: the app instance's receive/send and what HTTP and
// WebSocket share (event queue, credits, byte window, sequence numbers,
// error reporting). The state machines are in HttpConnection and
// WebSocketConnection, after workers/python/asgi_bridge/connection.py.
//
// A connection knows nothing about the bus: its Shard feeds it the gateway's
// events and gives it an Emit function for its outgoing messages. Everything
// here runs on the connection's own thread, so nothing is locked; that also
// makes it testable on a bare io_context (tests/unit/worker).
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "asgi_bridge/protocol/envelope.hpp"
#include "asgi_bridge/worker/app.hpp"
#include "flow_control.hpp"
#include "notifier.hpp"

namespace asgi_bridge::worker::detail {

struct ConnectionInfo {
  std::string gateway_id;
  std::string worker_id;
  std::uint64_t conn_id = 0;
  std::uint64_t window = protocol::k_default_byte_window;
  std::uint64_t features = 0;  // the first event's (docs/protocol.md §2.5)
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Delivers one message for the owning gateway (kind event, credit or error).
  using Emit = std::function<void(protocol::Envelope&&)>;

  // An HttpConnection or a WebSocketConnection for the scope's type, with
  // `first` queued. `first` must open that type (http.request or
  // websocket.connect): the Worker checks before it gets here.
  static std::shared_ptr<Connection> create(const boost::asio::any_io_executor& executor, protocol::Scope&& scope,
                                            protocol::Event&& first, ConnectionInfo info, Emit emit);
  virtual ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // --- from the worker ------------------------------------------------------
  // Queues a later event of this connection; false when its type does not
  // belong on this connection (a protocol error for the caller to log).
  bool feed(protocol::Event event);
  // The gateway wrote `bytes` of our payload to the client.
  void add_credit(std::uint64_t bytes);
  // The gateway said bye, went silent, or reported the connection unknown.
  virtual void gateway_lost() = 0;
  // The gateway broke the protocol on this connection (an event out of order
  // or of the wrong type): tell it with `error`, and end the app's connection.
  void abort(std::string problem);
  // The worker's graceful timeout ran out: end the connection for the client
  // and let the app's receive() see a disconnect.
  virtual void shut_down() = 0;
  // Runs the app to its end, then finishes the connection on its behalf
  // (error, or websocket.close 1000). Never throws. `app` must outlive it.
  boost::asio::awaitable<void> run(const App& app);

  // --- the app's handles ------------------------------------------------------
  virtual boost::asio::awaitable<protocol::Event> receive() = 0;
  boost::asio::awaitable<void> send(protocol::Event event);

  const boost::asio::any_io_executor& executor() const { return executor_; }
  std::uint64_t conn_id() const { return info_.conn_id; }
  const std::string& gateway_id() const { return info_.gateway_id; }
  // Nothing more from the app can reach the client.
  bool over() const { return disconnected_ || failed_ || complete(); }
  // The client or its gateway is gone.
  bool gone() const { return disconnected_; }
  const FlowControl& flow() const { return flow_; }

 protected:
  Connection(const boost::asio::any_io_executor& executor, protocol::Scope&& scope, ConnectionInfo info, Emit emit);

  virtual bool expects(const protocol::Event& event) const = 0;
  virtual void on_incoming(protocol::Event event) = 0;
  // Moves the state machine for an event the app sends; throws
  // UnexpectedMessage or ClientDisconnected, changing nothing, when not allowed.
  virtual void advance(const protocol::Event& event) = 0;
  virtual bool complete() const = 0;
  virtual void on_return() = 0;

  // Pops the next queued event, acknowledging consumed events in batches.
  protocol::Event take();
  boost::asio::awaitable<void> wait_for_change() { return changed_.wait(); }
  void changed() { changed_.notify(); }
  void emit_event(protocol::Event event);
  // Reports the app instance as failed (`error`): the gateway answers the client.
  void fail(std::string message);

  std::deque<protocol::Event> queue_;
  bool disconnected_ = false;  // the client or its gateway is gone
  bool failed_ = false;        // we sent `error`: nothing more goes out

 private:
  template <typename BodyEvent>
  boost::asio::awaitable<void> send_pieces(BodyEvent event);
  bool send_start(protocol::HttpResponseStart& start);
  void flush_held_start();
  void finish_after_app(const std::string& failure, bool client_gone);
  void report_error(std::string message);
  void pass_turn(std::uint64_t ticket);

  boost::asio::any_io_executor executor_;
  protocol::Scope scope_;  // until run(): then the app's
  ConnectionInfo info_;
  // A larger response body goes as several body events (docs/protocol.md §5).
  std::size_t body_piece_;
  Emit emit_;
  Notifier changed_;  // the queue, the state or the window changed
  FlowControl flow_;
  std::uint64_t seq_ = 0;
  // An http.response.start kept back for the first body to join it in one
  // message (docs/protocol.md §4.2), until the app's next send() or the end
  // of the app's current run on this thread, whichever comes first.
  std::optional<protocol::HttpResponseStart> held_start_;
  // send() calls leave in call order even when one waits for the window.
  std::uint64_t next_ticket_ = 0;
  std::uint64_t serving_ = 0;
};

}  // namespace asgi_bridge::worker::detail
