#include "config.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <thread>
#include <type_traits>

#include <CLI/CLI.hpp>
#include <boost/asio/ip/address.hpp>

#include "asgi_bridge/bus/transport.hpp"

namespace asgi_bridge::gateway {
namespace {

// HOST:PORT, [V6]:PORT, or a host alone (V4, V6 bare or in brackets): Daphne's
// `-b HOST -p PORT` and uvicorn's `--host HOST --port PORT` mean the same as
// `--bind HOST:PORT`. A host alone takes `default_port`; none: a port is required.
BindAddress parse_bind(const std::string& text, const std::string& option, std::optional<unsigned short> default_port) {
  BindAddress bind;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || (close + 1 < text.size() && text[close + 1] != ':')) {
      throw CLI::ValidationError(option, "expected [V6]:PORT, got '" + text + "'");
    }
    bind.host = text.substr(1, close - 1);
    if (close + 1 < text.size()) port_text = text.substr(close + 2);
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    auto colon = text.find(':');
    bind.host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  } else {
    bind.host = text;  // V4, a name, or a bare V6 address: no port
  }
  if (port_text.empty() && !default_port) throw CLI::ValidationError(option, "expected HOST:PORT, got '" + text + "'");
  if (port_text.empty()) {
    bind.port = *default_port;
    return bind;
  }
  int port = -1;
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (error != std::errc{} || end != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    throw CLI::ValidationError(option, "bad port in '" + text + "'");
  }
  bind.port = static_cast<unsigned short>(port);
  return bind;
}

// systemd socket activation (sd_listen_fds(3)): LISTEN_FDS sockets from
// descriptor 3 on, meant for us when LISTEN_PID is our pid. The variables
// are removed so that nothing we start takes them for its own.
std::vector<int> socket_activation_fds() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* count = std::getenv("LISTEN_FDS");
  if (!pid || !count) return {};
  std::vector<int> fds;
  if (std::string(pid) == std::to_string(::getpid())) {
    int n = 0;
    std::string_view text(count);
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (error != std::errc{} || end != text.data() + text.size() || n < 0 || n > 1024) {
      throw CLI::ValidationError("LISTEN_FDS", "expected a number of sockets, got '" + std::string(text) + "'");
    }
    for (int fd = 3; fd < 3 + n; ++fd) fds.push_back(fd);
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  return fds;
}

// sockaddr_un holds 108 bytes, the terminating NUL included.
constexpr std::size_t k_max_unix_path = 107;

void check_unix_socket(const std::string& path) {
  if (path.empty()) throw CLI::ValidationError("--unix-socket", "empty path");
  if (path.size() > k_max_unix_path) {
    throw CLI::ValidationError("--unix-socket", "path longer than 107 bytes: '" + path + "'");
  }
}

// Files are read at startup (tls_context.cpp); here only the pairing.
void check_tls_pair(const Config& config) {
  if (!config.tls_cert.empty() && config.tls_key.empty()) throw CLI::ValidationError("--tls-cert", "needs --tls-key too");
  if (config.tls_cert.empty() && !config.tls_key.empty()) throw CLI::ValidationError("--tls-key", "needs --tls-cert too");
}

// zmq://HOST:PORT whose HOST is a loopback address. Anything else (0.0.0.0,
// *, an interface, a host name other than localhost) may be reachable from
// other hosts.
bool loopback_zmq(const std::string& url) {
  auto hostport = std::string_view(url).substr(6);
  auto host = hostport.substr(0, hostport.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  boost::system::error_code error;
  auto address = boost::asio::ip::make_address(std::string(host), error);
  return !error && address.is_loopback();
}

// The --bus-tls-* options belong to rediss:// URLs; a client certificate
// needs its key.
void check_bus_tls(const Config& config) {
  bool tls = config.bus_url.rfind("rediss://", 0) == 0;
  bool any = !config.bus_tls_ca_file.empty() || !config.bus_tls_cert.empty() || !config.bus_tls_key.empty() ||
             config.bus_tls_insecure;
  if (any && !tls) throw CLI::ValidationError("--bus-tls-*", "the TLS options apply to rediss:// buses only");
  if (config.bus_tls_cert.empty() != config.bus_tls_key.empty()) {
    throw CLI::ValidationError(config.bus_tls_cert.empty() ? "--bus-tls-key" : "--bus-tls-cert",
                               "a client certificate needs both --bus-tls-cert and --bus-tls-key");
  }
}

// Secure by default (docs/security.md): a bus other hosts can reach needs
// CURVE, or the operator's explicit --bus-insecure.
void check_bus_security(const Config& config) {
  bool curve = !config.bus_secret_key.empty();
  if (curve != !config.bus_authorized_keys.empty()) {
    throw CLI::ValidationError(curve ? "--bus-secret-key" : "--bus-authorized-keys",
                               "CURVE needs both --bus-secret-key and --bus-authorized-keys");
  }
  // An unknown scheme is left to the bus's own check, which names the URL.
  bool redis = config.bus_url.rfind("redis://", 0) == 0 || config.bus_url.rfind("rediss://", 0) == 0;
  if (curve && redis) throw CLI::ValidationError("--bus-secret-key", "CURVE keys apply to zmq:// and zmq+ipc:// buses only");
  check_bus_tls(config);
  if (curve || config.bus_insecure || config.bus_url.rfind("zmq://", 0) != 0 || loopback_zmq(config.bus_url)) return;
  throw CLI::ValidationError(
      "--bus", "'" + config.bus_url +
                   "' is reachable from other hosts, and without CURVE any of them could pose as a worker and "
                   "read every request: give --bus-secret-key and --bus-authorized-keys (keys from "
                   "'asgi-bridge keygen'), or --bus-insecure to run unauthenticated anyway");
}

// --max-body-size reads ASGI_BRIDGE_MAX_BODY_SIZE from the environment.
std::string env_name(const std::string& option) {
  std::string env = "ASGI_BRIDGE_";
  for (char c : option) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return env;
}

// Every number of the command line or the environment: CLI11 reads "-1" into
// an unsigned option as its wrap-around (a limit of 2^64 - 1, i.e. none), lets
// "nan" and "inf" through its number validators, and names their bound with
// 309 digits. Validators see the text, from the command line and the
// environment alike.
CLI::Validator number_within(double min, double max, const std::string& range) {
  auto check = [min, max, range](std::string& text) -> std::string {
    double value = 0;
    if (!CLI::detail::lexical_cast(text, value) || !std::isfinite(value) || value < min || value > max) {
      return "expected a number " + range + ", got '" + text + "'";
    }
    return {};
  };
  return CLI::Validator(check, "");
}

// Times: about 31 years at most, so that converting one to the clock's
// nanoseconds cannot overflow.
constexpr double k_max_seconds = 1e9;
constexpr double k_max_number = std::numeric_limits<double>::max();

// The option's names for CLI11: --NAME first (errors name it), then
// `aliases`, other programs' names for it ("-b,--host"). One option answers
// to all of them; its environment variable is named after NAME alone.
std::string names(const std::string& name, const std::string& aliases) {
  return aliases.empty() ? "--" + name : "--" + name + "," + aliases;
}

template <typename T>
CLI::Option* add(CLI::App& app, const std::string& name, T& value, const std::string& help,
                 const std::string& aliases = "") {
  auto* option = app.add_option(names(name, aliases), value, help)->envname(env_name(name))->capture_default_str();
  if constexpr (std::is_arithmetic_v<T>) option->check(number_within(0, k_max_number, "from 0 up"));
  return option;
}

void add_seconds(CLI::App& app, const std::string& name, Seconds& value, const std::string& help,
                 const std::string& aliases = "") {
  auto* option = app.add_option_function<double>(
      names(name, aliases), [&value](double s) { value = Seconds(s); }, help + " (seconds)");
  option->envname(env_name(name))
      ->check(number_within(0, k_max_seconds, "of seconds from 0 to 1e9"))
      ->default_str(std::to_string(value.count()));
}

// As uvicorn's and daphne's --ws-per-message-deflate: a value, true or false.
void add_ws_deflate(CLI::App& app, Config& config) {
  app.add_option("--ws-per-message-deflate", config.ws_per_message_deflate,
                 "WebSocket permessage-deflate for clients that offer it: true or false")
      ->envname(env_name("ws-per-message-deflate"))
      ->default_str("true");
  add(app, "ws-deflate-server-window-bits", config.ws_deflate_server_window_bits,
      "permessage-deflate: window of our compressor, 2^N bytes (9-15)")
      ->check(number_within(9, 15, "from 9 to 15"));
  add(app, "ws-deflate-client-window-bits", config.ws_deflate_client_window_bits,
      "permessage-deflate: window asked of clients that offer client_max_window_bits, 2^N bytes (9-15)")
      ->check(number_within(9, 15, "from 9 to 15"));
  app.add_flag("--ws-deflate-server-no-context-takeover", config.ws_deflate_server_no_context_takeover,
               "permessage-deflate: compress each message on its own")
      ->envname(env_name("ws-deflate-server-no-context-takeover"));
  app.add_flag("--ws-deflate-client-no-context-takeover", config.ws_deflate_client_no_context_takeover,
               "permessage-deflate: ask clients to compress each message on its own")
      ->envname(env_name("ws-deflate-client-no-context-takeover"));
}

void add_http2(CLI::App& app, Config& config) {
  app.add_option("--http2", config.http2,
                 "HTTP/2: h2 by ALPN on TLS listeners, h2c with prior knowledge on plain ones: true or false")
      ->envname(env_name("http2"))
      ->default_str("true");
  app.add_flag("--no-http2{false}", config.http2, "HTTP/1.1 only (as --http2 false)");
  add(app, "http2-max-concurrent-streams", config.http2_max_concurrent_streams,
      "HTTP/2: streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS)")
      ->check(number_within(1, 10000, "from 1 to 10000"));
}

}  // namespace

std::string_view version() { return ASGI_BRIDGE_VERSION; }

ParseOutcome parse_config(int argc, char** argv) {
  Config config;
  config.threads = std::max(1u, std::thread::hardware_concurrency());
  CLI::App app{"asgi-bridge: HTTP/1.1 and WebSocket gateway to ASGI workers over a message bus"};
  app.set_version_flag("--version", "asgi-bridge " + std::string(version()));
  // Aliases are the names Daphne and uvicorn users type (docs/operations.md).
  std::vector<std::string> binds;
  add(app, "bind", binds,
      "HOST:PORT to listen on, or HOST on --port (repeatable, or comma-separated; default 127.0.0.1:8000 unless "
      "--unix-socket or --fd)",
      "-b,--host")
      ->delimiter(',');
  unsigned port = k_default_port;
  auto* port_option = add(app, "port", port, "port of a --bind/--host given without one; alone: 127.0.0.1:PORT", "-p")
                          ->check(number_within(0, 65535, "from 0 to 65535"));
  add(app, "unix-socket", config.unix_sockets, "Unix domain socket PATH to listen on (repeatable, or comma-separated)",
      "-u,--uds")
      ->delimiter(',');
  add(app, "fd", config.inherited_fds,
      "listening socket inherited as descriptor N (repeatable, or comma-separated); systemd's LISTEN_FDS are taken "
      "too")
      ->delimiter(',')
      ->check(number_within(0, std::numeric_limits<int>::max(), "from 0 up"));
  add(app, "backlog", config.backlog, "listen() backlog of --bind and --unix-socket listeners")
      ->check(number_within(1, 65535, "from 1 to 65535"));
  add(app, "bus", config.bus_url,
      "bus URL: zmq://HOST:PORT, zmq+ipc://PATH, redis://[user:password@]HOST:PORT/DB, rediss://... (TLS)");
  add(app, "bus-prefix", config.bus_prefix, "Redis key prefix");
  add(app, "bus-secret-key", config.bus_secret_key,
      "ZeroMQ CURVE: this gateway's key pair file (NAME.key_secret from 'asgi-bridge keygen'); needs --bus-authorized-keys");
  add(app, "bus-authorized-keys", config.bus_authorized_keys,
      "ZeroMQ CURVE: the workers' public keys, a directory of NAME.key files or one file; reread on SIGHUP");
  app.add_flag("--bus-insecure", config.bus_insecure,
               "allow a zmq:// bus on a non-loopback address without CURVE")
      ->envname("ASGI_BRIDGE_BUS_INSECURE");
  add(app, "bus-shared-memory", config.bus_shared_memory,
      "ZeroMQ, same host: bytes of the shared-memory ring for large messages to each worker (0: none; a power of two "
      "from 65536 to 67108864)")
      ->check(CLI::Validator([](std::string& text) { return bus::shared_memory_problem(text); }, ""));
  add(app, "bus-tls-ca-file", config.bus_tls_ca_file,
      "rediss://: CA file (PEM) to verify the Redis server's certificate; default: the system's CAs");
  add(app, "bus-tls-cert", config.bus_tls_cert, "rediss://: client certificate (PEM), for tls-auth-clients; needs --bus-tls-key");
  add(app, "bus-tls-key", config.bus_tls_key, "rediss://: the client certificate's private key (PEM)");
  app.add_flag("--bus-tls-insecure", config.bus_tls_insecure,
               "rediss://: do not verify the Redis server's certificate nor its host name")
      ->envname("ASGI_BRIDGE_BUS_TLS_INSECURE");
  add(app, "threads", config.threads, "I/O threads")->check(CLI::Range(1u, 256u));
  add_seconds(app, "http-timeout", config.http_timeout, "504 when a response has not started; 0 = off", "-t");
  add_seconds(app, "dispatch-timeout", config.dispatch_timeout, "503 when no worker takes a connection");
  add_seconds(app, "websocket-connect-timeout", config.websocket_connect_timeout,
              "504 when the app neither accepts nor closes", "--websocket_connect_timeout");
  add_seconds(app, "websocket-timeout", config.websocket_timeout, "maximum WebSocket lifetime; 0 = off",
              "--websocket_timeout");
  add_seconds(app, "ping-interval", config.ping_interval, "a WebSocket silent this long gets a ping; 0 = off",
              "--ws-ping-interval");
  add_seconds(app, "ping-timeout", config.ping_timeout, "close 1011 a WebSocket whose pong is this late",
              "--ws-ping-timeout");
  add_seconds(app, "keepalive-timeout", config.keepalive_timeout, "close idle keep-alive connections",
              "--timeout-keep-alive");
  add_seconds(app, "request-timeout", config.request_timeout,
              "408 when a request head is not whole this long after its first byte, or a body sends nothing this long");
  add(app, "min-body-rate", config.min_body_rate,
      "408 when a request body averages fewer bytes/s than this, past --min-body-rate-grace; 0 = off");
  add_seconds(app, "min-body-rate-grace", config.min_body_rate_grace,
              "time a request body gets before --min-body-rate applies");
  add_seconds(app, "drain-timeout", config.drain_timeout, "on SIGTERM, time given to in-flight work",
              "--timeout-graceful-shutdown");
  add_seconds(app, "drain-delay", config.drain_delay,
              "on SIGTERM, /readyz answers 503 this long while the gateway still serves, then it drains");
  add_seconds(app, "heartbeat-interval", config.heartbeat_interval, "bus heartbeat; a worker silent 3 intervals is dead");
  add(app, "max-body-size", config.max_body_size, "request body limit in bytes (413)");
  add(app, "max-header-size", config.max_header_size, "request head limit in bytes, CRLFs included (431)")
      ->check(number_within(1, k_max_number, "from 1 up"));
  add(app, "max-header-count", config.max_header_count, "request head limit in header fields (431)")
      ->check(number_within(1, k_max_number, "from 1 up"));
  add(app, "max-message-size", config.max_message_size, "WebSocket message limit in bytes (close 1009)",
      "--ws-max-size");
  add_ws_deflate(app, config);
  add_http2(app, config);
  add(app, "group-relay-rate", config.group_relay_rate,
      "ZeroMQ: bytes of broadcast-group messages relayed to each worker per second; the rest are dropped");
  add(app, "broadcast-queue", config.broadcast_queue,
      "broadcast frames queued to one WebSocket that is not keeping up; past it the socket is closed 1013")
      ->check(number_within(1, 1e6, "from 1 to 1000000"));
  add(app, "publish-token", config.publish_token,
      "bearer token the admin endpoint's POST /publish requires (default: none: whoever reaches --admin may publish)");
  add(app, "limit-connections", config.limit_connections,
      "client connections open at once; past it 503 and close (0: the descriptor limit less a reserve)",
      "--limit-concurrency");
  add(app, "root-path", config.root_path, "ASGI root_path given to the app");
  add(app, "server-name", config.server_name, "Server header value (empty: none)", "-s");
  add(app, "log-level", config.log_level, "trace, debug, info, warning, error, critical")
      ->check(CLI::IsMember({"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}));
  std::string admin;
  add(app, "admin", admin, "HOST:PORT of the admin endpoint: /healthz, /readyz, /metrics (default: off)");
  add(app, "tls-cert", config.tls_cert,
      "PEM certificate chain: serve HTTPS/WSS on the --bind and TCP --fd listeners (needs --tls-key)", "--ssl-certfile");
  add(app, "tls-key", config.tls_key, "PEM private key of --tls-cert", "--ssl-keyfile");
  add(app, "log-format", config.log_format, "text, or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--access-log", config.access_log,
               "log one line per HTTP exchange and two per WebSocket (answered, closed)")
      ->envname("ASGI_BRIDGE_ACCESS_LOG");
  std::string access_log_format = "combined";
  add(app, "access-log-format", access_log_format,
      "combined (Apache/nginx, extra fields appended as key=value) or daphne; --log-format json adds every field "
      "as its own key")
      ->check(CLI::IsMember({"combined", "daphne"}));
  app.add_flag("--proxy-headers", config.proxy_headers,
               "take the client address and scheme from X-Forwarded-For/-Proto/-Port sent by a trusted proxy")
      ->envname("ASGI_BRIDGE_PROXY_HEADERS");
  std::string trusted_proxies(k_default_trusted_proxies);
  add(app, "trusted-proxies", trusted_proxies,
      "comma-separated addresses/CIDR networks (or *) whose X-Forwarded-* and Daphne-Root-Path headers "
      "--proxy-headers believes",
      "--forwarded-allow-ips");
  try {
    app.parse(argc, argv);
    for (const auto& b : binds) config.binds.push_back(parse_bind(b, "--bind", static_cast<unsigned short>(port)));
    for (const auto& path : config.unix_sockets) check_unix_socket(path);
    for (int fd : socket_activation_fds()) config.inherited_fds.push_back(fd);
    // As Daphne: 127.0.0.1:8000 when nothing else is given, 127.0.0.1:PORT
    // when a port is, whatever else is.
    bool no_other = config.unix_sockets.empty() && config.inherited_fds.empty();
    if (config.binds.empty() && (no_other || port_option->count() > 0)) {
      config.binds.push_back({"127.0.0.1", static_cast<unsigned short>(port)});
    }
    if (!admin.empty()) config.admin = parse_bind(admin, "--admin", std::nullopt);
    config.access_log_format = parse_access_log_format(access_log_format);
    check_tls_pair(config);
    check_bus_security(config);
    if (config.heartbeat_interval.count() <= 0) throw CLI::ValidationError("--heartbeat-interval", "must be > 0");
    try {
      config.trusted_proxies = TrustedProxies::parse(trusted_proxies);
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("--trusted-proxies", e.what());
    }
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e)};
  }
  return {config, 0};
}

}  // namespace asgi_bridge::gateway
