#include "asgi_bridge/worker/options.hpp"

#include <CLI/CLI.hpp>

namespace asgi_bridge::worker {
namespace {

void add_seconds(CLI::App& cli, const std::string& name, std::chrono::duration<double>& value,
                 const std::string& help) {
  cli.add_option_function<double>(
         "--" + name, [&value](double seconds) { value = std::chrono::duration<double>(seconds); },
         help + " (seconds)")
      ->check(CLI::PositiveNumber)
      ->default_str(std::to_string(value.count()));
}

}  // namespace

ParsedOptions parse_command_line(int argc, char** argv, const std::string& description, Options defaults) {
  Options options = std::move(defaults);
  CLI::App cli{description};
  cli.add_option("--bus", options.bus_urls, "gateway bus URL: zmq://HOST:PORT or zmq+ipc://PATH (repeatable)")
      ->delimiter(',')
      ->required();
  cli.add_option("--concurrency", options.concurrency, "connections served at once")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();
  cli.add_option("--threads", options.threads, "threads running the application")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  cli.add_option("--log-level", options.log_level, "trace, debug, info, warning, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  add_seconds(cli, "graceful-timeout", options.graceful_timeout,
              "after SIGTERM, time given to open connections before they are ended");
  add_seconds(cli, "heartbeat-interval", options.heartbeat_interval,
              "heartbeat period; a gateway silent for 3 of them is dead");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, cli.exit(e)};
  }
  return {std::move(options), 0};
}

}  // namespace asgi_bridge::worker
