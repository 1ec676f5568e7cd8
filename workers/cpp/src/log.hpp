#pragma once
// The SDK's logger ("worker"), writing to stderr.
#include <string>

#include <spdlog/spdlog.h>

namespace asgi_bridge::worker::detail {

// Sets the level of every SDK logger: trace, debug, info, warning, error, critical, off.
void init_logging(const std::string& level);
spdlog::logger& log();

}  // namespace asgi_bridge::worker::detail
