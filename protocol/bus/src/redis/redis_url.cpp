#include "redis/redis_url.hpp"

#include <charconv>
#include <stdexcept>

namespace asgi_bridge::bus {
namespace {

int parse_number(std::string_view text, std::string_view what, std::string_view url) {
  int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < 0) {
    throw std::invalid_argument("bus URL '" + redact_redis_url(url) + "': bad " + std::string(what));
  }
  return value;
}

}  // namespace

// redis://user:secret@host -> redis://user:***@host; redis://secret@host -> redis://***@host.
std::string redact_redis_url(std::string_view url) {
  auto start = url.find("://");
  start = start == std::string_view::npos ? 0 : start + 3;
  auto at = url.rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(url);
  auto colon = url.substr(start, at - start).find(':');
  auto secret = colon == std::string_view::npos ? start : start + colon + 1;
  return std::string(url.substr(0, secret)) + "***" + std::string(url.substr(at));
}

RedisUrl parse_redis_url(std::string_view url) {
  constexpr std::string_view plain = "redis://";
  constexpr std::string_view tls = "rediss://";
  RedisUrl parsed;
  parsed.tls = url.substr(0, tls.size()) == tls;
  if (!parsed.tls && url.substr(0, plain.size()) != plain) {
    throw std::invalid_argument("not a redis:// or rediss:// URL: " + redact_redis_url(url));
  }
  auto rest = url.substr(parsed.tls ? tls.size() : plain.size());
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    auto credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = credentials.find(':');
    if (colon == std::string_view::npos) {
      parsed.password = std::string(credentials);
    } else {
      parsed.user = std::string(credentials.substr(0, colon));
      parsed.password = std::string(credentials.substr(colon + 1));
    }
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    auto db = rest.substr(slash + 1);
    if (!db.empty()) parsed.db = parse_number(db, "database number", url);
    rest = rest.substr(0, slash);
  }
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    parsed.port = parse_number(rest.substr(colon + 1), "port", url);
    rest = rest.substr(0, colon);
  }
  if (!rest.empty()) parsed.host = std::string(rest);
  if (parsed.port == 0 || parsed.port > 65535) throw std::invalid_argument("bus URL '" + redact_redis_url(url) + "': bad port");
  return parsed;
}

}  // namespace asgi_bridge::bus
