#pragma once
// One --bus URL: the transport to the gateway(s) behind it. Lives on the bus
// thread, like the transport it owns. Which gateway ids speak on which link
// is the Worker's business: with ZeroMQ one gateway binds each URL, with a
// shared bus (Redis, later) many gateways may share one link.
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
  // Throws std::invalid_argument for a malformed URL.
  GatewayLink(boost::asio::io_context& bus_io, std::string url, const std::string& worker_id);

  void start(std::function<void(std::string_view payload)> on_message);
  // False when the transport refused it (full queue, stopped).
  bool send(std::string_view bytes);
  void stop();

  const std::string& url() const { return url_; }

 private:
  std::string url_;
  std::unique_ptr<bus::Transport> transport_;
};

}  // namespace asgi_bridge::worker::detail
