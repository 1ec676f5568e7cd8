#pragma once
// Starts a session's main coroutine. An exception escaping it is a bug, not a
// client's doing: it ends that one session with a log line, never the gateway.
#include <exception>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <spdlog/logger.h>

namespace asgi_bridge::gateway {

template <typename Coroutine>
void spawn_session(const boost::asio::any_io_executor& executor, Coroutine coroutine, spdlog::logger& log) {
  boost::asio::co_spawn(executor, std::move(coroutine), [&log](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      log.error("session ended by an unexpected error: {}", e.what());
    }
  });
}

}  // namespace asgi_bridge::gateway
