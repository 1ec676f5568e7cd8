#include "zmq/zmq_security.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include <fmt/format.h>

#include "asgi_bridge/bus/curve.hpp"
#include "bus_log.hpp"

namespace asgi_bridge::bus {
namespace {

constexpr auto k_repeat_log = std::chrono::seconds(30);
constexpr auto k_retry = std::chrono::seconds(1);
// Peers remembered (their keys, or revoked): past this the memory starts over,
// keys are learned again from the next messages (a revoked id stays revoked).
constexpr std::size_t k_max_peers = 100000;
constexpr int k_failures = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;

void set_gateway_keys(zmq::socket_t& socket, const CurveOptions& curve) {
  auto keys = read_certificate(curve.secret_key_file, true);
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  socket.set(zmq::sockopt::zap_domain, "asgi-bridge");
}

void set_worker_keys(zmq::socket_t& socket, const CurveOptions& curve) {
  auto ours = read_certificate(curve.secret_key_file, true);
  auto server = read_certificate(curve.server_key_file, false);
  socket.set(zmq::sockopt::curve_serverkey, server.public_key);
  socket.set(zmq::sockopt::curve_publickey, ours.public_key);
  socket.set(zmq::sockopt::curve_secretkey, ours.secret_key);
}

// libzmq names no peer in a failed handshake's events: the address is read
// from the descriptor when its ACCEPTED event is handled, which may be after
// libzmq closed it (a worker without CURVE is refused within a round trip).
constexpr const char* k_unread_address = "an unknown address (the connection closed before it could be read)";

std::uint16_t port_of(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  return 0;
}

// The port of our bound endpoint ("tcp://IP:PORT"); 0 for ipc://.
std::uint16_t bound_port(zmq::socket_t& socket) {
  auto endpoint = socket.get(zmq::sockopt::last_endpoint);
  if (endpoint.rfind("tcp://", 0) != 0) return 0;
  try {
    return static_cast<std::uint16_t>(std::stoul(endpoint.substr(endpoint.rfind(':') + 1)));
  } catch (const std::exception&) {
    return 0;
  }
}

// "IP:PORT" of a connected socket, as the ZAP handler's addresses (IP only)
// read. A descriptor whose local port is not the bus's was closed by libzmq
// and already reused by another connection (a client's): its peer is not ours.
std::string peer_address(int fd, std::uint16_t bus_port) {
  sockaddr_storage local{};
  socklen_t local_size = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) != 0) return k_unread_address;
  if (local.ss_family == AF_UNIX) return "a local socket";  // zmq+ipc://
  if (port_of(local) != bus_port) return k_unread_address;
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) return k_unread_address;
  char host[INET6_ADDRSTRLEN] = {};
  const void* ip = address.ss_family == AF_INET6
                       ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&address)->sin6_addr)
                       : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&address)->sin_addr);
  ::inet_ntop(address.ss_family, ip, host, sizeof host);
  return fmt::format("{}:{}", host, port_of(address));
}

std::string protocol_error(std::uint32_t value) { return fmt::format("handshake protocol error {:#x}", value); }

}  // namespace

ZmqSecurity::ZmqSecurity(boost::asio::io_context& io, zmq::context_t& context, zmq::socket_t& socket,
                         const std::string& endpoint, const TransportOptions& options)
    : role_(options.role), socket_(socket), endpoint_(endpoint), curve_(options.curve),
      on_refused_(options.on_refused), retry_(io) {
  if (role_ == Role::gateway) {
    if (curve_.authorized_keys.empty()) throw std::runtime_error("a CURVE gateway needs an allow-list of worker keys");
    set_gateway_keys(socket, curve_);
    zap_ = std::make_unique<ZapAuthenticator>(io, context, read_authorized_keys(curve_.authorized_keys),
                                              [this](auto address, auto reason) { refused(address, reason); });
    bus_log().info("bus: CURVE on, {} authorized worker keys in {}", zap_->key_count(), curve_.authorized_keys);
  } else {
    if (curve_.enabled()) set_worker_keys(socket, curve_);
    monitor_ = std::make_unique<HandshakeMonitor>(
        io, context, socket, k_failures | ZMQ_EVENT_HANDSHAKE_SUCCEEDED,
        [this](auto event, auto value, auto address) { on_worker_event(event, value, address); });
  }
}

void ZmqSecurity::reload() {
  if (!zap_ || stopped_) return;
  std::vector<std::string> keys;
  try {
    keys = read_authorized_keys(curve_.authorized_keys);
  } catch (const std::exception& e) {
    bus_log().error("bus: allow-list not reloaded, the previous one stays: {}", e.what());
    return;
  }
  auto before = zap_->key_count();
  zap_->set_keys(keys);
  bus_log().info("bus: reloaded {}: {} authorized worker keys (were {})", curve_.authorized_keys,
                 zap_->key_count(), before);
  std::unordered_set<std::string> allowed(keys.begin(), keys.end());
  for (const auto& [peer, key] : peer_keys_) {
    if (allowed.count(key)) {
      revoked_peers_.erase(peer);
    } else if (revoked_peers_.insert(peer).second) {
      bus_log().warn("bus: worker {} revoked (key {} no longer authorized): its connection is ignored", peer, key);
    }
  }
}

bool ZmqSecurity::admit(std::string_view peer, zmq::message_t& payload) {
  if (peer_keys_.find(std::string(peer)) == peer_keys_.end()) {
    if (peer_keys_.size() >= k_max_peers) peer_keys_.clear();
    const char* key = zmq_msg_gets(payload.handle(), "User-Id");
    peer_keys_.emplace(peer, key ? key : "");
  }
  return may_send(peer);
}

void ZmqSecurity::stop() {
  if (stopped_) return;
  stopped_ = true;
  revoked_peers_.clear();
  *alive_ = false;
  retry_.cancel();
  if (monitor_) monitor_->stop();
  if (zap_) zap_->stop();
}

// ZAP is asked only after the key exchange: a worker without CURVE, or one
// that encrypted its hello for another key, shows up here only. A worker
// without CURVE may see the mismatch of the greetings first and hang up: then
// libzmq only says that the handshake ended early.
// Refusals after a ZAP verdict (HANDSHAKE_FAILED_AUTH) are the ZAP handler's to log.
void ZmqSecurity::on_gateway_event(std::uint16_t event, std::uint32_t value) {
  switch (event) {
    case ZMQ_EVENT_ACCEPTED:
      if (accepted_.size() >= k_max_peers) accepted_.clear();
      if (bus_port_ == 0) bus_port_ = bound_port(socket_);
      accepted_[value] = peer_address(static_cast<int>(value), bus_port_);
      return;
    case ZMQ_EVENT_DISCONNECTED: {
      auto found = accepted_.find(value);
      if (!pending_refusal_.empty()) {
        refused(found == accepted_.end() ? k_unread_address : found->second, pending_refusal_);
        pending_refusal_.clear();
      }
      if (found != accepted_.end()) accepted_.erase(found);
      return;
    }
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      pending_refusal_ = "hung up during the handshake (no CURVE key, or not a ZeroMQ peer)";
      return;
    default:
      pending_refusal_ = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? "no CURVE key (plain ZeroMQ)"
                         : value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
                             ? "CURVE hello not for this gateway's key (wrong --bus-server-key)"
                             : protocol_error(value);
  }
}

void ZmqSecurity::refused(std::string_view address, std::string_view reason) {
  if (on_refused_) return on_refused_(address, reason);
  bus_log().warn("bus: refused worker at {}: {}", address, reason);
}

void ZmqSecurity::on_worker_event(std::uint16_t event, std::uint32_t value, std::string_view address) {
  const char* what = curve_.enabled() ? "CURVE handshake" : "handshake";
  if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
    if (!last_failure_.empty()) bus_log().info("bus: {} with {} succeeded", what, address);
    last_failure_.clear();
    return;
  }
  if (event != ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) reconnect_later();
  std::string reason;
  if (!curve_.enabled()) {
    reason = event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                 ? "the gateway closed the connection during the handshake: does it require CURVE (--bus-secret-key)?"
             : value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                 ? "the gateway requires CURVE (it has --bus-secret-key): give this worker --bus-server-key and "
                   "--bus-secret-key"
                 : protocol_error(value);
  } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    reason = value == 400 ? "the gateway refused our public key: is it in the gateway's --bus-authorized-keys?"
                          : fmt::format("the gateway refused us (ZAP status {})", value);
  } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
    reason = "the gateway closed the connection during the CURVE handshake: is --bus-server-key the gateway's "
             "public key?";
  } else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
    reason = "the gateway does not use CURVE (it has no --bus-secret-key)";
  } else {
    reason = protocol_error(value);
  }
  auto now = std::chrono::steady_clock::now();
  bool repeat = reason == last_failure_ && now - last_logged_ < k_repeat_log;
  if (repeat) return bus_log().debug("bus: {} with {} failed again: {}", what, address, reason);
  bus_log().error("bus: {} with {} failed: {}; retrying", what, address, reason);
  last_failure_ = std::move(reason);
  last_logged_ = now;
}

void ZmqSecurity::reconnect_later() {
  if (retry_pending_) return;
  retry_pending_ = true;
  retry_.expires_after(k_retry);
  retry_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (!*alive || ec) return;
    retry_pending_ = false;
    try {
      socket_.disconnect(endpoint_);
    } catch (const zmq::error_t&) {
      // already forgotten by libzmq
    }
    try {
      socket_.connect(endpoint_);
    } catch (const zmq::error_t& e) {
      bus_log().error("bus: cannot connect to {} again: {}", endpoint_, e.what());
    }
  });
}

}  // namespace asgi_bridge::bus
