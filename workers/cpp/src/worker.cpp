#include "worker.hpp"

#include <csignal>
#include <random>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "asgi_bridge/protocol/codec.hpp"
#include "log.hpp"

namespace asgi_bridge::worker::detail {
namespace {

using protocol::Envelope;
using protocol::Kind;

std::string random_worker_id() {
  std::random_device device;
  return fmt::format("wk-{:08x}", device());
}

template <typename Duration>
std::chrono::steady_clock::duration ticks(Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
}

// After `bye`, how long the transports stay open so that it leaves the
// process (ZeroMQ sockets linger 0: closing drops what is still queued).
constexpr auto k_bye_flush = std::chrono::milliseconds(200);
// After the graceful timeout ended every connection, how long their apps get
// to return before we say bye anyway.
constexpr auto k_shutdown_grace = std::chrono::seconds(2);
constexpr int k_silent_intervals = 3;

bool opens(const protocol::Scope& scope, const protocol::Event& event) {
  return scope.type == protocol::ScopeType::http ? std::holds_alternative<protocol::HttpRequest>(event)
                                                 : std::holds_alternative<protocol::WebSocketConnect>(event);
}

}  // namespace

Worker::Worker(App app, Options options)
    : app_(std::move(app)),
      options_(std::move(options)),
      worker_id_(random_worker_id()),
      ticker_(bus_io_),
      shutdown_timer_(bus_io_),
      signals_(bus_io_, SIGINT, SIGTERM) {}

Worker::~Worker() {
  attach_broadcast(nullptr);
  groups().attach(nullptr);
  stop_threads();
}

int Worker::run() {
  if (options_.bus_urls.empty()) throw std::invalid_argument("no --bus URL given");
  make_shards();
  open_links();
  groups().attach(this);
  attach_broadcast(this);
  for (auto& io : app_ios_) threads_.emplace_back([io = io.get()] { io->run(); });
  for (std::size_t link = 0; link < links_.size(); ++link) announce_to(link);
  update_free_capacity();
  schedule_tick();
  wait_for_signal();
  log().info("worker {} serving {} bus link(s) (capacity {} HTTP requests, {} WebSockets, {} app thread(s))",
             worker_id_, links_.size(), options_.concurrency, options_.websocket_capacity, options_.threads);
  bus_io_.run();
  attach_broadcast(nullptr);
  groups().attach(nullptr);
  stop_threads();
  log().info("worker {} stopped", worker_id_);
  return 0;
}

void Worker::make_shards() {
  if (options_.threads <= 1) {
    // The one shard runs on the bus thread: its messages are sent at once,
    // without a post (an allocation, a lock and a copy of the gateway id each).
    Shard::ToBus to_bus{[this](std::size_t link, const std::string& gateway_id,
                               bus::MessageParts message) { send(link, gateway_id, std::move(message)); },
                        [this](ConnKey key) { connection_finished(key); }};
    shards_.push_back(std::make_unique<Shard>(bus_io_, app_, worker_id_, to_bus));
    return;
  }
  Shard::ToBus to_bus{
      [this](std::size_t link, const std::string& gateway_id, bus::MessageParts message) {
        boost::asio::post(bus_io_, [this, link, gateway_id, message = std::move(message)]() mutable {
          send(link, gateway_id, std::move(message));
        });
      },
      [this](ConnKey key) {
        boost::asio::post(bus_io_, [this, key = std::move(key)] { connection_finished(key); });
      }};
  for (unsigned i = 0; i < options_.threads; ++i) {
    auto& io = *app_ios_.emplace_back(std::make_unique<boost::asio::io_context>(1));
    work_guards_.push_back(boost::asio::make_work_guard(io));
    shards_.push_back(std::make_unique<Shard>(io, app_, worker_id_, to_bus));
  }
}

void Worker::open_links() {
  bus::CurveOptions curve;
  curve.server_key_file = options_.bus_server_key;
  curve.secret_key_file = options_.bus_secret_key;
  bus::RedisTlsOptions tls{options_.bus_tls_ca_file, options_.bus_tls_cert, options_.bus_tls_key,
                           options_.bus_tls_insecure};
  for (const auto& url : options_.bus_urls) {
    auto index = links_.size();
    links_.push_back(std::make_unique<GatewayLink>(bus_io_, url, worker_id_, options_.bus_prefix, curve, tls,
                                                   options_.bus_shared_memory));
    links_.back()->start([this, index](std::string_view payload) { on_message(index, payload); });
  }
}

void Worker::stop_threads() {
  work_guards_.clear();
  for (auto& io : app_ios_) io->stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

// --- from gateways ------------------------------------------------------------

void Worker::on_message(std::size_t link, std::string_view payload) {
  auto decoded = protocol::decode(payload);
  if (auto* error = std::get_if<protocol::DecodeError>(&decoded)) {
    if (error->unknown_kind) {
      log().debug("bus {}: ignoring a message of unknown kind: {}", links_[link]->url(), error->message);
    } else {
      log().warn("bus {}: malformed message dropped: {}", links_[link]->url(), error->message);
    }
    return;
  }
  auto& envelope = std::get<Envelope>(decoded);
  auto kind = envelope.kind;
  if (kind == Kind::group) return on_group(std::move(envelope));
  if (kind == Kind::publish) return relay_publish(link, payload);
  if (kind == Kind::ready || kind == Kind::drain) {
    log().debug("bus {}: ignoring a {} message", links_[link]->url(), protocol::kind_name(kind));
    return;
  }
  if (envelope.gateway_id.empty()) {
    log().warn("bus {}: dropped a {} message without a gateway id", links_[link]->url(), protocol::kind_name(kind));
    return;
  }
  if (departed_.count(envelope.gateway_id)) return;
  auto it = gateways_.find(envelope.gateway_id);
  if (it == gateways_.end()) {
    meet(envelope.gateway_id, link);
    it = gateways_.find(envelope.gateway_id);
  }
  it->second.last_seen = Clock::now();
  switch (kind) {
    case Kind::event:
      return on_event(it->second.link, std::move(envelope));
    case Kind::credit:
    case Kind::error:
      return to_connection(std::move(envelope));
    case Kind::bye:
      departed_.insert(envelope.gateway_id);  // a bye is final: that id will not come back
      return gateway_gone(envelope.gateway_id, "said bye", spdlog::level::info);
    default:
      return;  // heartbeat: being heard was the point
  }
}

void Worker::meet(const std::string& gateway_id, std::size_t link) {
  log().info("gateway {} on {}", gateway_id, links_[link]->url());
  gateways_[gateway_id] = Gateway{link, Clock::now(), Clock::time_point::min()};
  announce_to(link);
}

// Shared bus: we took the connection from the shared queue; saying so at
// once (credit, events 0) makes us its owner for the gateway, which then
// sends its later events to our own queue and never re-dispatches it.
void Worker::claim(std::size_t link, const ConnKey& key) {
  Envelope credit;
  credit.kind = Kind::credit;
  credit.gateway_id = key.gateway_id;
  credit.worker_id = worker_id_;
  credit.conn_id = key.conn_id;
  credit.events = 0;
  send(link, key.gateway_id, protocol::encode(credit));
}

void Worker::on_event(std::size_t link, Envelope&& envelope) {
  if (!envelope.conn_id || !envelope.seq || !envelope.event) return;
  ConnKey key{envelope.gateway_id, *envelope.conn_id};
  auto it = routes_.find(key);
  if (it == routes_.end()) {
    if (envelope.scope && *envelope.seq == 0) return open(link, std::move(envelope));
    if (!recent_.contains(key)) reply_error(link, key, "unknown connection");
    return;
  }
  auto& route = it->second;
  Shard* shard = route.shard;
  if (*envelope.seq != route.next_seq) {
    auto problem = fmt::format("event s={} out of order (expected {})", *envelope.seq, route.next_seq);
    log().warn("conn {}/{}: {}", key.gateway_id, key.conn_id, problem);
    boost::asio::post(shard->io(), [shard, key = std::move(key), problem = std::move(problem)]() mutable {
      shard->abort(key, std::move(problem));
    });
    return;
  }
  ++route.next_seq;
  deliver(shard, std::move(key), std::move(envelope));
}

void Worker::deliver(Shard* shard, ConnKey&& key, Envelope&& envelope) {
  if (shard_on_bus_thread()) return shard->deliver(key, std::move(envelope));
  boost::asio::post(shard->io(), [shard, key = std::move(key), envelope = std::move(envelope)]() mutable {
    shard->deliver(key, std::move(envelope));
  });
}

void Worker::open(std::size_t link, Envelope&& envelope) {
  ConnKey key{envelope.gateway_id, *envelope.conn_id};
  if (!opens(*envelope.scope, *envelope.event)) {
    auto type = envelope.scope->type == protocol::ScopeType::http ? "http" : "websocket";
    auto first = envelope.scope->type == protocol::ScopeType::http ? "http.request" : "websocket.connect";
    return reply_error(link, key, fmt::format("first event of a {} connection must be {}", type, first));
  }
  // A first event that lost the race with our `drain` is still served; one
  // that arrives after our `bye` cannot be.
  if (phase_ == Phase::done) return reply_error(link, key, "worker is stopping");
  bool shared = links_[link]->shared();
  log().debug("conn {}/{}: new {} connection{}", key.gateway_id, key.conn_id,
              envelope.scope->type == protocol::ScopeType::http ? "http" : "websocket", shared ? ", claimed" : "");
  if (shared) claim(link, key);
  if (auto gateway = gateways_.find(key.gateway_id); gateway != gateways_.end()) {
    gateway->second.last_busy = Clock::now();
  }
  Shard* shard = shards_[next_shard_++ % shards_.size()].get();
  auto& route = routes_[key];
  route.shard = shard;
  route.link = link;
  route.websocket = envelope.scope->type == protocol::ScopeType::websocket;
  ++owned_[route.websocket];
  if (shard_on_bus_thread()) {
    shard->start(key, link, std::move(envelope));
  } else {
    boost::asio::post(shard->io(), [shard, key, link, envelope = std::move(envelope)]() mutable {
      shard->start(key, link, std::move(envelope));
    });
  }
  if (running_[route.websocket] < limit(route.websocket)) {
    launch(key, route);
  } else {
    log().debug("conn {}/{}: waits for a free slot ({} running)", key.gateway_id, key.conn_id,
                running_[route.websocket]);
    waiting_[route.websocket].push_back(std::move(key));
  }
  update_free_capacity();
}

void Worker::to_connection(Envelope&& envelope) {
  if (!envelope.conn_id) return;
  ConnKey key{envelope.gateway_id, *envelope.conn_id};
  auto it = routes_.find(key);
  if (it == routes_.end()) return;  // a credit or error for an app that has ended: never answered
  deliver(it->second.shard, std::move(key), std::move(envelope));
}

void Worker::gateway_gone(const std::string& gateway_id, std::string_view why, spdlog::level::level_enum level) {
  std::size_t ended = 0;
  for (auto& [key, route] : routes_) {
    if (key.gateway_id != gateway_id) continue;
    boost::asio::post(route.shard->io(), [shard = route.shard, key = key] { shard->lost(key); });
    ++ended;
  }
  log().log(level, "gateway {} {}: ending its {} connection(s)", gateway_id, why, ended);
  gateways_.erase(gateway_id);
}

void Worker::reply_error(std::size_t link, const ConnKey& key, std::string message) {
  log().debug("conn {}/{}: answering error: {}", key.gateway_id, key.conn_id, message);
  Envelope error;
  error.kind = Kind::error;
  error.gateway_id = key.gateway_id;
  error.worker_id = worker_id_;
  error.conn_id = key.conn_id;
  error.message = std::move(message);
  send(link, key.gateway_id, protocol::encode(error));
}

// Another worker's group message, for our local members. Redis echoes our
// own (we delivered it locally already); ZeroMQ brings a copy through each
// gateway we share with its publisher.
void Worker::on_group(Envelope&& envelope) {
  if (envelope.worker_id == worker_id_) return;
  if (!group_sequences_.accept(envelope.worker_id, *envelope.seq)) {
    log().trace("group {}: duplicate s={} from {} dropped", *envelope.group, *envelope.seq, envelope.worker_id);
    return;
  }
  groups().deliver(*envelope.group, std::get<protocol::WebSocketSend>(*envelope.event));
}

// --- broadcast groups -------------------------------------------------------------

void Worker::publish(const std::string& group, protocol::WebSocketSend message) {
  boost::asio::post(bus_io_, [this, group, message = std::move(message)]() mutable {
    publish_now(group, std::move(message));
  });
}

void Worker::subscribe(const std::string& group) {
  boost::asio::post(bus_io_, [this, group] {
    for (auto& link : links_) link->subscribe(group);
  });
}

void Worker::unsubscribe(const std::string& group) {
  boost::asio::post(bus_io_, [this, group] {
    for (auto& link : links_) link->unsubscribe(group);
  });
}

// Numbered here, on the bus thread, so that the numbers follow the order in
// which the messages leave (receivers drop anything not above the last).
void Worker::publish_now(const std::string& group, protocol::WebSocketSend&& message) {
  Envelope envelope;
  envelope.kind = Kind::group;
  envelope.worker_id = worker_id_;
  envelope.seq = next_group_seq_++;
  envelope.group = group;
  envelope.event = std::move(message);
  auto bytes = protocol::encode(envelope);
  for (auto& link : links_) {
    if (!link->publish(group, bytes)) log().debug("bus {}: group {} message not sent", link->url(), group);
  }
}

// --- gateway broadcast channels (docs/broadcast.md) -------------------------------

// One message per ZeroMQ gateway, one Redis PUBLISH per shared link.
void Worker::publish_channel(const std::string& channel, protocol::WebSocketSend message) {
  boost::asio::post(bus_io_, [this, channel, message = std::move(message)]() mutable {
    Envelope envelope;
    envelope.kind = Kind::publish;
    envelope.worker_id = worker_id_;
    envelope.channel = channel;
    envelope.event = message;
    auto bytes = protocol::encode(envelope);
    for (auto& link : links_) {
      bool sent = link->shared() ? link->broadcast(channel, message.text, message.data) : link->send({}, bytes);
      if (!sent) log().debug("bus {}: publish to {} not sent", link->url(), channel);
    }
  });
}

// ZeroMQ: a gateway's own publish (POST /publish) goes on, unchanged, to the
// other gateways we serve; they fan it out and never relay it further.
void Worker::relay_publish(std::size_t link, std::string_view payload) {
  if (links_[link]->shared()) return;
  for (std::size_t other = 0; other < links_.size(); ++other) {
    if (other != link && !links_[other]->shared()) links_[other]->send({}, payload);
  }
}

// --- capacity ---------------------------------------------------------------------

std::size_t Worker::limit(bool websocket) const {
  return websocket ? options_.websocket_capacity : options_.concurrency;
}

void Worker::launch(const ConnKey& key, Route& route) {
  route.launched = true;
  ++running_[route.websocket];
  Shard* shard = route.shard;
  if (shard_on_bus_thread()) return shard->launch(key);
  boost::asio::post(shard->io(), [shard, key] { shard->launch(key); });
}

void Worker::launch_waiting() {
  for (bool websocket : {false, true}) {
    auto& waiting = waiting_[websocket];
    while (running_[websocket] < limit(websocket) && !waiting.empty()) {
      auto key = std::move(waiting.front());
      waiting.pop_front();
      auto it = routes_.find(key);
      if (it != routes_.end() && !it->second.launched) launch(key, it->second);
    }
  }
}

void Worker::connection_finished(const ConnKey& key) {
  auto it = routes_.find(key);
  if (it == routes_.end()) return;
  if (it->second.launched) --running_[it->second.websocket];
  --owned_[it->second.websocket];
  routes_.erase(it);
  // Only while its gateway is with us: one that comes back after a silence
  // must hear "unknown connection" for it.
  if (auto gateway = gateways_.find(key.gateway_id); gateway != gateways_.end()) {
    recent_.insert(key);
    gateway->second.last_busy = Clock::now();
  }
  launch_waiting();
  update_free_capacity();
  if ((phase_ == Phase::draining || phase_ == Phase::shutting_down) && routes_.empty()) finish();
}

// Shared links pull new connections of each kind while the worker has room
// for that kind: every connection it owns counts (running or waiting for a
// slot), and a worker that drains takes none.
void Worker::update_free_capacity() {
  std::size_t free[2] = {0, 0};
  for (bool websocket : {false, true}) {
    if (phase_ == Phase::serving && owned_[websocket] < limit(websocket)) {
      free[websocket] = limit(websocket) - owned_[websocket];
    }
  }
  for (auto& link : links_) link->set_free_capacity(free[0], free[1]);  // ZeroMQ links ignore it
}

// --- to gateways -----------------------------------------------------------------

void Worker::send(std::size_t link, const std::string& gateway_id, std::string_view bytes) {
  if (!links_[link]->send(gateway_id, bytes)) log().debug("bus {}: message to {} not sent", links_[link]->url(), gateway_id);
}

// An app's event, encoded on its thread: the bus may send it without a copy (a 64 KiB response body).
void Worker::send(std::size_t link, const std::string& gateway_id, bus::MessageParts&& message) {
  if (!links_[link]->send(gateway_id, std::move(message))) {
    log().debug("bus {}: message to {} not sent", links_[link]->url(), gateway_id);
  }
}

std::string Worker::status_message(Kind kind) const {
  Envelope envelope;
  envelope.kind = kind;
  envelope.worker_id = worker_id_;
  if (kind == Kind::ready || kind == Kind::heartbeat) {
    envelope.capacity = options_.concurrency;
    envelope.active = static_cast<std::uint32_t>(routes_.size());
    envelope.ws_capacity = options_.websocket_capacity;
  }
  return protocol::encode(envelope);
}

// A draining worker still says ready first: a gateway ignores `drain` from a
// worker it does not know, and would register it as serving on its next heartbeat.
// A shared bus has no `ready`: gateways learn of a worker from its claims.
void Worker::announce_to(std::size_t link) {
  if (links_[link]->shared()) return;
  send(link, {}, status_message(Kind::ready));
  if (phase_ != Phase::serving) send(link, {}, status_message(Kind::drain));
}

void Worker::broadcast(Kind kind) {
  auto bytes = status_message(kind);
  for (std::size_t link = 0; link < links_.size(); ++link) {
    if (!links_[link]->shared()) send(link, {}, bytes);
  }
  auto quiet_since = Clock::now() - ticks(options_.heartbeat_interval * k_silent_intervals);
  for (const auto& [id, gateway] : gateways_) {
    if (!links_[gateway.link]->shared()) continue;
    if (kind == Kind::heartbeat && gateway.last_busy < quiet_since) continue;
    send(gateway.link, id, bytes);
  }
}

// --- time and shutdown ---------------------------------------------------------

void Worker::schedule_tick() {
  ticker_.expires_after(ticks(options_.heartbeat_interval));
  ticker_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || phase_ == Phase::done) return;
    tick();
    schedule_tick();
  });
}

void Worker::tick() {
  auto now = Clock::now();
  for (const auto& [key, route] : routes_) {
    if (auto gateway = gateways_.find(key.gateway_id); gateway != gateways_.end()) gateway->second.last_busy = now;
  }
  broadcast(Kind::heartbeat);
  auto limit = now - ticks(options_.heartbeat_interval * k_silent_intervals);
  std::vector<std::string> silent;
  for (const auto& [id, gateway] : gateways_) {
    if (gateway.last_seen < limit) silent.push_back(id);
  }
  for (const auto& id : silent) {
    // On a shared bus a gateway stops heartbeating a worker that stopped
    // heartbeating it (no connections for 3 intervals): that silence is normal.
    auto& gateway = gateways_[id];
    bool idle = links_[gateway.link]->shared() && gateway.last_busy < limit;
    gateway_gone(id, fmt::format("silent for {} heartbeat intervals", k_silent_intervals),
                 idle ? spdlog::level::debug : spdlog::level::warn);
  }
}

void Worker::wait_for_signal() {
  signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
    if (ec || phase_ == Phase::done) return;
    if (phase_ == Phase::serving) {
      log().info("signal {}: draining", signal);
      begin_drain();
    } else {
      log().info("signal {}: already stopping", signal);
    }
    wait_for_signal();
  });
}

void Worker::begin_drain() {
  phase_ = Phase::draining;
  update_free_capacity();  // shared links: take no more new connections
  broadcast(Kind::drain);
  log().info("draining: waiting for {} connection(s), at most {}s", routes_.size(),
             options_.graceful_timeout.count());
  if (routes_.empty()) return finish();
  shutdown_timer_.expires_after(ticks(options_.graceful_timeout));
  shutdown_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && phase_ == Phase::draining) shut_down_connections();
  });
}

void Worker::shut_down_connections() {
  phase_ = Phase::shutting_down;
  log().warn("graceful timeout: ending {} connection(s)", routes_.size());
  for (auto& shard : shards_) {
    boost::asio::post(shard->io(), [shard = shard.get()] { shard->shut_down_all(); });
  }
  shutdown_timer_.expires_after(k_shutdown_grace);
  shutdown_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) finish();
  });
}

void Worker::finish() {
  if (phase_ == Phase::done) return;
  phase_ = Phase::done;
  broadcast(Kind::bye);
  log().info("bye");
  ticker_.cancel();
  signals_.cancel();
  shutdown_timer_.expires_after(k_bye_flush);
  shutdown_timer_.async_wait([this](const boost::system::error_code&) {
    for (auto& link : links_) link->stop();
    bus_io_.stop();
  });
}

}  // namespace asgi_bridge::worker::detail
