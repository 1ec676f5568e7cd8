#include <stdexcept>
#include <string>

#include "asgi_bridge/bus/transport.hpp"
#include "redis/redis_transport.hpp"
#include "zmq/zmq_transport.hpp"

namespace asgi_bridge::bus {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// zmq://HOST:PORT -> tcp://HOST:PORT ; zmq+ipc://PATH -> ipc://PATH
std::string zmq_endpoint(std::string_view url) {
  if (starts_with(url, "zmq+ipc://")) {
    auto path = url.substr(10);
    if (path.empty()) throw std::invalid_argument("bus URL '" + std::string(url) + "' has no path");
    return "ipc://" + std::string(path);
  }
  auto hostport = url.substr(6);
  auto colon = hostport.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == hostport.size()) {
    throw std::invalid_argument("bus URL '" + std::string(url) + "' must be zmq://HOST:PORT");
  }
  return "tcp://" + std::string(hostport);
}

}  // namespace

std::unique_ptr<Transport> make_transport(boost::asio::io_context& io, std::string_view url,
                                          const TransportOptions& options) {
  if (starts_with(url, "zmq://") || starts_with(url, "zmq+ipc://")) {
    return std::make_unique<ZmqTransport>(io, zmq_endpoint(url), options);
  }
  if (starts_with(url, "redis://") || starts_with(url, "rediss://")) {
    auto parsed = parse_redis_url(url);
    parsed.tls_options = options.redis_tls;
    check_redis(parsed);  // a wrong password or an unreachable server is a start-up error
    return std::make_unique<RedisTransport>(io, parsed, options);
  }
  throw std::invalid_argument("unknown bus URL scheme in '" + std::string(url) +
                              "' (expected zmq://, zmq+ipc://, redis:// or rediss://)");
}

}  // namespace asgi_bridge::bus
