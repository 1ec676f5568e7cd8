#include "stream_socket.hpp"

#include <sys/socket.h>

#include <cstring>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <fmt/format.h>

namespace asgi_bridge::gateway {
namespace asio = boost::asio;

namespace {

// A generic endpoint holds a sockaddr; copy it into the concrete endpoint type.
template <typename Endpoint>
Endpoint concrete(const asio::generic::stream_protocol::endpoint& generic) {
  Endpoint endpoint;
  if (generic.size() > endpoint.capacity()) return endpoint;
  std::memcpy(endpoint.data(), generic.data(), generic.size());
  endpoint.resize(generic.size());
  return endpoint;
}

}  // namespace

SocketEnds prepare_socket(StreamSocket& socket, bool tls) {
  boost::system::error_code ignored;
  auto local = socket.local_endpoint(ignored);
  SocketEnds ends;
  ends.tls = tls;
  if (local.protocol().family() == AF_UNIX) {
    ends.server = protocol::Endpoint{concrete<asio::local::stream_protocol::endpoint>(local).path(), std::nullopt};
    return ends;
  }
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  auto server = concrete<asio::ip::tcp::endpoint>(local);
  auto client = concrete<asio::ip::tcp::endpoint>(socket.remote_endpoint(ignored));
  ends.server = protocol::Endpoint{server.address().to_string(), server.port()};
  ends.client = protocol::Endpoint{client.address().to_string(), client.port()};
  ends.peer_address = client.address();
  return ends;
}

std::string SocketEnds::label() const {
  return client ? fmt::format("{}:{}", client->host, client->port.value_or(0)) : std::string("unix:");
}

}  // namespace asgi_bridge::gateway
