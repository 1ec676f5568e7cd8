#include "asgi_bridge/worker/options.hpp"

#include <cctype>
#include <cmath>

#include <CLI/CLI.hpp>

#include "asgi_bridge/bus/transport.hpp"

namespace asgi_bridge::worker {
namespace {

// --graceful-timeout reads ASGI_BRIDGE_GRACEFUL_TIMEOUT, as in the Python worker.
std::string env_name(const std::string& option) {
  std::string env = "ASGI_BRIDGE_";
  for (char c : option) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return env;
}

template <typename T>
CLI::Option* add(CLI::App& cli, const std::string& name, T& value, const std::string& help) {
  return cli.add_option("--" + name, value, help)->envname(env_name(name));
}

// CLI11's PositiveNumber lets "nan" through (and names its bound with 309
// digits); a timer cannot take it, nor (converted to nanoseconds) more than
// about 31 years.
std::string check_seconds(std::string& text) {
  double seconds = 0;
  if (CLI::detail::lexical_cast(text, seconds) && std::isfinite(seconds) && seconds > 0 && seconds <= 1e9) return {};
  return "expected a number of seconds above 0, up to 1e9, got '" + text + "'";
}

void add_seconds(CLI::App& cli, const std::string& name, std::chrono::duration<double>& value,
                 const std::string& help) {
  cli.add_option_function<double>(
         "--" + name, [&value](double seconds) { value = std::chrono::duration<double>(seconds); },
         help + " (seconds)")
      ->envname(env_name(name))
      ->check(CLI::Validator(check_seconds, ""))
      ->default_str(std::to_string(value.count()));
}

}  // namespace

ParsedOptions parse_command_line(int argc, char** argv, const std::string& description, Options defaults) {
  Options options = std::move(defaults);
  CLI::App cli{description};
  // The program's name and the SDK it was built with: apps have no version of their own here.
  std::string program = argc > 0 ? argv[0] : "worker";
  program = program.substr(program.rfind('/') + 1);
  cli.set_version_flag("--version", program + " (asgi-bridge C++ worker SDK " ASGI_BRIDGE_VERSION ")");
  add(cli, "bus", options.bus_urls,
      "gateway bus URL: zmq://HOST:PORT, zmq+ipc://PATH or redis[s]://[user:password@]HOST:PORT/DB (repeatable)")
      ->delimiter(',')
      ->required();
  add(cli, "bus-prefix", options.bus_prefix, "Redis key prefix, as the gateways' --bus-prefix")
      ->capture_default_str();
  add(cli, "bus-server-key", options.bus_server_key,
      "ZeroMQ CURVE: the gateway's public key file (its NAME.key); needs --bus-secret-key");
  add(cli, "bus-secret-key", options.bus_secret_key,
      "ZeroMQ CURVE: this worker's key pair file (NAME.key_secret); needs --bus-server-key");
  add(cli, "bus-tls-ca-file", options.bus_tls_ca_file,
      "rediss://: CA file (PEM) to verify the Redis server's certificate; default: the system's CAs");
  add(cli, "bus-tls-cert", options.bus_tls_cert, "rediss://: client certificate (PEM); needs --bus-tls-key");
  add(cli, "bus-tls-key", options.bus_tls_key, "rediss://: the client certificate's private key (PEM)");
  cli.add_flag("--bus-tls-insecure", options.bus_tls_insecure,
               "rediss://: do not verify the Redis server's certificate nor its host name")
      ->envname(env_name("bus-tls-insecure"));
  add(cli, "bus-shared-memory", options.bus_shared_memory,
      "ZeroMQ, same host: bytes of the shared-memory ring for large messages to each gateway (0: none; a power of "
      "two from 65536 to 67108864)")
      ->check(CLI::Validator([](std::string& text) { return asgi_bridge::bus::shared_memory_problem(text); }, ""))
      ->capture_default_str();
  add(cli, "concurrency", options.concurrency, "HTTP requests served at once")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
  add(cli, "websocket-capacity", options.websocket_capacity, "WebSockets open at once (counted apart from HTTP)")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
  add(cli, "threads", options.threads, "threads running the application")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  add(cli, "log-level", options.log_level, "trace, debug, info, warning, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  add_seconds(cli, "graceful-timeout", options.graceful_timeout,
              "after SIGTERM, time given to open connections before they are ended");
  add_seconds(cli, "heartbeat-interval", options.heartbeat_interval,
              "heartbeat period; a gateway silent for 3 of them is dead");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = cli.exit(e);  // prints the help or the error
    return {std::nullopt, code == 0 ? 0 : 2};  // 2 for bad options, like the Python worker
  }
  return {std::move(options), 0};
}

}  // namespace asgi_bridge::worker
