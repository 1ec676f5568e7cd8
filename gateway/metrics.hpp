#pragma once
// What the admin endpoint (--admin) reports at /metrics, in Prometheus' text
// format. Two kinds of owners keep the figures:
// - ShardMetrics, one per shard, bumped by that shard's sessions only: a
//   single writer, so a bump is a relaxed load and store (no locked
//   instruction, no shared cache line between shards); a scrape sums them.
// - Metrics, one per gateway: the dispatcher's figures (bus thread) and the
//   listeners' (main thread), each field with one writer as well.
// Relaxed atomics: each figure is exact on its own; a scrape needs no
// consistency between figures. Nothing here allocates on the hot path.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "asgi_bridge/bus/transport.hpp"

namespace asgi_bridge::gateway {

struct AccessRecord;

enum class Protocol { http, websocket };

// Why the gateway answered a client itself instead of the app. `limit`: a
// size limit (413, 431) or --limit-connections (503).
enum class GatewayReason {
  bad_request,
  limit,
  client_timeout,
  app_timeout,
  no_worker,
  worker_lost,
  app_error,
  invalid_response,
};
inline constexpr std::size_t k_gateway_reasons = 8;
std::string_view to_string(GatewayReason reason);

// Who ended a WebSocket.
enum class Closer { client, app, gateway };
std::string_view to_string(Closer closer);

// A counter with one writing thread: bumped without a locked instruction.
class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// Histogram bucket bounds, seconds. Requests, handshakes and bus trips: 1 ms
// to 60 s.
inline constexpr std::array<double, 15> k_latency_bounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                         0.5,   1,      2.5,   5,    10,    30,    60};
// A publish's fan-out: the same, finer around 100 ms (the broadcast latency
// target, docs/performance.md) to tell 90 ms from 140 ms.
inline constexpr std::array<double, 19> k_fan_out_bounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                                         0.1,   0.125,  0.15,  0.2,  0.25,  0.5,  1,
                                                         2.5,   5,      10,    30,   60};

// A latency histogram with fixed buckets, one writing thread.
template <const auto& Bounds>
class BasicHistogram {
 public:
  void observe(std::chrono::nanoseconds elapsed) {
    double seconds = std::chrono::duration<double>(elapsed).count();
    auto bucket = std::lower_bound(Bounds.begin(), Bounds.end(), seconds) - Bounds.begin();
    buckets_[static_cast<std::size_t>(bucket)].add();
    sum_ns_.add(static_cast<std::uint64_t>(std::max<std::int64_t>(elapsed.count(), 0)));
  }

  // Cumulative counts as Prometheus wants them, summed over histograms.
  struct Totals {
    static constexpr const auto& bounds = Bounds;
    std::array<std::uint64_t, Bounds.size() + 1> buckets{};  // the last: +Inf
    double sum = 0;
  };
  void add_to(Totals& totals) const {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      cumulative += buckets_[i].get();
      totals.buckets[i] += cumulative;
    }
    totals.sum += static_cast<double>(sum_ns_.get()) / 1e9;
  }

 private:
  std::array<Counter, Bounds.size() + 1> buckets_;  // not cumulative
  Counter sum_ns_;
};
using Histogram = BasicHistogram<k_latency_bounds>;
using FanOutHistogram = BasicHistogram<k_fan_out_bounds>;

// The WebSocket close codes counted each under its own label; any other code
// counts as "other" (bounds the series: docs/operations.md).
inline constexpr std::array<int, 14> k_close_codes{1000, 1001, 1002, 1003, 1005, 1006, 1007,
                                                   1008, 1009, 1010, 1011, 1012, 1013, 1014};

class alignas(64) ShardMetrics {
 public:
  // An exchange that ended (an HTTP request with its bytes, a WebSocket
  // handshake or close).
  void count(const AccessRecord& record);
  // A WebSocket message, as it passes.
  void websocket_message_in(std::size_t bytes) {
    ws_messages_[0].add();
    bytes_[0][1].add(bytes);
  }
  void websocket_message_out(std::size_t bytes) {
    ws_messages_[1].add();
    bytes_[1][1].add(bytes);
  }
  // A publish's walk over this shard's subscribers, writing to each idle socket.
  void observe_broadcast_fan_out(std::chrono::nanoseconds elapsed) { broadcast_fan_out_.observe(elapsed); }

 private:
  friend class Metrics;
  // [protocol][status class: 0 other, 1..5 = 1xx..5xx][origin: app, gateway]
  std::array<std::array<std::array<Counter, 2>, 6>, 2> responses_;
  std::array<std::array<Counter, k_gateway_reasons>, 2> gateway_responses_;  // [protocol][reason]
  std::array<std::array<Counter, 2>, 2> bytes_;                              // [in, out][protocol]
  std::array<Counter, 2> ws_messages_;                                       // [in, out]
  std::array<std::array<Counter, 3>, k_close_codes.size() + 1> ws_closes_;   // [code][closer]
  Histogram http_duration_;
  Histogram ws_handshake_;
  FanOutHistogram broadcast_fan_out_;
};

class Metrics {
 public:
  Metrics();

  // Dispatcher, on every tick: the workers it would dispatch to.
  void set_workers(std::uint32_t live, std::uint64_t capacity, std::uint64_t in_flight);
  void set_draining() { draining_.store(true, std::memory_order_relaxed); }
  // Dispatcher: a copy of a group message not relayed to a worker (over its
  // --group-relay-rate or --max-message-size, or its queue full).
  void count_group_dropped() { group_dropped_.add(); }
  // Dispatcher: a connection's wait for a worker, and the time from its
  // first event sent to the worker's first message about it.
  void observe_dispatch_wait(std::chrono::nanoseconds wait) { dispatch_wait_.observe(wait); }
  void observe_bus_round_trip(std::chrono::nanoseconds trip) { bus_round_trip_.observe(trip); }
  void set_dispatch_queue(std::size_t waiting) { dispatch_queue_.store(waiting, std::memory_order_relaxed); }
  // Listeners (main thread): a connection past --limit-connections answered 503.
  void count_connection_refused() { refused_.add(); }

  // Dispatcher, once per heartbeat interval: each worker's figures, for the
  // per-worker gauges. A scrape lists at most k_max_listed_workers by id (the
  // first in id order) and sums the rest under worker="other", so the series
  // stay bounded however many workers come and go.
  static constexpr std::size_t k_max_listed_workers = 32;
  struct WorkerGauge {
    std::string id;
    bool draining = false;
    std::uint64_t in_flight = 0;  // HTTP requests and WebSockets
    std::uint64_t capacity = 0;   // HTTP capacity, plus WebSocket capacity when counted apart
  };
  // Copy-assigned element by element: once the ids are known, no allocation.
  void set_worker_gauges(const std::vector<WorkerGauge>& gauges);

  // --- broadcast (docs/broadcast.md) ---
  enum class BroadcastDrop { slow_subscriber, invalid, bus, count };
  void add_subscriptions(std::int64_t delta) { subscriptions_.fetch_add(delta, std::memory_order_relaxed); }
  void count_publish() { publishes_.fetch_add(1, std::memory_order_relaxed); }
  void count_fanned_out(std::uint64_t frames) { fanned_out_.fetch_add(frames, std::memory_order_relaxed); }
  void count_broadcast_dropped(BroadcastDrop reason, std::uint64_t frames = 1) {
    broadcast_dropped_[static_cast<std::size_t>(reason)].fetch_add(frames, std::memory_order_relaxed);
  }

  // Same-host shared memory (ZeroMQ): bumped by the bus transport itself.
  bus::SharedMemoryCounters& shared_memory() { return shared_memory_; }

  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  std::uint32_t live_workers() const { return live_workers_.load(std::memory_order_relaxed); }

  // The Prometheus text exposition format (version 0.0.4), the shards' figures summed.
  std::string prometheus(std::size_t open_connections, const std::vector<const ShardMetrics*>& shards) const;

 private:
  void write_gateway(std::string& out, std::size_t open_connections) const;
  void write_workers(std::string& out) const;
  void write_broadcast(std::string& out) const;
  void write_shared_memory(std::string& out) const;
  static void write_shards(std::string& out, const std::vector<const ShardMetrics*>& shards, std::uint64_t refused);

  std::atomic<std::uint32_t> live_workers_{0};
  std::atomic<std::uint64_t> capacity_{0};
  std::atomic<std::uint64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
  std::atomic<std::int64_t> subscriptions_{0};
  std::atomic<std::uint64_t> publishes_{0};
  std::atomic<std::uint64_t> fanned_out_{0};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(BroadcastDrop::count)> broadcast_dropped_{};
  Counter group_dropped_;
  Counter refused_;
  std::atomic<std::size_t> dispatch_queue_{0};
  Histogram dispatch_wait_;
  Histogram bus_round_trip_;
  bus::SharedMemoryCounters shared_memory_;
  double start_time_seconds_;
  // Written by the bus thread once per tick, read by scrapes: off the hot path.
  mutable std::mutex worker_gauges_mutex_;
  std::vector<WorkerGauge> worker_gauges_;
};

}  // namespace asgi_bridge::gateway
