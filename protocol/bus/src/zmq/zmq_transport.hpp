#pragma once
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <zmq.hpp>

#include "asgi_bridge/bus/transport.hpp"
#include "zmq/same_host_rings.hpp"
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
  void watch_peers(OnPeerGone on_peer_gone) override { on_peer_gone_ = std::move(on_peer_gone); }
  SendStatus send(std::string_view peer, std::string_view payload) override;
  SendStatus send_owned(std::string_view peer, std::string&& payload) override;
  SendStatus send_parts(std::string_view peer, MessageParts&& parts) override;
  void stop() override;
  void reload_credentials() override;

 private:
  SendStatus send_message(std::string_view peer, zmq::message_t& message);
  // A large message through the peer's shared-memory ring; nullopt: not
  // possible now, send it over the socket.
  std::optional<SendStatus> send_through_ring(std::string_view peer, std::span<const std::string_view> payload);
  SendStatus send_over_socket(std::string_view peer, std::string&& payload);
  // The rings' key for a peer: the worker has one gateway per transport,
  // whatever id the caller names.
  std::string_view ring_peer(std::string_view peer) const { return role_ == Role::gateway ? peer : std::string_view(); }
  void schedule_drain();
  void drain();
  bool receive(zmq::message_t& message);  // false: nothing queued
  void wait_readable();
  std::size_t deliver(zmq::message_t& first, zmq::message_t* second);  // bytes delivered
  void open_monitor(const std::string& endpoint);
  void drain_monitor();
  void wait_monitor();
  void note_peer_fd(std::string_view peer, int fd);
  void on_disconnected(int fd);
  void peer_closed(const std::string& peer, int fd);

  // Gateway: the worker each connection carries, learned from the descriptor
  // (ZMQ_SRCFD) of its messages, since the monitor names descriptors, not
  // routing ids (docs/decisions.md). `stale`: DISCONNECTED events still to
  // come for an earlier connection on a reused descriptor.
  struct FdSlot {
    std::string peer;
    unsigned stale = 0;
  };

  boost::asio::io_context& io_;
  Role role_;
  zmq::context_t context_;  // before socket_: created first
  zmq::socket_t socket_;
  std::unique_ptr<ZmqSecurity> security_;  // CURVE only; before bind/connect
  shm::SameHostRings rings_;
  boost::asio::posix::stream_descriptor readable_;
  OnMessage on_message_;
  OnPeerGone on_peer_gone_;
  std::optional<zmq::socket_t> monitor_;  // gateway: the ROUTER's DISCONNECTED events
  std::optional<boost::asio::posix::stream_descriptor> monitor_readable_;
  bool monitor_pending_ = false;
  std::vector<FdSlot> fds_;
  std::unordered_map<std::string, int> fd_of_peer_;
  bool drain_scheduled_ = false;
  bool readable_pending_ = false;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace asgi_bridge::bus
