#include "client_stream.hpp"

namespace asgi_bridge::gateway {

void ClientStream::close() {
  boost::system::error_code ignored;
  socket().shutdown(StreamSocket::shutdown_both, ignored);
  socket().close(ignored);
}

void beast_close_socket(ClientStream& stream) {
  boost::system::error_code ignored;
  stream.socket().close(ignored);
}

void teardown(boost::beast::role_type role, ClientStream& stream, boost::system::error_code& ec) {
  using boost::beast::teardown;
  using boost::beast::websocket::teardown;
  if (auto* tls = stream.tls()) {
    teardown(role, *tls, ec);
  } else {
    teardown(role, stream.socket(), ec);
  }
}

}  // namespace asgi_bridge::gateway
