#pragma once
// One --bus URL: the transport to the gateway(s) behind it. Lives on the bus
// thread, like the transport it owns. Which gateway ids speak on which link
// is the Worker's business: with ZeroMQ one gateway binds each URL; on a
// shared bus (Redis) every gateway on that server shares one link, new
// connections come from a shared queue popped while we have free capacity,
// and a message goes to the gateway its id names.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "asgi_bridge/bus/transport.hpp"

namespace asgi_bridge::worker::detail {

class GatewayLink {
 public:
  // Connects (ZeroMQ connects lazily: a gateway that is not up yet is fine).
  // Throws std::invalid_argument for a malformed URL, std::runtime_error when
  // a Redis server cannot be reached or refuses the credentials, or a CURVE
  // key file cannot be read (std::invalid_argument: only half of the keys).
  GatewayLink(boost::asio::io_context& bus_io, std::string url, const std::string& worker_id,
              const std::string& key_prefix, const bus::CurveOptions& curve, const bus::RedisTlsOptions& tls,
              std::uint64_t shared_memory);

  void start(std::function<void(std::string_view payload)> on_message);
  // To gateway `gateway_id` (ZeroMQ: the link's one gateway, whatever the id).
  // False when the transport refused it (full queue, stopped, Redis down).
  bool send(std::string_view gateway_id, std::string_view bytes);
  // A message the caller is done with, in parts (bus::MessageParts): a large
  // body is copied once, into a shared-memory ring, or goes without a copy.
  bool send(std::string_view gateway_id, bus::MessageParts&& message);
  // Broadcast groups (bus::Transport::publish/subscribe/unsubscribe).
  bool publish(std::string_view group, std::string_view bytes);
  void subscribe(std::string_view group) { transport_->subscribe(group); }
  void unsubscribe(std::string_view group) { transport_->unsubscribe(group); }
  // Redis: a publish to a gateway broadcast channel (docs/broadcast.md).
  bool broadcast(std::string_view channel, bool text, std::string_view data) {
    return transport_->broadcast(channel, text, data) == bus::SendStatus::sent;
  }
  void stop();

  // For logs: the URL without its password.
  const std::string& url() const { return display_url_; }
  // Redis: many gateways, new connections pulled from a shared queue, no `ready`.
  bool shared() const { return shared_; }
  // Shared bus: how many new HTTP requests and WebSockets we may take now
  // (0: none of that kind, and what a pop under way brings goes back).
  void set_free_capacity(std::size_t http, std::size_t websockets);

 private:
  std::string url_;
  std::string display_url_;
  std::unique_ptr<bus::Transport> transport_;
  bool shared_ = false;
  std::size_t free_http_ = 0;
  std::size_t free_ws_ = 0;
};

}  // namespace asgi_bridge::worker::detail
