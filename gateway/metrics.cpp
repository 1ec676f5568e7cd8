#include "metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

#include "access_log.hpp"

namespace asgi_bridge::gateway {

namespace {
constexpr auto relaxed = std::memory_order_relaxed;
constexpr std::array<const char*, 6> k_classes{"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr std::array<const char*, 2> k_protocols{"http", "websocket"};
constexpr std::array<const char*, 2> k_origins{"app", "gateway"};
constexpr std::array<GatewayReason, k_gateway_reasons> k_reasons{
    GatewayReason::bad_request, GatewayReason::limit,     GatewayReason::client_timeout, GatewayReason::app_timeout,
    GatewayReason::no_worker,   GatewayReason::worker_lost, GatewayReason::app_error,    GatewayReason::invalid_response};
constexpr std::array<Closer, 3> k_closers{Closer::client, Closer::app, Closer::gateway};

std::size_t status_class(int status) {
  return status >= 100 && status < 600 ? static_cast<std::size_t>(status / 100) : 0;
}

std::size_t close_code_index(int code) {
  auto it = std::find(k_close_codes.begin(), k_close_codes.end(), code);
  return static_cast<std::size_t>(it - k_close_codes.begin());  // k_close_codes.size(): "other"
}

using Out = std::back_insert_iterator<std::string>;

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(Out(out), "# HELP {0} {1}\n# TYPE {0} {2}\n", name, help, type);
}

void gauge(std::string& out, std::string_view name, std::string_view help, auto value) {
  header(out, name, "gauge", help);
  fmt::format_to(Out(out), "{} {}\n", name, value);
}

template <typename Totals>
void histogram(std::string& out, std::string_view name, std::string_view help, const Totals& totals) {
  header(out, name, "histogram", help);
  for (std::size_t i = 0; i < Totals::bounds.size(); ++i) {
    fmt::format_to(Out(out), "{}_bucket{{le=\"{}\"}} {}\n", name, Totals::bounds[i], totals.buckets[i]);
  }
  fmt::format_to(Out(out), "{0}_bucket{{le=\"+Inf\"}} {1}\n{0}_sum {2}\n{0}_count {1}\n", name, totals.buckets.back(),
                 totals.sum);
}

// Prometheus label values escape backslash, double quote and newline.
std::string label_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// The standard process_* metrics, from /proc (Linux).
struct ProcessFigures {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double started_after_boot = 0;  // seconds
  std::size_t open_fds = 0;
  double max_fds = 0;
};

ProcessFigures read_process() {
  ProcessFigures figures;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  // The command name (field 2) may hold spaces: fields count from its ')'.
  auto close = line.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    for (int index = 3; fields >> field; ++index) {
      if (index == 22) figures.started_after_boot = std::stod(field) / ticks;                   // since boot
      if (index == 23) figures.virtual_bytes = std::stod(field);
      if (index == 24) {
        figures.resident_bytes = std::stod(field) * page;
        break;
      }
    }
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    ++figures.open_fds;
  }
  // getrusage, not /proc's clock ticks: exact to the microsecond.
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    figures.cpu_seconds = seconds(usage.ru_utime) + seconds(usage.ru_stime);
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) figures.max_fds = static_cast<double>(limit.rlim_cur);
  return figures;
}

// Seconds since the epoch the machine booted at (/proc/stat's btime).
double boot_time() {
  std::ifstream stat("/proc/stat");
  std::string key;
  double value = 0;
  while (stat >> key) {
    if (key == "btime" && stat >> value) return value;
    stat.ignore(1 << 16, '\n');
  }
  return 0;
}

}  // namespace

std::string_view to_string(GatewayReason reason) {
  switch (reason) {
    case GatewayReason::bad_request: return "bad_request";
    case GatewayReason::limit: return "limit";
    case GatewayReason::client_timeout: return "client_timeout";
    case GatewayReason::app_timeout: return "app_timeout";
    case GatewayReason::no_worker: return "no_worker";
    case GatewayReason::worker_lost: return "worker_lost";
    case GatewayReason::app_error: return "app_error";
    case GatewayReason::invalid_response: return "invalid_response";
  }
  return "unknown";
}

std::string_view to_string(Closer closer) {
  switch (closer) {
    case Closer::client: return "client";
    case Closer::app: return "app";
    case Closer::gateway: return "gateway";
  }
  return "unknown";
}

// --- ShardMetrics ---------------------------------------------------------------

void ShardMetrics::count(const AccessRecord& record) {
  auto protocol = static_cast<std::size_t>(record.kind == AccessRecord::Kind::http ? Protocol::http : Protocol::websocket);
  if (record.kind == AccessRecord::Kind::websocket_close) {
    ws_closes_[close_code_index(record.status)][static_cast<std::size_t>(record.closed_by)].add();
    return;
  }
  if (record.kind == AccessRecord::Kind::http) {
    http_duration_.observe(record.duration);
    bytes_[0][protocol].add(record.bytes_received);
    bytes_[1][protocol].add(record.bytes_sent);
  } else {
    ws_handshake_.observe(record.duration);
  }
  if (record.status == 0) return;  // nothing was sent: the client left first
  std::size_t origin = record.gateway_reason ? 1 : 0;
  responses_[protocol][status_class(record.status)][origin].add();
  if (record.gateway_reason) gateway_responses_[protocol][static_cast<std::size_t>(*record.gateway_reason)].add();
}

// --- Metrics --------------------------------------------------------------------

Metrics::Metrics() {
  auto figures = read_process();
  auto boot = boot_time();
  start_time_seconds_ = boot > 0 ? boot + figures.started_after_boot
                                 : std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void Metrics::set_workers(std::uint32_t live, std::uint64_t capacity, std::uint64_t in_flight) {
  live_workers_.store(live, relaxed);
  capacity_.store(capacity, relaxed);
  in_flight_.store(in_flight, relaxed);
}

void Metrics::set_worker_gauges(const std::vector<WorkerGauge>& gauges) {
  std::lock_guard lock(worker_gauges_mutex_);
  worker_gauges_ = gauges;
}

std::string Metrics::prometheus(std::size_t open_connections, const std::vector<const ShardMetrics*>& shards) const {
  std::string out;
  out.reserve(32 * 1024);
  write_gateway(out, open_connections);
  write_workers(out);
  write_shards(out, shards, refused_.get());
  write_broadcast(out);
  write_shared_memory(out);
  return out;
}

void Metrics::write_gateway(std::string& out, std::size_t open_connections) const {
  header(out, "asgi_bridge_build_info", "gauge", "The gateway's version, as a label; always 1.");
  fmt::format_to(Out(out), "asgi_bridge_build_info{{version=\"{}\"}} 1\n", ASGI_BRIDGE_VERSION);
  auto process = read_process();
  header(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
  fmt::format_to(Out(out), "process_cpu_seconds_total {}\n", process.cpu_seconds);
  gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", process.resident_bytes);
  gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", process.virtual_bytes);
  gauge(out, "process_open_fds", "Open file descriptors.", process.open_fds);
  gauge(out, "process_max_fds", "The open file descriptor limit (RLIMIT_NOFILE).", process.max_fds);
  gauge(out, "process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.",
        start_time_seconds_);
  gauge(out, "asgi_bridge_open_connections", "Client connections open now (HTTP and WebSocket).", open_connections);
  gauge(out, "asgi_bridge_workers", "Live workers this gateway dispatches to (ZeroMQ; on Redis, those heard from).",
        live_workers());
  gauge(out, "asgi_bridge_worker_capacity", "Connections those workers announced they serve at once.",
        capacity_.load(relaxed));
  gauge(out, "asgi_bridge_worker_in_flight", "Connections this gateway has assigned to those workers.",
        in_flight_.load(relaxed));
  gauge(out, "asgi_bridge_draining", "1 after SIGTERM/SIGINT, while in-flight work finishes.", draining() ? 1 : 0);
  gauge(out, "asgi_bridge_dispatch_queue_depth", "New connections waiting for a worker with capacity (ZeroMQ).",
        dispatch_queue_.load(relaxed));
  Histogram::Totals totals;
  dispatch_wait_.add_to(totals);
  histogram(out, "asgi_bridge_dispatch_wait_seconds",
            "Time a new connection waited for a worker (ZeroMQ: until assigned; Redis: until claimed).", totals);
  totals = {};
  bus_round_trip_.add_to(totals);
  histogram(out, "asgi_bridge_bus_round_trip_seconds",
            "Time from a connection's first event sent to its worker to the worker's first message about it.", totals);
  header(out, "asgi_bridge_group_relay_dropped_total", "counter",
         "Group messages not relayed to a worker (over --group-relay-rate or --max-message-size, or its queue full), "
         "one per worker missed.");
  fmt::format_to(Out(out), "asgi_bridge_group_relay_dropped_total {}\n", group_dropped_.get());
}

// Bounded: k_max_listed_workers series per family, plus "other".
void Metrics::write_workers(std::string& out) const {
  std::vector<WorkerGauge> gauges;
  {
    std::lock_guard lock(worker_gauges_mutex_);  // the bus thread waits for a copy at most
    gauges = worker_gauges_;
  }
  std::vector<const WorkerGauge*> sorted;
  for (const auto& worker : gauges) sorted.push_back(&worker);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->id < b->id; });
  WorkerGauge other{"other", false, 0, 0};
  std::size_t others = 0;
  std::vector<const WorkerGauge*> listed;
  for (const auto* worker : sorted) {
    if (listed.size() < k_max_listed_workers) {
      listed.push_back(worker);
    } else {
      ++others;
      other.in_flight += worker->in_flight;
      other.capacity += worker->capacity;
    }
  }
  if (others > 0) listed.push_back(&other);
  auto family = [&](std::string_view name, std::string_view help, auto value_of) {
    header(out, name, "gauge", help);
    for (const auto* worker : listed) {
      fmt::format_to(Out(out), "{}{{worker=\"{}\"}} {}\n", name, label_value(worker->id), value_of(*worker));
    }
  };
  family("asgi_bridge_worker_connected",
         "Per worker: 1 while it takes new connections, 0 while it drains (worker=\"other\": how many more).",
         [&](const WorkerGauge& w) { return &w == &other ? others : (w.draining ? 0 : 1); });
  family("asgi_bridge_worker_connections_in_flight", "Per worker: connections this gateway assigned to it.",
         [](const WorkerGauge& w) { return w.in_flight; });
  family("asgi_bridge_worker_connections_capacity", "Per worker: connections it announced it serves at once.",
         [](const WorkerGauge& w) { return w.capacity; });
}

void Metrics::write_shards(std::string& out, const std::vector<const ShardMetrics*>& shards, std::uint64_t refused) {
  auto sum = [&shards](auto member) {
    std::uint64_t total = 0;
    for (const auto* shard : shards) total += member(*shard).get();
    return total;
  };
  header(out, "asgi_bridge_responses_total", "counter",
         "Responses sent to clients, by protocol, status class and origin (the app, or the gateway itself). "
         "WebSocket: the handshake's answer, 101 included.");
  for (std::size_t p = 0; p < k_protocols.size(); ++p) {
    for (std::size_t c = 0; c < k_classes.size(); ++c) {
      for (std::size_t o = 0; o < k_origins.size(); ++o) {
        auto value = sum([&](const ShardMetrics& s) -> const Counter& { return s.responses_[p][c][o]; });
        if (p == 0 && c == 5 && o == 1) value += refused;  // --limit-connections' 503s
        fmt::format_to(Out(out), "asgi_bridge_responses_total{{protocol=\"{}\",status=\"{}\",origin=\"{}\"}} {}\n",
                       k_protocols[p], k_classes[c], k_origins[o], value);
      }
    }
  }
  header(out, "asgi_bridge_gateway_responses_total", "counter",
         "Responses the gateway made itself, by protocol and reason.");
  for (std::size_t p = 0; p < k_protocols.size(); ++p) {
    for (auto reason : k_reasons) {
      auto r = static_cast<std::size_t>(reason);
      auto value = sum([&](const ShardMetrics& s) -> const Counter& { return s.gateway_responses_[p][r]; });
      if (p == 0 && reason == GatewayReason::limit) value += refused;
      fmt::format_to(Out(out), "asgi_bridge_gateway_responses_total{{protocol=\"{}\",reason=\"{}\"}} {}\n",
                     k_protocols[p], to_string(reason), value);
    }
  }
  constexpr std::array<const char*, 2> directions{"received", "sent"};
  for (std::size_t d = 0; d < 2; ++d) {
    auto name = fmt::format("asgi_bridge_{}_bytes_total", directions[d]);
    header(out, name, "counter",
           d == 0 ? "Bytes received from clients: HTTP request heads and bodies, WebSocket message payloads."
                  : "Bytes sent to clients: HTTP response heads and bodies, WebSocket message payloads.");
    for (std::size_t p = 0; p < k_protocols.size(); ++p) {
      fmt::format_to(Out(out), "{}{{protocol=\"{}\"}} {}\n", name, k_protocols[p],
                     sum([&](const ShardMetrics& s) -> const Counter& { return s.bytes_[d][p]; }));
    }
  }
  header(out, "asgi_bridge_websocket_messages_total", "counter", "WebSocket messages, by direction.");
  for (std::size_t d = 0; d < 2; ++d) {
    fmt::format_to(Out(out), "asgi_bridge_websocket_messages_total{{direction=\"{}\"}} {}\n", d == 0 ? "in" : "out",
                   sum([&](const ShardMetrics& s) -> const Counter& { return s.ws_messages_[d]; }));
  }
  header(out, "asgi_bridge_websocket_closes_total", "counter",
         "Accepted WebSockets ended, by close code (1006: no close frame; unlisted codes: other) and who closed.");
  for (std::size_t c = 0; c <= k_close_codes.size(); ++c) {
    auto code = c < k_close_codes.size() ? std::to_string(k_close_codes[c]) : std::string("other");
    for (auto closer : k_closers) {
      auto value = sum([&](const ShardMetrics& s) -> const Counter& { return s.ws_closes_[c][static_cast<std::size_t>(closer)]; });
      fmt::format_to(Out(out), "asgi_bridge_websocket_closes_total{{code=\"{}\",closed_by=\"{}\"}} {}\n", code,
                     to_string(closer), value);
    }
  }
  Histogram::Totals totals;
  for (const auto* shard : shards) shard->http_duration_.add_to(totals);
  histogram(out, "asgi_bridge_http_request_duration_seconds",
            "HTTP exchanges, from the request head read to the response's end, gateway-made responses included.", totals);
  totals = {};
  for (const auto* shard : shards) shard->ws_handshake_.add_to(totals);
  histogram(out, "asgi_bridge_websocket_handshake_hold_seconds",
            "WebSocket upgrades held until the app answered (accept, close, denial) or the gateway did.", totals);
  FanOutHistogram::Totals fan_out;
  for (const auto* shard : shards) shard->broadcast_fan_out_.add_to(fan_out);
  histogram(out, "asgi_bridge_broadcast_fan_out_seconds",
            "Publishes, per I/O thread: the walk over its subscribed sockets, the frame written to each idle one.",
            fan_out);
}

// docs/broadcast.md.
void Metrics::write_broadcast(std::string& out) const {
  gauge(out, "asgi_bridge_broadcast_subscriptions", "Channel subscriptions of open WebSockets.",
        subscriptions_.load(relaxed));
  header(out, "asgi_bridge_broadcast_publishes_total", "counter", "Publishes this gateway fanned out to its sockets.");
  fmt::format_to(Out(out), "asgi_bridge_broadcast_publishes_total {}\n", publishes_.load(relaxed));
  header(out, "asgi_bridge_broadcast_frames_total", "counter", "Frames those publishes wrote or queued to subscribed sockets.");
  fmt::format_to(Out(out), "asgi_bridge_broadcast_frames_total {}\n", fanned_out_.load(relaxed));
  header(out, "asgi_bridge_broadcast_dropped_total", "counter",
         "Broadcast frames not written (slow_subscriber: queued to a socket closed 1013), publishes refused "
         "(invalid) or not carried (bus).");
  constexpr std::array<const char*, 3> k_drop_reasons{"slow_subscriber", "invalid", "bus"};
  for (std::size_t r = 0; r < k_drop_reasons.size(); ++r) {
    fmt::format_to(Out(out), "asgi_bridge_broadcast_dropped_total{{reason=\"{}\"}} {}\n", k_drop_reasons[r],
                   broadcast_dropped_[r].load(relaxed));
  }
}

// docs/protocol.md §1.1: large bus messages through shared-memory rings.
void Metrics::write_shared_memory(std::string& out) const {
  header(out, "asgi_bridge_bus_shared_memory_messages_total", "counter",
         "Bus messages that went through a same-host shared-memory ring instead of the ZeroMQ socket.");
  fmt::format_to(Out(out), "asgi_bridge_bus_shared_memory_messages_total{{direction=\"sent\"}} {}\n",
                 shared_memory_.sent_messages.load(relaxed));
  fmt::format_to(Out(out), "asgi_bridge_bus_shared_memory_messages_total{{direction=\"received\"}} {}\n",
                 shared_memory_.received_messages.load(relaxed));
  header(out, "asgi_bridge_bus_shared_memory_bytes_total", "counter", "The bytes of those messages.");
  fmt::format_to(Out(out), "asgi_bridge_bus_shared_memory_bytes_total{{direction=\"sent\"}} {}\n",
                 shared_memory_.sent_bytes.load(relaxed));
  fmt::format_to(Out(out), "asgi_bridge_bus_shared_memory_bytes_total{{direction=\"received\"}} {}\n",
                 shared_memory_.received_bytes.load(relaxed));
}

}  // namespace asgi_bridge::gateway
