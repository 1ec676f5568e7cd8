#pragma once
// Watches a ZeroMQ socket's handshakes through zmq_socket_monitor: libzmq
// reports a failed CURVE handshake (wrong server key, no key, key refused by
// ZAP) only there, never on the socket itself. Bus thread only.
//
// libzmq keeps one monitor per socket: anything else that wants socket events
// (disconnects, ...) must share this one, by widening `events`.
#include <cstdint>
#include <functional>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <zmq.hpp>

#include "socket_reader.hpp"

namespace asgi_bridge::bus {

class HandshakeMonitor {
 public:
  // event: ZMQ_EVENT_*; value: its value (a protocol error or ZAP status
  // code); address: the peer's endpoint (tcp://IP:PORT).
  using OnEvent = std::function<void(std::uint16_t event, std::uint32_t value, std::string_view address)>;

  HandshakeMonitor(boost::asio::io_context& io, zmq::context_t& context, zmq::socket_t& watched, int events,
                   OnEvent on_event);
  void stop();

 private:
  bool receive_one();

  zmq::socket_t& watched_;
  zmq::socket_t socket_;
  OnEvent on_event_;
  SocketReader reader_;
};

}  // namespace asgi_bridge::bus
