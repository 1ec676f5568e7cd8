#pragma once
// Drives a helper ZeroMQ socket (ZAP handler, monitor) from an io_context.
// ZMQ_FD is edge-triggered: receive_one() is called until it finds nothing
// (it receives with dontwait and returns false then), and only then do we
// wait for the next edge. Same io_context thread as the socket's owner.
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <zmq.hpp>

namespace asgi_bridge::bus {

class SocketReader {
 public:
  SocketReader(boost::asio::io_context& io, zmq::socket_t& socket, std::function<bool()> receive_one)
      : io_(io), readable_(io, socket.get(zmq::sockopt::fd)), receive_one_(std::move(receive_one)) {}
  SocketReader(const SocketReader&) = delete;
  SocketReader& operator=(const SocketReader&) = delete;
  ~SocketReader() { stop(); }

  void start() {
    boost::asio::post(io_, [this, alive = alive_] {
      if (*alive) drain();
    });
  }

  // Before the socket closes: the descriptor is ZeroMQ's, released, never closed.
  void stop() {
    if (!*alive_) return;
    *alive_ = false;
    boost::system::error_code ignored;
    readable_.cancel(ignored);
    readable_.release();
  }

 private:
  void drain() {
    constexpr int k_batch = 64;  // then let the bus thread do other work
    for (int i = 0; i < k_batch; ++i) {
      if (!*alive_) return;
      if (!receive_one_()) return wait();
    }
    start();
  }

  void wait() {
    readable_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                         [this, alive = alive_](const boost::system::error_code& ec) {
                           if (*alive && !ec) drain();
                         });
  }

  boost::asio::io_context& io_;
  boost::asio::posix::stream_descriptor readable_;
  std::function<bool()> receive_one_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace asgi_bridge::bus
