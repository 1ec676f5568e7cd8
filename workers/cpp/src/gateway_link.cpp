#include "gateway_link.hpp"

namespace asgi_bridge::worker::detail {

GatewayLink::GatewayLink(boost::asio::io_context& bus_io, std::string url, const std::string& worker_id)
    : url_(std::move(url)) {
  bus::TransportOptions options;
  options.role = bus::Role::worker;
  options.identity = worker_id;
  transport_ = bus::make_transport(bus_io, url_, options);
}

void GatewayLink::start(std::function<void(std::string_view payload)> on_message) {
  transport_->start([on_message = std::move(on_message)](std::string_view, std::string_view payload) {
    on_message(payload);
  });
}

bool GatewayLink::send(std::string_view bytes) { return transport_->send({}, bytes) == bus::SendStatus::sent; }

void GatewayLink::stop() { transport_->stop(); }

}  // namespace asgi_bridge::worker::detail
