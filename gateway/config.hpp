#pragma once
// The gateway's settings: parsed once in main from the command line and
// ASGI_BRIDGE_* environment variables, then passed by const& everywhere.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "access_log.hpp"
#include "proxy_headers.hpp"

namespace asgi_bridge::gateway {

using Seconds = std::chrono::duration<double>;

// --trusted-proxies when not given: loopback, as uvicorn's --forwarded-allow-ips.
inline constexpr std::string_view k_default_trusted_proxies = "127.0.0.1,::1";

struct BindAddress {
  std::string host;
  unsigned short port = 0;
};

// --port, and the port of a --bind/--host given without one (Daphne's and
// uvicorn's default).
inline constexpr unsigned short k_default_port = 8000;

struct Config {
  std::vector<BindAddress> binds;
  std::vector<std::string> unix_sockets;  // --unix-socket paths
  // Listening sockets inherited from the parent: --fd, and systemd's socket
  // activation (LISTEN_FDS/LISTEN_PID).
  std::vector<int> inherited_fds;
  unsigned backlog = 4096;                // listen() backlog (SOMAXCONN; the kernel caps it)
  std::optional<BindAddress> admin;       // --admin: /healthz, /readyz, /metrics
  std::string bus_url = "zmq://127.0.0.1:5555";
  std::string bus_prefix = "asgi";        // Redis key prefix
  // ZeroMQ CURVE (docs/security.md): our key pair and the workers' public
  // keys; both or neither. Without them a non-loopback zmq:// bus needs
  // --bus-insecure.
  std::string bus_secret_key;
  std::string bus_authorized_keys;
  bool bus_insecure = false;
  // ZeroMQ, same host: the capacity of the shared-memory ring for large
  // messages to each worker that offers one (docs/protocol.md §1.1); 0: none.
  std::uint64_t bus_shared_memory = 1024 * 1024;
  // Redis over TLS (rediss://, docs/redis.md): the server's certificate is
  // verified against this CA file (empty: the system's CAs) and the URL's
  // host unless bus_tls_insecure; cert and key (both or neither) for servers
  // with `tls-auth-clients yes`.
  std::string bus_tls_ca_file;
  std::string bus_tls_cert;
  std::string bus_tls_key;
  bool bus_tls_insecure = false;
  unsigned threads = 1;
  Seconds http_timeout{60};               // response not started: 504; 0 = off
  Seconds dispatch_timeout{5};            // no worker with capacity: 503
  Seconds websocket_connect_timeout{5};   // no accept/close: 504
  Seconds websocket_timeout{0};           // lifetime of a WebSocket; 0 = off
  Seconds ping_interval{20};
  Seconds ping_timeout{30};
  Seconds keepalive_timeout{5};           // idle keep-alive connection
  Seconds request_timeout{60};            // whole request head; each wait for body bytes
  // A request body must average this many bytes/s over the time the gateway
  // waits for it, after a grace period: 408 (Apache's MinRate); 0 = off.
  std::uint64_t min_body_rate = 500;
  Seconds min_body_rate_grace{10};
  Seconds drain_timeout{10};              // SIGTERM: time in-flight work gets
  // SIGTERM: /readyz answers 503 this long while the gateway still serves, so a load
  // balancer takes it out of rotation before it stops accepting.
  Seconds drain_delay{0};
  Seconds heartbeat_interval{1};
  std::size_t max_body_size = 100 * 1024 * 1024;
  std::size_t max_header_size = 16 * 1024;  // request line + fields, as received
  std::size_t max_header_count = 100;       // fields in a request head (as nginx and uvicorn)
  std::size_t max_message_size = 16 * 1024 * 1024;
  // WebSocket permessage-deflate (RFC 7692), agreed when a client offers it;
  // the defaults and what they cost per socket: docs/decisions.md.
  bool ws_per_message_deflate = true;
  int ws_deflate_server_window_bits = 12;  // our compressor's window, 2^N bytes (9-15)
  int ws_deflate_client_window_bits = 12;  // asked of clients whose offer lets us choose (9-15)
  bool ws_deflate_server_no_context_takeover = false;
  bool ws_deflate_client_no_context_takeover = false;
  // HTTP/2 (docs/http2.md): h2 by ALPN on TLS listeners, h2c with prior
  // knowledge on plain ones; streams open at once on one connection.
  bool http2 = true;
  std::size_t http2_max_concurrent_streams = 100;
  std::size_t group_relay_rate = 16 * 1024 * 1024;  // ZeroMQ: group bytes relayed to each worker per second
  // Broadcast (docs/broadcast.md): publishes queued to one socket before it
  // is closed 1013; the bearer token POST /publish needs (empty: none).
  std::size_t broadcast_queue = 1024;
  std::string publish_token;
  // Client connections open at once; past it 503 and close. 0: the
  // descriptor limit less a reserve for the bus and admin (fd_limit.hpp).
  std::size_t limit_connections = 0;
  std::string root_path;
  std::string server_name = "asgi-bridge";
  std::string log_level = "info";
  std::string log_format = "text";       // text | json
  bool access_log = false;
  AccessLogFormat access_log_format = AccessLogFormat::combined;
  bool proxy_headers = false;             // believe X-Forwarded-* from trusted_proxies
  TrustedProxies trusted_proxies = TrustedProxies::parse(k_default_trusted_proxies);
  // --tls-cert/--tls-key: both or neither; TLS on the --bind listeners only.
  std::string tls_cert;  // PEM certificate chain, the server's own first
  std::string tls_key;   // PEM private key
  bool tls() const { return !tls_cert.empty(); }
};

// The version every program prints for --version.
std::string_view version();

// Parses argv; on --help, --version or an invalid option prints the message and
// returns the process exit code instead of a Config.
struct ParseOutcome {
  std::optional<Config> config;
  int exit_code = 0;
};
ParseOutcome parse_config(int argc, char** argv);

}  // namespace asgi_bridge::gateway
