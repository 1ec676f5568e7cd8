#pragma once
// The transports log through spdlog's "bus" logger when the program made
// one (the gateway does), else through spdlog's default logger.
#include <spdlog/spdlog.h>

namespace asgi_bridge::bus {

inline spdlog::logger& bus_log() {
  if (auto logger = spdlog::get("bus")) return *logger;
  return *spdlog::default_logger();
}

}  // namespace asgi_bridge::bus
