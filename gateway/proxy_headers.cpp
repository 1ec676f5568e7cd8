#include "proxy_headers.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <string>

#include "asgi_adapter.hpp"
#include "list_items.hpp"

namespace asgi_bridge::gateway {

namespace ip = boost::asio::ip;

namespace {

// The comma-separated items of every line of header `name`, in order.
std::vector<std::string_view> header_items(const protocol::Headers& headers, std::string_view name) {
  std::vector<std::string_view> items;
  for (const auto& header : headers) {
    if (header.name != name) continue;
    auto line = list_items(header.value);
    items.insert(items.end(), line.begin(), line.end());
  }
  return items;
}

// A v4-mapped v6 address (::ffff:10.0.0.1, a dual-stack listener's view of
// an IPv4 peer) is compared as the IPv4 address it carries.
ip::address unmapped(const ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return ip::make_address_v4(ip::v4_mapped, address.to_v6());
  }
  return address;
}

std::optional<ip::address> parse_address(std::string_view text) {
  // X-Forwarded-For may carry "[v6]" or "[v6]:port" / "v4:port" (RFC 7239 style).
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    text = text.substr(1, close - 1);
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    text = text.substr(0, text.find(':'));
  }
  boost::system::error_code error;
  auto address = ip::make_address(std::string(text), error);
  if (error) return std::nullopt;
  return unmapped(address);
}

std::optional<int> parse_port(std::string_view text) {
  int port = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (error != std::errc{} || end != text.data() + text.size() || port < 0 || port > 65535) {
    return std::nullopt;
  }
  return port;
}

// http/https/ws/wss, fitted to the scope type (a WebSocket behind TLS is wss).
std::optional<std::string> forwarded_scheme(std::string_view proto, protocol::ScopeType type) {
  std::string lower(proto);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  bool secure = lower == "https" || lower == "wss";
  if (!secure && lower != "http" && lower != "ws") return std::nullopt;
  if (type == protocol::ScopeType::websocket) return secure ? "wss" : "ws";
  return secure ? "https" : "http";
}

// Daphne-Root-Path: the prefix the proxy mounts the app at (Daphne's header,
// which nginx configurations written for Daphne set). The nearest proxy's
// (last) value, percent-decoded as Daphne does; the header is for the
// server, not the app, and leaves the scope as in Daphne.
void apply_root_path(protocol::Scope& scope) {
  auto& headers = scope.headers;
  auto is_root_path = [](const protocol::Header& header) { return header.name == "daphne-root-path"; };
  auto last = std::find_if(headers.rbegin(), headers.rend(), is_root_path);
  if (last == headers.rend()) return;
  scope.root_path = percent_decode_utf8(last->value);
  headers.erase(std::remove_if(headers.begin(), headers.end(), is_root_path), headers.end());
}

}  // namespace

TrustedProxies TrustedProxies::parse(std::string_view list) {
  TrustedProxies trusted;
  for (auto entry : list_items(list)) {
    if (entry == "*") {
      trusted.everyone_ = true;
      continue;
    }
    std::string text(entry);
    if (text.find('/') == std::string::npos) text += text.find(':') == std::string::npos ? "/32" : "/128";
    boost::system::error_code error;
    if (text.find(':') == std::string::npos) {
      auto network = ip::make_network_v4(text, error);
      if (!error) trusted.v4_.push_back(network.canonical());
    } else {
      auto network = ip::make_network_v6(text, error);
      if (!error) trusted.v6_.push_back(network.canonical());
    }
    if (error) throw std::invalid_argument("not an IP address or CIDR network: '" + std::string(entry) + "'");
  }
  return trusted;
}

bool TrustedProxies::contains(const ip::address& address) const {
  if (everyone_) return true;
  auto plain = unmapped(address);
  if (plain.is_v4()) {
    auto v4 = plain.to_v4();
    return std::any_of(v4_.begin(), v4_.end(), [&](const auto& network) {
      return ip::make_network_v4(v4, network.prefix_length()).canonical() == network;
    });
  }
  auto v6 = plain.to_v6();
  return std::any_of(v6_.begin(), v6_.end(), [&](const auto& network) {
    return ip::make_network_v6(v6, network.prefix_length()).canonical() == network;
  });
}

bool TrustedProxies::contains(std::string_view address) const {
  auto parsed = parse_address(address);
  return parsed && contains(*parsed);
}

void apply_proxy_headers(protocol::Scope& scope, const std::optional<ip::address>& peer,
                         const TrustedProxies& trusted) {
  if (peer && !trusted.contains(*peer)) return;
  apply_root_path(scope);
  if (auto protos = header_items(scope.headers, "x-forwarded-proto"); !protos.empty()) {
    // The last value is the one the nearest (trusted) proxy added.
    if (auto scheme = forwarded_scheme(protos.back(), scope.type)) scope.scheme = *scheme;
  }
  auto hops = header_items(scope.headers, "x-forwarded-for");
  if (hops.empty()) return;
  auto client = std::find_if(hops.rbegin(), hops.rend(), [&](std::string_view hop) { return !trusted.contains(hop); });
  auto address = parse_address(client == hops.rend() ? hops.front() : *client);
  if (!address) return;  // garbage: keep the real peer rather than invent a client
  auto ports = header_items(scope.headers, "x-forwarded-port");
  auto port = ports.empty() ? std::nullopt : parse_port(ports.back());
  scope.client = protocol::Endpoint{address->to_string(), port.value_or(0)};
}

}  // namespace asgi_bridge::gateway
