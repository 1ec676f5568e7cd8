#include "asgi_bridge/worker/run.hpp"

#include <cstdio>
#include <exception>
#include <stdexcept>

#include "log.hpp"
#include "worker.hpp"

namespace asgi_bridge::worker {

int run(App app, const Options& options) {
  detail::init_logging(options.log_level);
  detail::Worker worker(std::move(app), options);
  return worker.run();
}

int run_main(App app, int argc, char** argv, const std::string& description) {
  auto parsed = parse_command_line(argc, argv, description);
  if (!parsed.options) return parsed.exit_code;
  try {
    return run(std::move(app), *parsed.options);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;  // a bad --bus URL is a bad option
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace asgi_bridge::worker
