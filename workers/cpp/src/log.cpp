#include "log.hpp"

#include <memory>

#include <spdlog/sinks/stdout_sinks.h>

namespace asgi_bridge::worker::detail {
namespace {

std::shared_ptr<spdlog::sinks::sink> stderr_sink() {
  // The _mt sink: app threads and the bus thread log concurrently.
  static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return sink;
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& name) {
  auto logger = std::make_shared<spdlog::logger>(name, stderr_sink());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l [%n] %v");
  logger->set_level(spdlog::level::info);
  return logger;
}

}  // namespace

void init_logging(const std::string& level) {
  auto parsed = spdlog::level::from_str(level == "warning" ? "warn" : level);
  log().set_level(parsed);
  log().flush_on(spdlog::level::trace);  // lines reach log files at once, even on a kill
  // The transports log through spdlog's "bus" logger: same format, level and stream.
  auto bus = spdlog::get("bus");
  if (!bus) {
    bus = make_logger("bus");
    spdlog::register_logger(bus);
  }
  bus->set_level(parsed);
  bus->flush_on(spdlog::level::trace);
}

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = make_logger("worker");
  return *logger;
}

}  // namespace asgi_bridge::worker::detail
