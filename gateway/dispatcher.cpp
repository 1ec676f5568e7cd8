#include "dispatcher.hpp"

#include <algorithm>
#include <random>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "asgi_bridge/protocol/codec.hpp"
#include "log.hpp"

namespace asgi_bridge::gateway {
namespace {

using protocol::Envelope;
using protocol::Kind;

std::string random_gateway_id() {
  std::random_device device;
  return fmt::format("gw-{:08x}", device());
}

constexpr auto k_tick = std::chrono::milliseconds(50);
// Room for a message's envelope and headers around its largest payload.
constexpr std::size_t k_envelope_slack = 64 * 1024;

// redis://user:password@HOST:PORT/DB -> redis://HOST:PORT/DB: no secrets in logs.
std::string without_credentials(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, scheme.size()) != scheme) return std::string(url);
  auto rest = url.substr(scheme.size());
  auto at = rest.rfind('@');
  return at == std::string_view::npos ? std::string(url) : std::string(scheme) + std::string(rest.substr(at + 1));
}

// The worker's last event of a connection: after it, the worker leaving
// takes nothing from the client. `trailers`: the response start announced them.
bool is_last_event(const Envelope& envelope, bool trailers) {
  if (envelope.kind == Kind::error) return true;
  if (envelope.kind != Kind::event || !envelope.event) return false;
  const auto& event = *envelope.event;
  if (auto* body = std::get_if<protocol::HttpResponseBody>(&event)) return !body->more_body && !trailers;
  if (auto* start = std::get_if<protocol::HttpResponseStart>(&event)) {
    return start->body && !start->more_body && !trailers;  // a start with its whole body
  }
  if (auto* more = std::get_if<protocol::HttpResponseTrailers>(&event)) return !more->more_trailers;
  if (auto* body = std::get_if<protocol::WebSocketHttpResponseBody>(&event)) return !body->more_body;
  return std::holds_alternative<protocol::WebSocketClose>(event);
}

// Frees a connection's copy of its first event (clear() would keep the
// capacity for as long as the connection lives: hours on a WebSocket).
void release(std::string& bytes) { std::string().swap(bytes); }

}  // namespace

Dispatcher::Dispatcher(boost::asio::io_context& io, const Config& config, std::vector<Shard*> shards)
    : io_(io),
      from_sessions_(io, [this](ToBus&& message) { submit(std::move(message)); }),
      config_(config), shards_(std::move(shards)), gateway_id_(random_gateway_id()), ticker_(io) {
  Envelope heartbeat;
  heartbeat.kind = Kind::heartbeat;
  heartbeat.gateway_id = gateway_id_;
  heartbeat_bytes_ = protocol::encode(heartbeat);
  for (auto* shard : shards_) shard->on_fan_out([this](std::size_t frames) { metrics_.count_fanned_out(frames); });
}

void Dispatcher::start() {
  bus::TransportOptions options;
  options.role = bus::Role::gateway;
  options.identity = gateway_id_;
  options.key_prefix = config_.bus_prefix;
  // ZeroMQ refuses a larger frame itself (and drops that peer), before
  // allocating it: no worker makes us buffer more than this per message. A
  // response body piece of the largest window fits too (docs/protocol.md §5).
  options.max_message_size =
      std::max({config_.max_message_size, config_.max_body_size, std::size_t{protocol::k_largest_body_piece}}) +
      k_envelope_slack;
  options.shared_memory = config_.bus_shared_memory;
  options.shared_memory_counters = &metrics_.shared_memory();
  options.curve.secret_key_file = config_.bus_secret_key;
  options.curve.authorized_keys = config_.bus_authorized_keys;
  options.redis_tls = {config_.bus_tls_ca_file, config_.bus_tls_cert, config_.bus_tls_key, config_.bus_tls_insecure};
  options.on_refused = [this](std::string_view address, std::string_view reason) { log_refused_worker(address, reason); };
  transport_ = bus::make_transport(io_, config_.bus_url, options);
  shared_queue_ = transport_->has_shared_queue();
  transport_->watch_peers([this](std::string_view peer) { worker_lost(std::string(peer), "disconnected"); });
  transport_->watch_broadcasts([this](std::string_view channel, bool text, std::string_view data) {
    on_redis_broadcast(channel, text, data);
  });
  transport_->start([this](std::string_view peer, std::string_view payload) { on_bus_message(peer, payload); });
  next_heartbeat_ = Clock::now();
  schedule_tick();
  log::bus().info("gateway {} on bus {}", gateway_id_, without_credentials(config_.bus_url));
}

void Dispatcher::stop() {
  if (!transport_) return;
  Envelope bye;
  bye.kind = Kind::bye;
  bye.gateway_id = gateway_id_;
  auto bytes = protocol::encode(bye);
  for (auto& [id, worker] : workers_) transport_->send(id, bytes);
  ticker_.cancel();
  transport_->stop();
  transport_.reset();
}

void Dispatcher::reload_credentials() {
  if (transport_) transport_->reload_credentials();
}

// Keyed by the peer's host, not its port: every reconnect comes from a new port.
void Dispatcher::log_refused_worker(std::string_view address, std::string_view reason) {
  auto host = address.substr(0, address.rfind(':'));
  bus::LogLimiter::warn(log::bus(), limiter_, fmt::format("{} {}", host, reason.substr(0, reason.find(' '))),
                   "bus: refused worker at {}: {}", address, reason);
}

void Dispatcher::post(ToBus message) { from_sessions_.push(std::move(message)); }

void Dispatcher::submit(ToBus&& message) {
  switch (message.type) {
    case ToBus::Type::first: return on_first(std::move(message));
    case ToBus::Type::message: return on_session_message(std::move(message));
    case ToBus::Type::end: return on_end(message.conn_id);
  }
}

// --- sessions -> workers ----------------------------------------------------

void Dispatcher::on_first(ToBus&& message) {
  auto& connection = connections_[message.conn_id];
  connection.redispatchable = message.redispatchable;
  connection.websocket = message.websocket;
  if (message.window != 0) connection.window = message.window;
  if (shared_queue_ || connection.redispatchable) {
    connection.first = std::move(message.encoded).joined();  // may be sent twice, or offered
  } else {
    connection.queued.push_back(std::move(message.encoded));  // sent once: its body may be apart
  }
  connection.arrived = Clock::now();
  connection.deadline = connection.arrived + std::chrono::duration_cast<Clock::duration>(config_.dispatch_timeout);
  waiting_.push_back(message.conn_id);
  if (shared_queue_) {
    offer_again();  // those waiting for the bus go first
    offer_to_shared_queue(message.conn_id, connection);
  } else {
    dispatch_waiting();
  }
}

// Redis: every worker with free capacity may pull it; the first message of
// a worker about it (its claim) makes that worker the owner. While the bus is
// down (still connecting at start, Redis restarting) the connection waits as
// it would for a worker: offered again each tick until its dispatch deadline.
void Dispatcher::offer_to_shared_queue(std::uint64_t conn_id, Connection& connection) {
  connection.offered = transport_->offer_shared(connection.kind(), connection.first) == bus::SendStatus::sent;
  if (connection.offered) return;
  unoffered_ = true;
  bus::LogLimiter::warn(log::bus(), limiter_, "bus unavailable",
                   "conn {}: the bus is unavailable; waiting for it up to the dispatch timeout", conn_id);
}

void Dispatcher::offer_again() {
  if (!unoffered_) return;
  unoffered_ = false;
  for (auto conn_id : waiting_) {
    auto it = connections_.find(conn_id);
    if (it == connections_.end() || it->second.offered || it->second.ended || !it->second.owner.empty()) continue;
    offer_to_shared_queue(conn_id, it->second);
    if (!it->second.offered) return;  // still down: tried again next tick
  }
}

void Dispatcher::claim(std::uint64_t conn_id, Connection& connection, const std::string& worker_id) {
  auto& worker = workers_[worker_id];
  worker.last_seen = Clock::now();
  metrics_.observe_dispatch_wait(worker.last_seen - connection.arrived);
  connection.owner = worker_id;
  ++worker.assigned(connection.websocket);
  for (auto& queued : connection.queued) send_to(worker_id, std::move(queued), conn_id);
  connection.queued.clear();
}

void Dispatcher::on_session_message(ToBus&& message) {
  auto it = connections_.find(message.conn_id);
  if (it == connections_.end()) return;  // its worker is gone; the session already knows
  auto& connection = it->second;
  if (connection.orphaned) return;  // its worker finished it and left
  connection.unacked_bytes -= std::min(message.credit_bytes, connection.unacked_bytes);
  if (it->second.owner.empty()) {
    it->second.queued.push_back(std::move(message.encoded));
  } else {
    send_to(it->second.owner, std::move(message.encoded), message.conn_id);
  }
}

void Dispatcher::on_end(std::uint64_t conn_id) {
  auto it = connections_.find(conn_id);
  if (it == connections_.end()) return;
  if (shared_queue_ && it->second.owner.empty()) {
    // Redis: take the first event back from the shared queue; a worker may
    // have popped it already, and must then hear the end of it (the
    // disconnect queued last) when its claim arrives, or its app would wait
    // for the rest of a request forever.
    transport_->withdraw_shared(it->second.kind(), it->second.first);
    it->second.ended = true;
    return;
  }
  if (auto worker = workers_.find(it->second.owner); worker != workers_.end()) {
    worker->second.finished(it->second.websocket);
  }
  connections_.erase(it);  // a stale id left in waiting_ is skipped
  dispatch_waiting();
}

// Arrival order within each kind; a WebSocket waiting for WebSocket capacity
// does not hold up the HTTP requests behind it, nor the reverse.
void Dispatcher::dispatch_waiting() {
  if (shared_queue_) return;
  bool full[2] = {false, false};  // [websocket]: no worker has room for that kind
  for (auto it = waiting_.begin(); it != waiting_.end() && !(full[0] && full[1]);) {
    auto conn_id = *it;
    auto connection = connections_.find(conn_id);
    if (connection == connections_.end() || !connection->second.owner.empty()) {
      it = waiting_.erase(it);
      continue;
    }
    bool websocket = connection->second.websocket;
    std::string worker_id;
    Worker* worker = full[websocket] ? nullptr : pick_worker(websocket, worker_id);
    if (!worker) {
      full[websocket] = true;
      ++it;
      continue;
    }
    it = waiting_.erase(it);
    assign(conn_id, connection->second, worker_id, *worker);
  }
}

// Least loaded by used/limit of the connection's kind; ties go to the worker
// assigned to longest ago, which spreads a light load over every worker.
Dispatcher::Worker* Dispatcher::pick_worker(bool websocket, std::string& id_out) {
  Worker* best = nullptr;
  std::pair<std::uint64_t, std::uint64_t> best_load;
  for (auto& [id, worker] : workers_) {
    auto load = worker.load(websocket);
    if (worker.draining || load.first >= load.second) continue;
    bool better = !best;
    if (best) {
      auto lhs = load.first * best_load.second;
      auto rhs = best_load.first * load.second;
      better = lhs < rhs || (lhs == rhs && worker.last_assigned < best->last_assigned);
    }
    if (better) {
      best = &worker;
      best_load = load;
      id_out = id;
    }
  }
  return best;
}

void Dispatcher::assign(std::uint64_t conn_id, Connection& connection, const std::string& worker_id,
                        Worker& worker) {
  connection.owner = worker_id;
  ++worker.assigned(connection.websocket);
  worker.last_assigned = ++assignments_;
  connection.sent = Clock::now();
  metrics_.observe_dispatch_wait(connection.sent - connection.arrived);
  log::bus().debug("conn {} -> worker {}", conn_id, worker_id);
  // An empty `first` was sent once (on_first): it leads the queue.
  if (connection.redispatched && !connection.first.empty()) {
    send_to(worker_id, bus::MessageParts{std::move(connection.first)}, conn_id);  // not needed again
    release(connection.first);
  } else if (!connection.first.empty()) {
    send_to(worker_id, connection.first, conn_id);  // kept: may be sent again
  }
  for (auto& queued : connection.queued) send_to(worker_id, std::move(queued), conn_id);
  connection.queued.clear();
}

void Dispatcher::send_to(const std::string& worker_id, std::string_view bytes, std::uint64_t conn_id) {
  if (!transport_) return;
  on_send_status(worker_id, transport_->send(worker_id, bytes), conn_id);
}

// For a message nobody needs after this send: the transport may send it
// without a copy, or copy its body once (into a shared-memory ring).
void Dispatcher::send_to(const std::string& worker_id, bus::MessageParts&& message, std::uint64_t conn_id) {
  if (!transport_) return;
  on_send_status(worker_id, transport_->send_parts(worker_id, std::move(message)), conn_id);
}

void Dispatcher::on_send_status(const std::string& worker_id, bus::SendStatus status, std::uint64_t conn_id) {
  if (status == bus::SendStatus::sent) return;
  // Deferred: the caller may be iterating over connections or workers.
  if (status == bus::SendStatus::would_block) {
    bus::LogLimiter::warn(log::bus(), limiter_, worker_id + ": queue full",
                     "conn {}: worker {} queue is full; failing the connection", conn_id, worker_id);
    boost::asio::post(io_, [this, conn_id] { fail(conn_id, BusFailure::worker_lost); });
    return;
  }
  boost::asio::post(io_, [this, worker_id] { worker_lost(worker_id, "unreachable on the bus"); });
}

// --- workers -> sessions ----------------------------------------------------

void Dispatcher::on_bus_message(std::string_view peer, std::string_view payload) {
  auto decoded = protocol::decode(payload);
  // ZeroMQ names the sender (its routing id); Redis leaves it to the envelope.
  std::string worker_id(peer);
  if (auto* envelope = std::get_if<Envelope>(&decoded); envelope && worker_id.empty()) {
    worker_id = envelope->worker_id;
  }
  if (auto* error = std::get_if<protocol::DecodeError>(&decoded)) {
    if (error->unknown_kind) {
      log::bus().debug("worker {}: ignoring a message of unknown kind: {}", worker_id, error->message);
    } else {
      bus::LogLimiter::warn(log::bus(), limiter_, worker_id + ": malformed", "worker {}: malformed message dropped: {}",
                       worker_id, error->message);
      fail_malformed(worker_id, error->conn_id);
    }
    if (auto it = workers_.find(worker_id); it != workers_.end()) it->second.last_seen = Clock::now();
    return;
  }
  auto& envelope = std::get<Envelope>(decoded);
  switch (envelope.kind) {
    case Kind::ready:
    case Kind::heartbeat:
      return on_worker_status(worker_id, envelope);
    case Kind::drain:
      if (auto it = workers_.find(worker_id); it != workers_.end() && !it->second.draining) {
        it->second.draining = true;
        it->second.last_seen = Clock::now();
        it->second.at_drain = it->second.in_flight + it->second.ws_in_flight;
        log::bus().info("worker {} is draining with {} connection(s)", worker_id, it->second.at_drain);
      }
      return;
    case Kind::bye:
      return worker_lost(worker_id, k_said_bye);
    case Kind::event:
    case Kind::credit:
    case Kind::error:
      return on_connection_message(worker_id, std::move(envelope));
    case Kind::group:
      return relay_group(worker_id, envelope, payload);
    case Kind::publish:
      return on_publish(worker_id, std::move(envelope));
  }
}

// ZeroMQ: workers have no other path to each other, so the gateway forwards
// a group message, bytes unchanged, to every other worker it knows; each
// worker de-duplicates the copies that reach it through several gateways
// (docs/workers-cpp.md, "Chat rooms"). Best effort: a full or vanished peer
// misses it. On Redis workers publish to each other without us.
void Dispatcher::relay_group(const std::string& origin, const Envelope& envelope, std::string_view payload) {
  if (auto it = workers_.find(origin); it != workers_.end()) it->second.last_seen = Clock::now();
  if (shared_queue_) {
    log::bus().debug("worker {}: group message ignored (Redis workers publish themselves)", origin);
    return;
  }
  // Receivers order and de-duplicate by (origin, sequence): a worker naming
  // another as origin, with a high sequence, would silence that one's messages.
  if (envelope.worker_id != origin) {
    bus::LogLimiter::warn(log::bus(), limiter_, origin + ": group origin",
                     "worker {}: group message claiming to be from {} dropped", origin, envelope.worker_id);
    metrics_.count_group_dropped();
    return;
  }
  const auto& message = std::get<protocol::WebSocketSend>(*envelope.event);
  if (message.data.size() > config_.max_message_size) {
    bus::LogLimiter::warn(log::bus(), limiter_, origin + ": group size",
                     "worker {}: group message of {} bytes over --max-message-size dropped", origin, message.data.size());
    metrics_.count_group_dropped();
    return;
  }
  std::size_t over_budget = 0;
  for (auto& [id, worker] : workers_) {
    if (id == origin) continue;
    if (!group_budget_allows(worker, payload.size())) {
      ++over_budget;
      metrics_.count_group_dropped();
    } else if (transport_->send(id, payload) != bus::SendStatus::sent) {
      metrics_.count_group_dropped();
      log::bus().debug("worker {}: group message from {} not relayed (queue full or gone)", id, origin);
    }
  }
  if (over_budget > 0) {
    bus::LogLimiter::warn(log::bus(), limiter_, origin + ": group budget",
                     "worker {}: group message not relayed to {} worker(s) over their --group-relay-rate", origin,
                     over_budget);
  }
}

// What a peer may make us queue towards each worker: ZeroMQ's high-water
// mark counts messages, whatever their size, so bytes are bounded here. A
// message larger than the whole budget still goes alone, once per second.
bool Dispatcher::group_budget_allows(Worker& worker, std::size_t bytes) {
  if (worker.group_bytes > 0 && worker.group_bytes + bytes > config_.group_relay_rate) return false;
  worker.group_bytes += bytes;
  return true;
}

// --- broadcast (docs/broadcast.md) ---------------------------------------------

// A worker's publish (ZeroMQ: each worker sends it to every gateway it is
// connected to; a gateway never forwards it further).
void Dispatcher::on_publish(const std::string& origin, Envelope&& envelope) {
  if (auto it = workers_.find(origin); it != workers_.end()) it->second.last_seen = Clock::now();
  auto& message = std::get<protocol::WebSocketSend>(*envelope.event);
  fan_out(std::make_shared<const Publication>(
              Publication{std::move(*envelope.channel), std::move(message.data), message.text}),
          origin);
}

// Redis: a PUBLISH on PREFIX:broadcast:CHANNEL or PREFIX:broadcast-bin:CHANNEL,
// by anyone (a worker, this or another gateway's POST /publish, redis-cli).
void Dispatcher::on_redis_broadcast(std::string_view channel, bool text, std::string_view data) {
  fan_out(std::make_shared<const Publication>(Publication{std::string(channel), std::string(data), text}), "redis");
}

// To every shard: one mailbox push each, in order, the payload shared.
void Dispatcher::fan_out(PublicationPtr publication, std::string_view origin) {
  if (auto problem = publication_problem(*publication, config_.max_message_size); !problem.empty()) {
    bus::LogLimiter::warn(log::bus(), limiter_, fmt::format("{}: publish", origin), "{}: publish dropped: {}", origin,
                     problem);
    metrics_.count_broadcast_dropped(Metrics::BroadcastDrop::invalid);
    return;
  }
  metrics_.count_publish();
  for (auto* shard : shards_) shard->post_publish(publication);
}

void Dispatcher::publish(PublicationPtr publication) {
  boost::asio::post(io_, [this, publication = std::move(publication)] { publish_here(publication); });
}

// Redis: published on the bus, it comes back to every gateway, this one
// included. ZeroMQ: fanned out here, and relayed through a worker to the
// other gateways that worker serves.
void Dispatcher::publish_here(const PublicationPtr& publication) {
  if (!transport_) return;
  if (shared_queue_) {
    if (transport_->broadcast(publication->channel, publication->text, publication->data) != bus::SendStatus::sent) {
      bus::LogLimiter::warn(log::bus(), limiter_, "publish: bus", "publish to {} lost: Redis is unavailable",
                       publication->channel);
      metrics_.count_broadcast_dropped(Metrics::BroadcastDrop::bus);
    }
    return;
  }
  fan_out(publication, "admin");
  relay_publish(publication);
}

// ZeroMQ: gateways know nothing of each other, workers know every gateway
// they serve. One live worker (in turn) gets the publish with our id in `g`
// and sends it on to its other gateways (docs/broadcast.md, "ZeroMQ").
void Dispatcher::relay_publish(const PublicationPtr& publication) {
  std::vector<const std::string*> live;
  for (const auto& [id, worker] : workers_) {
    if (!worker.draining) live.push_back(&id);
  }
  if (live.empty()) {
    log::bus().debug("publish to {}: no worker to relay it to other gateways", publication->channel);
    return;
  }
  Envelope relay;
  relay.kind = Kind::publish;
  relay.gateway_id = gateway_id_;
  relay.channel = publication->channel;
  protocol::WebSocketSend message;
  message.data = publication->data;
  message.text = publication->text;
  relay.event = std::move(message);
  const auto& worker_id = *live[relays_++ % live.size()];
  if (transport_->send(worker_id, protocol::encode(relay)) != bus::SendStatus::sent) {
    bus::LogLimiter::warn(log::bus(), limiter_, "publish: relay", "publish to {}: worker {} cannot relay it",
                     publication->channel, worker_id);
    metrics_.count_broadcast_dropped(Metrics::BroadcastDrop::bus);
  }
}

void Dispatcher::on_worker_status(const std::string& worker_id, const Envelope& envelope) {
  auto [it, added] = workers_.try_emplace(worker_id);
  auto& worker = it->second;
  worker.last_seen = Clock::now();
  worker.capacity = envelope.capacity.value_or(worker.capacity);
  if (envelope.ws_capacity) worker.ws_capacity = envelope.ws_capacity;
  if (added && worker.ws_capacity) {
    log::bus().info("worker {} joined (capacity {} HTTP requests, {} WebSockets)", worker_id, worker.capacity,
                    *worker.ws_capacity);
  } else if (added) {
    log::bus().info("worker {} joined (capacity {})", worker_id, worker.capacity);
  }
  publish_worker_gauges();  // /readyz knows at once, not at the next tick
  if (added) publish_worker_list();
  dispatch_waiting();
}

void Dispatcher::on_connection_message(const std::string& worker_id, Envelope&& envelope) {
  auto worker = workers_.find(worker_id);
  if (worker != workers_.end()) worker->second.last_seen = Clock::now();
  if (!envelope.conn_id) return;
  auto conn_id = *envelope.conn_id;
  auto it = connections_.find(conn_id);
  if (it != connections_.end() && it->second.owner.empty() && shared_queue_) {
    claim(conn_id, it->second, worker_id);
    if (it->second.ended) return on_end(conn_id);  // claim() handed it what the session sent
  }
  if (it == connections_.end() || it->second.owner != worker_id) {
    if (envelope.kind == Kind::event) {
      log::bus().debug("conn {}: event from worker {} for an unknown connection", conn_id, worker_id);
      Envelope error;
      error.kind = Kind::error;
      error.gateway_id = gateway_id_;
      error.conn_id = conn_id;
      error.message = "unknown connection";
      transport_->send(worker_id, protocol::encode(error));
    }
    return;
  }
  auto& connection = it->second;
  if (!connection.acknowledged) {
    connection.acknowledged = true;
    release(connection.first);
    if (connection.sent != Clock::time_point{}) metrics_.observe_bus_round_trip(Clock::now() - connection.sent);
  }
  if (envelope.kind == Kind::event && !within_window(worker_id, conn_id, connection, envelope)) return;
  if (envelope.event) {
    if (auto* start = std::get_if<protocol::HttpResponseStart>(&*envelope.event)) connection.trailers = start->trailers;
    connection.answered = connection.answered || std::holds_alternative<protocol::HttpResponseStart>(*envelope.event) ||
                          std::holds_alternative<protocol::WebSocketAccept>(*envelope.event) ||
                          std::holds_alternative<protocol::WebSocketHttpResponseStart>(*envelope.event);
  }
  if (worker != workers_.end() && worker->second.draining) note_while_draining(worker->second, envelope);
  connection.finished = connection.finished || is_last_event(envelope, connection.trailers);
  envelope.worker_id = worker_id;  // the sender as the bus knows it, for the session's log lines
  shards_[Shard::index_of(conn_id) % shards_.size()]->post_event(conn_id, WorkerMessage::from(std::move(envelope)));
}

// A worker may send a payload while what we have not acknowledged is within
// the window we granted (its send may then take it past by one message).
// One that sends more ignores flow control: for a client that does not read
// we would queue whatever it sends.
bool Dispatcher::within_window(const std::string& worker_id, std::uint64_t conn_id, Connection& connection,
                               const Envelope& envelope) {
  auto bytes = envelope.event ? protocol::payload_size(*envelope.event) : 0;
  if (bytes == 0) return true;
  if (connection.unacked_bytes > connection.window) {
    bus::LogLimiter::warn(log::bus(), limiter_, worker_id + ": window",
                     "conn {}: worker {} sent past its byte window ({} bytes unacknowledged, window {}); "
                     "failing the connection",
                     conn_id, worker_id, connection.unacked_bytes, connection.window);
    reject(worker_id, conn_id, "byte window exceeded");
    return false;
  }
  connection.unacked_bytes += bytes;
  return true;
}

// --- failures and time ----------------------------------------------------

// A worker's garbage about one connection fails that connection (502, abort
// or 1011), never more; the worker is told so it can drop the instance.
void Dispatcher::fail_malformed(const std::string& worker_id, std::optional<std::uint64_t> conn_id) {
  if (!conn_id) return;
  auto it = connections_.find(*conn_id);
  if (it == connections_.end() || it->second.owner != worker_id) return;
  reject(worker_id, *conn_id, "malformed message");
}

// Fails the connection for its worker's fault; the worker is told so it
// can drop the instance.
void Dispatcher::reject(const std::string& worker_id, std::uint64_t conn_id, const char* why) {
  Envelope error;
  error.kind = Kind::error;
  error.gateway_id = gateway_id_;
  error.conn_id = conn_id;
  error.message = why;
  transport_->send(worker_id, protocol::encode(error));
  fail(conn_id, BusFailure::worker_lost);
}

void Dispatcher::fail(std::uint64_t conn_id, BusFailure failure) {
  auto it = connections_.find(conn_id);
  if (it == connections_.end()) return;
  if (auto worker = workers_.find(it->second.owner); worker != workers_.end()) {
    worker->second.finished(it->second.websocket);
  }
  connections_.erase(it);
  shards_[Shard::index_of(conn_id) % shards_.size()]->post_event(conn_id, failure);
}

// What a draining worker does to its connections itself, for its departure line.
void Dispatcher::note_while_draining(Worker& worker, const Envelope& envelope) {
  if (envelope.kind == Kind::error) {
    ++worker.errors_while_draining;
  } else if (const auto* close = envelope.event ? std::get_if<protocol::WebSocketClose>(&*envelope.event) : nullptr) {
    ++worker.closes_while_draining[close->code];
  }
}

void Dispatcher::worker_lost(const std::string& worker_id, std::string_view why) {
  auto found = workers_.find(worker_id);
  if (found == workers_.end()) return;
  Worker worker = std::move(found->second);
  workers_.erase(found);
  publish_worker_gauges();
  publish_worker_list();
  std::vector<std::uint64_t> failed;
  Departure departure;
  for (auto& [conn_id, connection] : connections_) {
    if (connection.owner != worker_id || connection.orphaned) continue;
    if (connection.finished) {
      // Its session is writing the worker's last event: the client loses nothing.
      connection.orphaned = true;
      ++departure.finished;
    } else if (!connection.acknowledged && connection.redispatchable && !connection.redispatched) {
      connection.owner.clear();
      connection.redispatched = true;
      connection.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(config_.dispatch_timeout);
      waiting_.push_front(conn_id);
      if (shared_queue_) offer_to_shared_queue(conn_id, connection);
      ++departure.requeued;
    } else {
      failed.push_back(conn_id);
      ++(!connection.answered ? departure.unanswered
                              : connection.websocket ? departure.websockets : departure.aborted);
    }
  }
  log_departure(worker_id, why, worker, departure);
  for (auto conn_id : failed) {
    log::bus().info("conn {}: failed with worker {}", conn_id, worker_id);
    fail(conn_id, BusFailure::worker_lost);
  }
  dispatch_waiting();
}

// Says what the clients saw: a worker that said bye after finishing its
// connections simply left; one that vanished is news, more so with losses.
// A worker that drained says too how many connections it had then and how
// it ended those its graceful timeout cut (WebSocket closes by code, errors).
void Dispatcher::log_departure(const std::string& worker_id, std::string_view why, const Worker& worker,
                               const Departure& departure) {
  bool said_bye = why == k_said_bye;
  std::string line = fmt::format("worker {} {}", worker_id, said_bye ? "left" : fmt::format("lost ({})", why));
  auto plural = [](std::size_t count) { return count == 1 ? "" : "s"; };
  if (worker.draining) {
    line += fmt::format(" after draining {} connection{}", worker.at_drain, plural(worker.at_drain));
    for (auto [code, count] : worker.closes_while_draining) {
      line += fmt::format(", {} WebSocket{} closed {} by the worker", count, plural(count), code);
    }
    if (worker.errors_while_draining > 0) {
      line += fmt::format(", {} ended with an error by the worker (500, abort or 1011)", worker.errors_while_draining);
    }
  }
  std::string failures;
  const std::pair<std::size_t, const char*> how[] = {{departure.unanswered, "unanswered: 502"},
                                                     {departure.aborted, "HTTP response aborted"},
                                                     {departure.websockets, "WebSocket closed 1011"}};
  for (auto [count, what] : how) {
    if (count > 0) failures += fmt::format("{}{} {}", failures.empty() ? "" : ", ", count, what);
  }
  std::string_view separator = ": ";
  const std::pair<std::size_t, std::string> outcomes[] = {
      {departure.finished, "finished"},
      {departure.requeued, "re-dispatched"},
      {departure.failed(), fmt::format("failed ({})", failures)}};
  for (const auto& [count, what] : outcomes) {
    if (count == 0) continue;
    line += fmt::format("{}{} connection{} {}", separator, count, plural(count), what);
    separator = ", ";
  }
  auto level = departure.failed() > 0 || !said_bye ? spdlog::level::warn : spdlog::level::info;
  // On a shared queue a worker that stops serving this gateway simply goes quiet: not news.
  if (shared_queue_ && departure.finished + departure.requeued + departure.failed() == 0 && !worker.draining) {
    level = spdlog::level::debug;
  }
  log::bus().log(level, "{}", line);
}

void Dispatcher::schedule_tick() {
  ticker_.expires_after(k_tick);
  ticker_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !transport_) return;
    tick();
    schedule_tick();
  });
}

void Dispatcher::tick() {
  auto now = Clock::now();
  auto interval = std::chrono::duration_cast<Clock::duration>(config_.heartbeat_interval);
  // Silence is checked every tick, so a dead worker is found within a tick
  // of its third silent interval; heartbeats still go once per interval.
  bool heartbeat_due = now >= next_heartbeat_;
  if (heartbeat_due) next_heartbeat_ = now + interval;
  std::vector<std::string> silent;
  for (auto& [id, worker] : workers_) {
    if (now - worker.last_seen > 3 * interval) {
      silent.push_back(id);
    } else if (heartbeat_due) {
      transport_->send(id, heartbeat_bytes_);
    }
  }
  for (auto& id : silent) worker_lost(id, "silent for 3 heartbeat intervals");
  if (now - group_second_ >= std::chrono::seconds(1)) {
    group_second_ = now;
    for (auto& [id, worker] : workers_) worker.group_bytes = 0;
  }
  if (shared_queue_) offer_again();
  while (!waiting_.empty()) {
    auto it = connections_.find(waiting_.front());
    if (it != connections_.end() && it->second.owner.empty() && it->second.deadline > now) break;
    auto conn_id = waiting_.front();
    waiting_.pop_front();
    if (it != connections_.end() && it->second.owner.empty() && it->second.ended) {
      connections_.erase(it);  // its session is gone and no worker took it
    } else if (it != connections_.end() && it->second.owner.empty()) {
      bus::LogLimiter::warn(log::bus(), limiter_, "dispatch timeout",
                       "conn {}: no worker with capacity within the dispatch timeout", conn_id);
      if (shared_queue_) transport_->withdraw_shared(it->second.kind(), it->second.first);
      fail(conn_id, BusFailure::no_capacity);
    }
  }
  publish_worker_gauges();
  publish_queue_depth();
  if (heartbeat_due) publish_worker_list();
}

// Connections waiting for a worker; ids of ones that ended are skipped.
void Dispatcher::publish_queue_depth() {
  std::size_t depth = 0;
  for (auto conn_id : waiting_) {
    auto it = connections_.find(conn_id);
    depth += it != connections_.end() && it->second.owner.empty() && !it->second.ended ? 1 : 0;
  }
  metrics_.set_dispatch_queue(depth);
}

// The per-worker gauges, once per heartbeat interval: their figures move
// with every request, a scrape comes every few seconds at most.
void Dispatcher::publish_worker_list() {
  worker_list_.resize(workers_.size());
  std::size_t i = 0;
  for (const auto& [id, worker] : workers_) {
    auto& gauge = worker_list_[i++];
    gauge.id.assign(id);
    gauge.draining = worker.draining;
    gauge.in_flight = std::uint64_t{worker.in_flight} + worker.ws_in_flight;
    gauge.capacity = std::uint64_t{worker.capacity} + worker.ws_capacity.value_or(0);
  }
  metrics_.set_worker_gauges(worker_list_);
}

void Dispatcher::publish_worker_gauges() {
  std::uint32_t live = 0;
  std::uint64_t capacity = 0;
  std::uint64_t in_flight = 0;
  for (const auto& [id, worker] : workers_) {
    if (worker.draining) continue;
    ++live;
    capacity += worker.capacity;
    in_flight += worker.in_flight + worker.ws_in_flight;
  }
  metrics_.set_workers(live, capacity, in_flight);
}

}  // namespace asgi_bridge::gateway
