#pragma once
// CURVE on one ZmqTransport socket (docs/security.md).
//
// Gateway: the ROUTER is a CURVE server holding our secret key; a ZAP handler
// checks each worker's public key against --bus-authorized-keys; the
// transport's socket monitor (libzmq allows one per socket) hands us the
// k_gateway_events, to name the workers refused before ZAP is asked (no key,
// or a worker that encrypted for another gateway's key). Worker: the DEALER is a CURVE client
// of the gateway's public key; a monitor logs why the gateway refused us
// and connects again after a refusal (libzmq gives up on an endpoint whose
// handshake failed with an authentication or protocol error: a key added to
// the gateway's allow-list later must start working). A worker without CURVE
// is watched too, for a gateway that requires CURVE.
//
// Built before the socket binds or connects; stopped before it closes.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <zmq.hpp>

#include "asgi_bridge/bus/transport.hpp"
#include "zmq/handshake_monitor.hpp"
#include "zmq/zap_authenticator.hpp"

namespace asgi_bridge::bus {

class ZmqSecurity {
 public:
  ZmqSecurity(boost::asio::io_context& io, zmq::context_t& context, zmq::socket_t& socket,
              const std::string& endpoint, const TransportOptions& options);
  ZmqSecurity(const ZmqSecurity&) = delete;
  ZmqSecurity& operator=(const ZmqSecurity&) = delete;
  ~ZmqSecurity() { stop(); }

  // Gateway: rereads the allow-list; on error keeps the previous one. The
  // workers already connected with a removed key are revoked: their messages
  // are dropped and sends to them fail (peer_unknown), so the gateway loses
  // them as it loses a dead worker.
  void reload();
  // Gateway, each message received from `peer`: false when it must be dropped.
  // Learns which key each peer authenticated with (ZAP's User-Id).
  bool admit(std::string_view peer, zmq::message_t& payload);
  // Gateway: the ROUTER's monitor events we need, and where they go.
  static constexpr int k_gateway_events = ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                          ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED;
  void on_gateway_event(std::uint16_t event, std::uint32_t value);
  // Gateway: false for a revoked peer.
  bool may_send(std::string_view peer) const {
    return revoked_peers_.empty() || revoked_peers_.count(std::string(peer)) == 0;
  }
  void stop();

 private:
  void on_worker_event(std::uint16_t event, std::uint32_t value, std::string_view address);
  void refused(std::string_view address, std::string_view reason);
  void reconnect_later();

  Role role_;
  zmq::socket_t& socket_;
  std::string endpoint_;
  CurveOptions curve_;
  RefusedCallback on_refused_;
  std::unique_ptr<ZapAuthenticator> zap_;  // gateway only
  std::unique_ptr<HandshakeMonitor> monitor_;  // worker only
  // Gateway: the monitor names only our own endpoint, so peers' addresses
  // are taken when accepted (by descriptor) and a failed handshake is logged
  // at its disconnect, which follows it on libzmq's one I/O thread.
  std::unordered_map<std::uint32_t, std::string> accepted_;
  std::uint16_t bus_port_ = 0;  // learned at the first accept
  std::string pending_refusal_;
  // Gateway: routing id -> Z85 key of the connected workers, and the revoked ids.
  std::unordered_map<std::string, std::string> peer_keys_;
  std::unordered_set<std::string> revoked_peers_;
  // Worker: the same failure is logged again only after k_repeat_log.
  std::string last_failure_;
  std::chrono::steady_clock::time_point last_logged_;
  boost::asio::steady_timer retry_;
  bool retry_pending_ = false;
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace asgi_bridge::bus
