// asgi-bridge: the gateway executable.
#include "config.hpp"
#include "log.hpp"
#include "server.hpp"

int main(int argc, char** argv) {
  using namespace asgi_bridge::gateway;
  auto parsed = parse_config(argc, argv);
  if (!parsed.config) return parsed.exit_code;
  log::init(parsed.config->log_level, parsed.config->log_format);
  Server server(*parsed.config);
  return server.run();
}
