#pragma once
// Named loggers, one per layer, all writing to stderr.
#include <string>

#include <spdlog/spdlog.h>

namespace asgi_bridge::gateway::log {

void init(const std::string& level);
spdlog::logger& server();
spdlog::logger& bus();
spdlog::logger& http();
spdlog::logger& websocket();
spdlog::logger& access();

}  // namespace asgi_bridge::gateway::log
