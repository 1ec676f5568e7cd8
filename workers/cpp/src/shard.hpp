#pragma once
// One app thread's share of the connections. Every method runs on the
// shard's own io_context thread (the Worker posts to it); the connections and
// their app coroutines never leave that thread, so nothing here is locked.
// With --threads 1 the shard's io_context is the bus thread's own.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>

#include "asgi_bridge/bus/transport.hpp"
#include "asgi_bridge/protocol/envelope.hpp"
#include "asgi_bridge/worker/app.hpp"
#include "conn_key.hpp"
#include "connection.hpp"

namespace asgi_bridge::worker::detail {

class Shard {
 public:
  // Both are called on the shard's thread and must hand their (owned)
  // arguments to the bus thread.
  struct ToBus {
    // An encoded message for gateway `gateway_id`, which spoke on `link`.
    std::function<void(std::size_t link, const std::string& gateway_id, bus::MessageParts message)> send;
    std::function<void(ConnKey key)> finished;  // an app instance ended
  };

  Shard(boost::asio::io_context& io, const App& app, std::string worker_id, ToBus to_bus);
  boost::asio::io_context& io() { return io_; }

  // A first event (with scope, of the scope's type): creates the connection,
  // which queues its events until launch().
  void start(const ConnKey& key, std::size_t link, protocol::Envelope&& first);
  // A --concurrency slot is free: runs the app, unless its client already left.
  void launch(const ConnKey& key);
  // A later event, a credit or an error of a connection.
  void deliver(const ConnKey& key, protocol::Envelope&& envelope);
  // The gateway broke the protocol on this connection.
  void abort(const ConnKey& key, std::string problem);
  // Its gateway is gone (bye, silence).
  void lost(const ConnKey& key);
  // The worker's graceful timeout ran out.
  void shut_down_all();

 private:
  void finished(const ConnKey& key);

  boost::asio::io_context& io_;
  const App& app_;
  std::string worker_id_;
  ToBus to_bus_;
  std::unordered_map<ConnKey, std::shared_ptr<Connection>, ConnKeyHash> connections_;
};

}  // namespace asgi_bridge::worker::detail
