#include "shard.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "asgi_bridge/protocol/codec.hpp"
#include "log.hpp"

namespace asgi_bridge::worker::detail {

Shard::Shard(boost::asio::io_context& io, const App& app, std::string worker_id, ToBus to_bus)
    : io_(io), app_(app), worker_id_(std::move(worker_id)), to_bus_(std::move(to_bus)) {}

void Shard::start(const ConnKey& key, std::size_t link, protocol::Envelope&& first) {
  ConnectionInfo info{key.gateway_id, worker_id_, key.conn_id,
                      first.window.value_or(protocol::k_default_byte_window), first.features};
  // Encoding happens here, on the app's thread, not on the shared bus thread;
  // a large body is left out of the encoding for the bus to copy once (into a
  // shared-memory ring) or join. A connection's envelopes all name its
  // gateway. Two words captured: the std::function holds them without an
  // allocation per connection.
  auto emit = [this, link](protocol::Envelope&& envelope) {
    auto split = protocol::encode_split(std::move(envelope));  // takes the body only
    to_bus_.send(link, envelope.gateway_id,
                 bus::MessageParts{std::move(split.head), std::move(split.body), std::move(split.tail)});
  };
  connections_.emplace(key,
                       Connection::create(io_.get_executor(), std::move(*first.scope), std::move(*first.event),
                                          std::move(info), std::move(emit)));
}

void Shard::launch(const ConnKey& key) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;
  if (it->second->gone()) {
    // Nobody to answer: the app never runs. Posted: the Worker may be the
    // caller, in the middle of its own bookkeeping (--threads 1).
    boost::asio::post(io_, [this, key] { finished(key); });
    return;
  }
  boost::asio::co_spawn(io_, it->second->run(app_), [this, key](std::exception_ptr) { finished(key); });
}

void Shard::deliver(const ConnKey& key, protocol::Envelope&& envelope) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;  // its app just ended; the bus will hear of it
  auto& connection = *it->second;
  switch (envelope.kind) {
    case protocol::Kind::event: {
      auto type = protocol::event_type(*envelope.event);
      if (!connection.feed(std::move(*envelope.event))) {
        abort(key, fmt::format("event.type: {} is not expected on this connection", type));
      }
      return;
    }
    case protocol::Kind::credit:
      connection.add_credit(envelope.bytes.value_or(0));
      return;
    case protocol::Kind::error:
      log().debug("conn {}/{}: gateway error: {}", key.gateway_id, key.conn_id, envelope.message.value_or(""));
      connection.gateway_lost();
      return;
    default:
      return;
  }
}

void Shard::abort(const ConnKey& key, std::string problem) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;
  log().warn("conn {}/{}: {}", key.gateway_id, key.conn_id, problem);
  it->second->abort(std::move(problem));
}

void Shard::lost(const ConnKey& key) {
  if (auto it = connections_.find(key); it != connections_.end()) it->second->gateway_lost();
}

void Shard::shut_down_all() {
  for (auto& [key, connection] : connections_) connection->shut_down();
}

void Shard::finished(const ConnKey& key) {
  connections_.erase(key);
  to_bus_.finished(key);
}

}  // namespace asgi_bridge::worker::detail
