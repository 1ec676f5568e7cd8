#pragma once
// --proxy-headers: behind a reverse proxy or load balancer, the client the app
// should see is the one the proxy names in X-Forwarded-For / -Proto / -Port,
// not the proxy's own address; the app's mount point is the one it names in
// Daphne-Root-Path. Only a peer listed in --trusted-proxies may say
// so: anyone else could forge those headers.
#include <optional>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include "asgi_bridge/protocol/scope.hpp"

namespace asgi_bridge::gateway {

class TrustedProxies {
 public:
  // Comma-separated addresses and CIDR networks (10.0.0.0/8, fd00::/8), or
  // "*" for every peer. Throws std::invalid_argument naming a bad entry.
  static TrustedProxies parse(std::string_view list);

  bool contains(const boost::asio::ip::address& address) const;
  bool contains(std::string_view address) const;

 private:
  bool everyone_ = false;
  std::vector<boost::asio::ip::network_v4> v4_;
  std::vector<boost::asio::ip::network_v6> v6_;
};

// Rewrites scope.client and scope.scheme from the X-Forwarded-* headers, and
// scope.root_path from Daphne-Root-Path (then removed from the headers), when
// `peer` (the TCP peer) is trusted; leaves the scope alone otherwise. No peer
// means a Unix socket peer, which is always trusted: only processes on this
// host allowed to open the socket file can connect (uvicorn does the same).
// The client is the rightmost X-Forwarded-For entry that is not itself a
// trusted proxy (entries further left were written by the client and cannot
// be believed), or the leftmost if every entry is trusted.
void apply_proxy_headers(protocol::Scope& scope, const std::optional<boost::asio::ip::address>& peer,
                         const TrustedProxies& trusted);

}  // namespace asgi_bridge::gateway
