#include "client_stream.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

namespace asgi_bridge::gateway {

void ClientStream::close() {
  boost::system::error_code ignored;
  socket().shutdown(StreamSocket::shutdown_both, ignored);
  socket().close(ignored);
}

std::size_t ClientStream::try_write_now(boost::asio::const_buffer head, boost::asio::const_buffer payload) {
  if (is_tls() || writes_ > 0 || writing_rest_) return 0;
  iovec parts[2] = {{const_cast<void*>(head.data()), head.size()}, {const_cast<void*>(payload.data()), payload.size()}};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = 2;
  auto sent = ::sendmsg(socket().native_handle(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
  return sent > 0 ? static_cast<std::size_t>(sent) : 0;  // an error: Beast's write will meet it too
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
