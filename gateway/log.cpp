#include "log.hpp"

#include <chrono>
#include <memory>

#include <fmt/chrono.h>
#include <nlohmann/json.hpp>

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

// One JSON object per line, keys in a fixed order (the access log's fields
// after them). nlohmann::json escapes the message (quotes,
// control characters) and replaces invalid UTF-8, which a client's request
// target or header quoted in a log line may contain.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto millis = std::chrono::time_point_cast<std::chrono::milliseconds>(msg.time);
    nlohmann::ordered_json line{
        {"time", fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(millis)),
                             millis.time_since_epoch().count() % 1000)},
        {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                              spdlog::level::to_string_view(msg.level).size())},
        {"logger", std::string(msg.logger_name.data(), msg.logger_name.size())},
    };
    std::string_view payload(msg.payload.data(), msg.payload.size());
    std::string_view logger(msg.logger_name.data(), msg.logger_name.size());
    if (logger == "access" && payload.size() > 2 && payload.front() == '{') {
      // The access log's line is a JSON object already (access_log.cpp):
      // its keys follow ours, in one object.
      auto text = line.dump();
      text.back() = ',';
      dest.append(text.data(), text.data() + text.size());
      dest.append(payload.data() + 1, payload.data() + payload.size());
      dest.push_back('\n');
      return;
    }
    line["message"] = std::string(payload);
    auto text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

void init(const std::string& level, const std::string& format) {
  auto parsed = spdlog::level::from_str(level == "warning" ? "warn" : level);
  spdlog::set_level(parsed);
  for (const char* name : {"server", "bus", "http", "websocket", "access"}) named(name).set_level(parsed);
  // Both apply to every registered logger, the bus library's included.
  if (format == "json") {
    spdlog::set_formatter(std::make_unique<JsonFormatter>());
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  }
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
