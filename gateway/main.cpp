// asgi-bridge: the gateway executable. `asgi-bridge keygen DIR/NAME` writes
// a CURVE key pair for the bus instead (docs/security.md).
#include <cstdio>
#include <cstring>
#include <exception>

#include "asgi_bridge/bus/curve.hpp"
#include "config.hpp"
#include "log.hpp"
#include "server.hpp"

namespace {

int keygen(int argc, char** argv) {
  if (argc != 3 || argv[2][0] == '-') {
    std::fprintf(stderr, "usage: asgi-bridge keygen DIR/NAME\n"
                         "  writes DIR/NAME.key (public key) and DIR/NAME.key_secret (key pair, mode 0600)\n");
    return argc == 3 && std::strcmp(argv[2], "--help") == 0 ? 0 : 2;
  }
  try {
    asgi_bridge::bus::write_certificates(argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asgi-bridge keygen: %s\n", e.what());
    return 1;
  }
  std::printf("%s.key\n%s.key_secret\n", argv[2], argv[2]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace asgi_bridge::gateway;
  if (argc >= 2 && std::strcmp(argv[1], "keygen") == 0) return keygen(argc, argv);
  auto parsed = parse_config(argc, argv);
  if (!parsed.config) return parsed.exit_code;
  log::init(parsed.config->log_level, parsed.config->log_format);
  Server server(*parsed.config);
  return server.run();
}
