#include "zmq/handshake_monitor.hpp"

#include <atomic>
#include <cstring>
#include <string>

#include <zmq_addon.hpp>

#include "zmq/again_on_eintr.hpp"

namespace asgi_bridge::bus {
namespace {

std::string monitor_endpoint() {
  static std::atomic<unsigned> next{0};
  return "inproc://asgi-bridge-monitor-" + std::to_string(next++);
}

// The socket must be bound (by zmq_socket_monitor) before we connect to it.
zmq::socket_t start_monitor(zmq::context_t& context, zmq::socket_t& watched, int events) {
  auto endpoint = monitor_endpoint();
  if (zmq_socket_monitor(watched.handle(), endpoint.c_str(), events) != 0) throw zmq::error_t();
  zmq::socket_t socket(context, zmq::socket_type::pair);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  return socket;
}

}  // namespace

HandshakeMonitor::HandshakeMonitor(boost::asio::io_context& io, zmq::context_t& context, zmq::socket_t& watched,
                                   int events, OnEvent on_event)
    : watched_(watched), socket_(start_monitor(context, watched, events)), on_event_(std::move(on_event)),
      reader_(io, socket_, [this] { return receive_one(); }) {
  reader_.start();
}

void HandshakeMonitor::stop() {
  reader_.stop();
  zmq_socket_monitor(watched_.handle(), nullptr, 0);
  socket_.close();
}

// Frame 1: event (uint16) and value (uint32), native byte order; frame 2: address.
bool HandshakeMonitor::receive_one() {
  std::vector<zmq::message_t> frames;
  if (!again_on_eintr([&] { return zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait); })) return false;
  if (frames.size() != 2 || frames[0].size() != 6) return true;
  std::uint16_t event = 0;
  std::uint32_t value = 0;
  std::memcpy(&event, frames[0].data<char>(), 2);
  std::memcpy(&value, frames[0].data<char>() + 2, 4);
  on_event_(event, value, frames[1].to_string_view());
  return true;
}

}  // namespace asgi_bridge::bus
