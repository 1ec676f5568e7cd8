#pragma once
// The ASGI connection scope for "http" and "websocket" connections.
#include <optional>
#include <string>
#include <vector>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::protocol {

enum class ScopeType { http, websocket };

// [host, port] for TCP; [path, None] for a unix socket (port absent).
struct Endpoint {
  Text host;
  std::optional<int> port;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct Scope {
  ScopeType type = ScopeType::http;
  Text asgi_version = "3.0";
  Text spec_version = "2.5";
  Text http_version = "1.1";
  Text method;               // http only (upper case); absent for websocket
  Text scheme = "http";      // http/https or ws/wss
  Text path;                 // percent-decoded, UTF-8
  Bytes raw_path;            // as received, without the query
  Bytes query_string;        // as received, still percent-encoded
  Text root_path;
  Headers headers;           // lower-cased names, original order, duplicates kept
  std::optional<Endpoint> client;
  std::optional<Endpoint> server;
  std::vector<Text> subprotocols;  // websocket only
  std::vector<Text> extensions;    // names; each is an empty map on the wire
  friend bool operator==(const Scope&, const Scope&) = default;
};

}  // namespace asgi_bridge::protocol
