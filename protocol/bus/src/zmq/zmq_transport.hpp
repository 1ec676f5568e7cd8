#pragma once
#include <string>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <zmq.hpp>

#include "asgi_bridge/bus/transport.hpp"
#include "zmq/zmq_security.hpp"

namespace asgi_bridge::bus {

// Gateway role: one bound ROUTER, peers addressed by routing id.
// Worker role: one DEALER connected to one gateway, routing id = worker id.
// ZMQ_FD is edge-triggered: we receive until nothing is left after every
// wake-up and after every send (a send may consume the edge), or wake-ups
// are lost.
class ZmqTransport final : public Transport {
 public:
  ZmqTransport(boost::asio::io_context& io, const std::string& endpoint,
               const TransportOptions& options);
  ~ZmqTransport() override;

  void start(OnMessage on_message) override;
  SendStatus send(std::string_view peer, std::string_view payload) override;
  void stop() override;
  void reload_credentials() override;

 private:
  void schedule_drain();
  void drain();
  void wait_readable();
  void deliver(zmq::message_t& first, zmq::message_t* second);

  boost::asio::io_context& io_;
  Role role_;
  zmq::context_t context_;  // before socket_: created first
  zmq::socket_t socket_;
  std::unique_ptr<ZmqSecurity> security_;  // CURVE only; before bind/connect
  boost::asio::posix::stream_descriptor readable_;
  OnMessage on_message_;
  bool drain_scheduled_ = false;
  bool readable_pending_ = false;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace asgi_bridge::bus
