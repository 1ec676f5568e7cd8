#include "log.hpp"

#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace asgi_bridge::gateway::log {
namespace {

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

spdlog::logger& named(const char* name) {
  // Created once per name; spdlog's registry makes later lookups thread-safe.
  if (auto existing = spdlog::get(name)) return *existing;
  auto logger = std::make_shared<spdlog::logger>(name, shared_sink());
  logger->set_level(spdlog::get_level());
  try {
    spdlog::register_logger(logger);
  } catch (const spdlog::spdlog_ex&) {
    return *spdlog::get(name);  // another thread registered it first
  }
  return *logger;
}

}  // namespace

void init(const std::string& level) {
  auto parsed = spdlog::level::from_str(level == "warning" ? "warn" : level);
  spdlog::set_level(parsed);
  for (const char* name : {"server", "bus", "http", "websocket", "access"}) named(name).set_level(parsed);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");  // applies to the registered loggers
}

spdlog::logger& server() {
  static spdlog::logger& l = named("server");
  return l;
}
spdlog::logger& bus() {
  static spdlog::logger& l = named("bus");
  return l;
}
spdlog::logger& http() {
  static spdlog::logger& l = named("http");
  return l;
}
spdlog::logger& websocket() {
  static spdlog::logger& l = named("websocket");
  return l;
}
spdlog::logger& access() {
  static spdlog::logger& l = named("access");
  return l;
}

}  // namespace asgi_bridge::gateway::log
