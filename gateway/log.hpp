#pragma once
// Named loggers, one per layer, all writing to stderr.
#include <string>

#include <spdlog/spdlog.h>

namespace asgi_bridge::gateway::log {

// format: "text" (human-readable lines) or "json" (one JSON object per line:
// time, level, logger, message; for log collectors).
void init(const std::string& level, const std::string& format = "text");
spdlog::logger& server();
spdlog::logger& bus();
spdlog::logger& http();
spdlog::logger& websocket();
spdlog::logger& access();

}  // namespace asgi_bridge::gateway::log
