#include "gateway_link.hpp"

#include <stdexcept>

namespace asgi_bridge::worker::detail {
namespace {

// scheme://user:secret@host... -> scheme://user:***@host...
std::string without_password(const std::string& url) {
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  auto at = url.rfind('@');
  if (at == std::string::npos || at < start) return url;
  auto colon = url.find(':', start);
  auto secret = colon == std::string::npos || colon > at ? start : colon + 1;
  return url.substr(0, secret) + "***" + url.substr(at);
}

}  // namespace

GatewayLink::GatewayLink(boost::asio::io_context& bus_io, std::string url, const std::string& worker_id,
                         const std::string& key_prefix, const bus::CurveOptions& curve,
                         const bus::RedisTlsOptions& tls, std::uint64_t shared_memory)
    : url_(std::move(url)), display_url_(without_password(url_)) {
  if (curve.secret_key_file.empty() != curve.server_key_file.empty()) {
    throw std::invalid_argument("ZeroMQ CURVE needs both --bus-server-key and --bus-secret-key");
  }
  bus::TransportOptions options;
  options.role = bus::Role::worker;
  options.identity = worker_id;
  options.key_prefix = key_prefix;
  options.shared_memory = shared_memory;
  if (url_.rfind("zmq", 0) == 0) options.curve = curve;  // Redis links ignore ZeroMQ keys
  bool tls_given = !tls.ca_file.empty() || !tls.cert_file.empty() || !tls.key_file.empty() || tls.insecure;
  if (tls_given && url_.rfind("rediss://", 0) != 0) {
    throw std::invalid_argument("the --bus-tls-* options apply to rediss:// buses only");
  }
  options.redis_tls = tls;
  transport_ = bus::make_transport(bus_io, url_, options);
  shared_ = transport_->has_shared_queue();
}

void GatewayLink::start(std::function<void(std::string_view payload)> on_message) {
  transport_->start([on_message = std::move(on_message)](std::string_view, std::string_view payload) {
    on_message(payload);
  });
}

bool GatewayLink::send(std::string_view gateway_id, std::string_view bytes) {
  return transport_->send(gateway_id, bytes) == bus::SendStatus::sent;
}

bool GatewayLink::send(std::string_view gateway_id, bus::MessageParts&& message) {
  return transport_->send_parts(gateway_id, std::move(message)) == bus::SendStatus::sent;
}

bool GatewayLink::publish(std::string_view group, std::string_view bytes) {
  return transport_->publish(group, bytes) == bus::SendStatus::sent;
}

void GatewayLink::stop() { transport_->stop(); }

void GatewayLink::set_free_capacity(std::size_t http, std::size_t websockets) {
  if (!shared_ || (http == free_http_ && websockets == free_ws_)) return;
  free_http_ = http;
  free_ws_ = websockets;
  transport_->set_free_capacity(http, websockets);
}

}  // namespace asgi_bridge::worker::detail
