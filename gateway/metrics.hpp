#pragma once
// What the admin endpoint (--admin) reports: counters bumped by the sessions
// on every shard and gauges refreshed by the dispatcher on the bus thread.
// Relaxed atomics: each figure is exact on its own; a scrape needs no
// consistency between figures.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace asgi_bridge::gateway {

enum class Protocol { http, websocket };

class Metrics {
 public:
  // A response status sent to a client: an HTTP response (the app's or our
  // own 4xx/5xx), or a WebSocket handshake's answer (101, 403, the app's
  // denial status, 5xx).
  void count_response(Protocol protocol, int status);
  // Dispatcher, on every tick: the workers it would dispatch to.
  void set_workers(std::uint32_t live, std::uint64_t capacity, std::uint64_t in_flight);
  void set_draining() { draining_.store(true, std::memory_order_relaxed); }
  // Dispatcher: a copy of a group message not relayed to a worker (over its
  // --group-relay-rate or --max-message-size, or its queue full).
  void count_group_dropped() { group_dropped_.fetch_add(1, std::memory_order_relaxed); }

  // --- broadcast (docs/broadcast.md) ---
  enum class BroadcastDrop { slow_subscriber, invalid, bus, count };
  void add_subscriptions(std::int64_t delta) { subscriptions_.fetch_add(delta, std::memory_order_relaxed); }
  void count_publish() { publishes_.fetch_add(1, std::memory_order_relaxed); }
  void count_fanned_out(std::uint64_t frames) { fanned_out_.fetch_add(frames, std::memory_order_relaxed); }
  void count_broadcast_dropped(BroadcastDrop reason, std::uint64_t frames = 1) {
    broadcast_dropped_[static_cast<std::size_t>(reason)].fetch_add(frames, std::memory_order_relaxed);
  }

  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  std::uint32_t live_workers() const { return live_workers_.load(std::memory_order_relaxed); }

  // The Prometheus text exposition format (version 0.0.4).
  std::string prometheus(std::size_t open_connections) const;

 private:
  // [protocol][status class 1xx..5xx, index 0: anything else]
  std::array<std::array<std::atomic<std::uint64_t>, 6>, 2> responses_{};
  std::atomic<std::uint32_t> live_workers_{0};
  std::atomic<std::uint64_t> capacity_{0};
  std::atomic<std::uint64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::atomic<std::uint64_t> group_dropped_{0};
  std::atomic<std::int64_t> subscriptions_{0};
  std::atomic<std::uint64_t> publishes_{0};
  std::atomic<std::uint64_t> fanned_out_{0};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(BroadcastDrop::count)> broadcast_dropped_{};
  void broadcast_prometheus(std::string& out) const;
};

}  // namespace asgi_bridge::gateway
