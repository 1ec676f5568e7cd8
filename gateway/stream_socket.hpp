#pragma once
// Sessions read and write one generic stream socket, whether the listener
// accepted it over TCP or over a Unix domain socket (--unix-socket), so there
// is one session class per kind. What differs is who is at either end: that
// is read once, when the session starts.
#include <optional>
#include <string>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/address.hpp>

#include "asgi_bridge/protocol/scope.hpp"

namespace asgi_bridge::gateway {

using StreamSocket = boost::asio::generic::stream_protocol::socket;

struct SocketEnds {
  // ASGI: [host, port] over TCP; over a Unix socket the client is None and
  // the server is [path, None].
  std::optional<protocol::Endpoint> client;
  std::optional<protocol::Endpoint> server;
  // The TCP peer, for --trusted-proxies; none over a Unix socket.
  std::optional<boost::asio::ip::address> peer_address;
  // TLS under HTTP: the scope's scheme is https or wss.
  bool tls = false;
  // The client in log lines: "host:port", or "unix:" (as nginx logs it).
  std::string label() const;
};

// Reads both ends of a just-accepted socket, and turns Nagle off on a TCP one
// (responses are written whole; waiting for an ACK only adds latency).
// `tls`: the connection speaks TLS over this socket.
SocketEnds prepare_socket(StreamSocket& socket, bool tls);

}  // namespace asgi_bridge::gateway
