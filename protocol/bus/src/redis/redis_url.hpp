#pragma once
#include <string>
#include <string_view>

#include "asgi_bridge/bus/transport.hpp"

namespace asgi_bridge::bus {

// redis://[user:password@]HOST:PORT/DB, or rediss:// for TLS
struct RedisUrl {
  bool tls = false;
  RedisTlsOptions tls_options;  // set by the caller: not part of the URL
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;
  std::string password;
  int db = 0;
};

// Throws std::invalid_argument naming what is wrong (and the URL, without
// its password).
RedisUrl parse_redis_url(std::string_view url);

// The URL with its password replaced by "***", for messages and logs.
std::string redact_redis_url(std::string_view url);

}  // namespace asgi_bridge::bus
