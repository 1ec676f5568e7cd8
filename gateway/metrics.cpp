#include "metrics.hpp"

#include <fmt/format.h>

namespace asgi_bridge::gateway {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
constexpr std::array<const char*, 6> k_classes{"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr std::array<const char*, 2> k_protocols{"http", "websocket"};
}  // namespace

void Metrics::count_response(Protocol protocol, int status) {
  std::size_t status_class = status >= 100 && status < 600 ? static_cast<std::size_t>(status / 100) : 0;
  responses_[static_cast<std::size_t>(protocol)][status_class].fetch_add(1, relaxed);
}

void Metrics::set_workers(std::uint32_t live, std::uint64_t capacity, std::uint64_t in_flight) {
  live_workers_.store(live, relaxed);
  capacity_.store(capacity, relaxed);
  in_flight_.store(in_flight, relaxed);
}

std::string Metrics::prometheus(std::size_t open_connections) const {
  std::string out;
  auto gauge = [&out](const char* name, const char* help, auto value) {
    fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, value);
  };
  gauge("asgi_bridge_open_connections", "Client connections open now (HTTP and WebSocket).", open_connections);
  gauge("asgi_bridge_workers", "Live workers this gateway dispatches to (ZeroMQ; on Redis, those heard from).",
        live_workers());
  gauge("asgi_bridge_worker_capacity", "Connections those workers announced they serve at once.",
        capacity_.load(relaxed));
  gauge("asgi_bridge_worker_in_flight", "Connections this gateway has assigned to those workers.",
        in_flight_.load(relaxed));
  gauge("asgi_bridge_draining", "1 after SIGTERM/SIGINT, while in-flight work finishes.", draining() ? 1 : 0);
  out += "# HELP asgi_bridge_responses_total Responses sent to clients, by protocol and status class "
         "(WebSocket: the handshake's answer, 101 included).\n"
         "# TYPE asgi_bridge_responses_total counter\n";
  for (std::size_t p = 0; p < k_protocols.size(); ++p) {
    for (std::size_t c = 0; c < k_classes.size(); ++c) {
      fmt::format_to(std::back_inserter(out), "asgi_bridge_responses_total{{protocol=\"{}\",status=\"{}\"}} {}\n",
                     k_protocols[p], k_classes[c], responses_[p][c].load(relaxed));
    }
  }
  fmt::format_to(std::back_inserter(out),
                 "# HELP asgi_bridge_group_relay_dropped_total Group messages not relayed to a worker (over "
                 "--group-relay-rate or --max-message-size, or its queue full), one per worker missed.\n"
                 "# TYPE asgi_bridge_group_relay_dropped_total counter\n"
                 "asgi_bridge_group_relay_dropped_total {}\n",
                 group_dropped_.load(relaxed));
  broadcast_prometheus(out);
  return out;
}

void Metrics::broadcast_prometheus(std::string& out) const {
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP asgi_bridge_broadcast_subscriptions Channel subscriptions of open WebSockets.\n"
                 "# TYPE asgi_bridge_broadcast_subscriptions gauge\n"
                 "asgi_bridge_broadcast_subscriptions {}\n"
                 "# HELP asgi_bridge_broadcast_publishes_total Publishes this gateway fanned out to its sockets.\n"
                 "# TYPE asgi_bridge_broadcast_publishes_total counter\n"
                 "asgi_bridge_broadcast_publishes_total {}\n"
                 "# HELP asgi_bridge_broadcast_frames_total Frames queued to subscribed sockets by those publishes.\n"
                 "# TYPE asgi_bridge_broadcast_frames_total counter\n"
                 "asgi_bridge_broadcast_frames_total {}\n"
                 "# HELP asgi_bridge_broadcast_dropped_total Broadcast frames not written (slow_subscriber: queued "
                 "to a socket closed 1013), publishes refused (invalid) or not carried (bus).\n"
                 "# TYPE asgi_bridge_broadcast_dropped_total counter\n",
                 subscriptions_.load(relaxed), publishes_.load(relaxed), fanned_out_.load(relaxed));
  constexpr std::array<const char*, 3> k_reasons{"slow_subscriber", "invalid", "bus"};
  for (std::size_t r = 0; r < k_reasons.size(); ++r) {
    fmt::format_to(it, "asgi_bridge_broadcast_dropped_total{{reason=\"{}\"}} {}\n", k_reasons[r],
                   broadcast_dropped_[r].load(relaxed));
  }
}

}  // namespace asgi_bridge::gateway
