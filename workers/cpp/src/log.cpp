#include "log.hpp"

#include <memory>

#include <spdlog/sinks/stdout_sinks.h>

namespace asgi_bridge::worker::detail {
namespace {

std::shared_ptr<spdlog::logger> make_logger() {
  // The _mt sink: app threads and the bus thread log concurrently.
  auto logger = std::make_shared<spdlog::logger>("worker", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l [%n] %v");
  logger->set_level(spdlog::level::info);
  return logger;
}

}  // namespace

void init_logging(const std::string& level) {
  log().set_level(spdlog::level::from_str(level == "warning" ? "warn" : level));
  log().flush_on(spdlog::level::trace);  // lines reach log files at once, even on a kill
}

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = make_logger();
  return *logger;
}

}  // namespace asgi_bridge::worker::detail
