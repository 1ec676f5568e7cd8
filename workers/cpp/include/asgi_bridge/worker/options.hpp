#pragma once
// How a worker process runs: which gateways, how many connections at once,
// how many app threads. Every example worker takes the same command line.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace asgi_bridge::worker {

struct Options {
  // At least one. zmq://HOST:PORT or zmq+ipc://PATH: the one gateway bound
  // there. redis://[user:password@]HOST:PORT/DB: every gateway on that Redis
  // server (and key prefix).
  std::vector<std::string> bus_urls;
  // Redis: prefix of every key (the gateways' --bus-prefix).
  std::string bus_prefix = "asgi";
  // ZeroMQ CURVE (docs/security.md), both or neither: the gateway's public
  // key file (its NAME.key) and this worker's key pair file (NAME.key_secret,
  // from `asgi-bridge keygen`), whose public key the gateway's
  // --bus-authorized-keys lists.
  std::string bus_server_key;
  std::string bus_secret_key;
  // Redis over TLS (rediss://, docs/redis.md): the server's certificate is
  // verified against bus_tls_ca_file (empty: the system's CAs) and the URL's
  // host unless bus_tls_insecure; a client certificate and key (both or
  // neither) for servers with `tls-auth-clients yes`.
  std::string bus_tls_ca_file;
  std::string bus_tls_cert;
  std::string bus_tls_key;
  bool bus_tls_insecure = false;
  // ZeroMQ, same host (docs/protocol.md §1.1): the capacity in bytes of the
  // shared-memory ring offered to each gateway for messages of 16 KiB or
  // more; 0: none (the gateway's ring is still used). 0 or a power of two
  // from 65536 to 67108864.
  std::uint64_t bus_shared_memory = 1024 * 1024;
  // HTTP requests served at once, announced to every gateway as `capacity`.
  unsigned concurrency = 100;
  // WebSockets open at once, counted apart from HTTP requests (an idle one
  // costs a coroutine, not a request slot); announced as `ws_capacity`.
  unsigned websocket_capacity = 10000;
  // Threads running app coroutines; the bus always has one thread of its
  // own, and with 1 the apps share it.
  unsigned threads = 1;
  // trace, debug, info, warning, error, critical, off.
  std::string log_level = "info";
  // After SIGTERM/SIGINT: how long connections may take to finish before
  // they are ended for the client (HTTP: error; WebSocket: close 1012).
  std::chrono::duration<double> graceful_timeout{30.0};
  // Our heartbeat period; a gateway silent for 3 of them is dead.
  std::chrono::duration<double> heartbeat_interval{1.0};
};

struct ParsedOptions {
  std::optional<Options> options;  // empty: print nothing more, exit with exit_code
  int exit_code = 0;
};

// --bus URL (repeatable or comma-separated), --bus-prefix P, --bus-server-key PATH,
// --bus-secret-key PATH, --bus-tls-ca-file PATH, --bus-tls-cert PATH, --bus-tls-key PATH,
// --bus-tls-insecure, --bus-shared-memory BYTES, --concurrency N, --websocket-capacity N, --threads N,
// --log-level L, --graceful-timeout S, --heartbeat-interval S, --help, --version.
// Prints help or the error itself.
ParsedOptions parse_command_line(int argc, char** argv, const std::string& description, Options defaults = {});

}  // namespace asgi_bridge::worker
