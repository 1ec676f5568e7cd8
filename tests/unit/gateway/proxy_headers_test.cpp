// --proxy-headers: who is trusted, and what a trusted proxy's headers change.
#include "proxy_headers.hpp"

#include <stdexcept>

#include <gtest/gtest.h>

namespace asgi_bridge::gateway {
namespace {

namespace ip = boost::asio::ip;

protocol::Scope scope_with(protocol::Headers headers, protocol::ScopeType type = protocol::ScopeType::http) {
  protocol::Scope scope;
  scope.type = type;
  scope.scheme = type == protocol::ScopeType::http ? "http" : "ws";
  scope.headers = std::move(headers);
  scope.client = protocol::Endpoint{"127.0.0.1", 40000};
  return scope;
}

const auto kLoopback = ip::make_address("127.0.0.1");

TEST(TrustedProxies, AddressesNetworksAndEveryone) {
  auto trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8,fd00::/8");
  EXPECT_TRUE(trusted.contains(ip::make_address("127.0.0.1")));
  EXPECT_FALSE(trusted.contains(ip::make_address("127.0.0.2")));
  EXPECT_TRUE(trusted.contains(ip::make_address("10.200.3.4")));
  EXPECT_FALSE(trusted.contains(ip::make_address("11.0.0.1")));
  EXPECT_TRUE(trusted.contains(ip::make_address("fd12::1")));
  EXPECT_FALSE(trusted.contains(ip::make_address("fe80::1")));
  EXPECT_TRUE(trusted.contains(ip::make_address("::ffff:10.1.2.3"))) << "v4-mapped peers of a dual-stack socket";
  EXPECT_TRUE(trusted.contains("10.9.9.9:4431"));
  EXPECT_FALSE(trusted.contains("unknown"));
  EXPECT_TRUE(TrustedProxies::parse("*").contains(ip::make_address("203.0.113.9")));
  EXPECT_FALSE(TrustedProxies::parse("").contains(kLoopback));
}

TEST(TrustedProxies, RejectsGarbage) {
  EXPECT_THROW(TrustedProxies::parse("10.0.0.0/33"), std::invalid_argument);
  EXPECT_THROW(TrustedProxies::parse("127.0.0.1,not-an-ip"), std::invalid_argument);
}

TEST(ApplyProxyHeaders, TrustedPeerSetsClientSchemeAndPort) {
  auto scope = scope_with({{"x-forwarded-for", "203.0.113.7"},
                           {"x-forwarded-proto", "https"},
                           {"x-forwarded-port", "51000"}});
  apply_proxy_headers(scope, kLoopback, TrustedProxies::parse("127.0.0.1"));
  EXPECT_EQ(scope.client, (protocol::Endpoint{"203.0.113.7", 51000}));
  EXPECT_EQ(scope.scheme, "https");
}

TEST(ApplyProxyHeaders, UntrustedPeerChangesNothing) {
  auto scope = scope_with({{"x-forwarded-for", "203.0.113.7"}, {"x-forwarded-proto", "https"}});
  apply_proxy_headers(scope, ip::make_address("192.0.2.1"), TrustedProxies::parse("127.0.0.1"));
  EXPECT_EQ(scope.client, (protocol::Endpoint{"127.0.0.1", 40000}));
  EXPECT_EQ(scope.scheme, "http");
}

TEST(ApplyProxyHeaders, UnixSocketPeerIsTrusted) {
  // Over --unix-socket there is no peer address and no client until the
  // proxy names one; the trusted list (here: nobody) does not apply.
  auto scope = scope_with({{"x-forwarded-for", "203.0.113.7"}, {"x-forwarded-proto", "https"}});
  scope.client.reset();
  apply_proxy_headers(scope, std::nullopt, TrustedProxies::parse(""));
  EXPECT_EQ(scope.client, (protocol::Endpoint{"203.0.113.7", 0}));
  EXPECT_EQ(scope.scheme, "https");
}

TEST(ApplyProxyHeaders, RightmostUntrustedHopIsTheClient) {
  // The client forged "1.1.1.1"; the trusted proxies 10.0.0.2 and 10.0.0.3
  // appended what they saw.
  auto scope = scope_with({{"x-forwarded-for", "1.1.1.1, 198.51.100.4"}, {"x-forwarded-for", "10.0.0.2"}});
  apply_proxy_headers(scope, ip::make_address("10.0.0.3"), TrustedProxies::parse("10.0.0.0/8"));
  EXPECT_EQ(scope.client, (protocol::Endpoint{"198.51.100.4", 0}));
}

TEST(ApplyProxyHeaders, EveryHopTrustedTakesTheFirst) {
  auto scope = scope_with({{"x-forwarded-for", "10.0.0.9, 10.0.0.2"}});
  apply_proxy_headers(scope, kLoopback, TrustedProxies::parse("127.0.0.1,10.0.0.0/8"));
  EXPECT_EQ(scope.client, (protocol::Endpoint{"10.0.0.9", 0}));
}

TEST(ApplyProxyHeaders, WebSocketSchemesAndGarbage) {
  auto ws = scope_with({{"x-forwarded-proto", "HTTPS"}}, protocol::ScopeType::websocket);
  apply_proxy_headers(ws, kLoopback, TrustedProxies::parse("127.0.0.1"));
  EXPECT_EQ(ws.scheme, "wss");

  auto bad = scope_with({{"x-forwarded-for", "unknown"}, {"x-forwarded-proto", "gopher"}});
  apply_proxy_headers(bad, kLoopback, TrustedProxies::parse("127.0.0.1"));
  EXPECT_EQ(bad.client, (protocol::Endpoint{"127.0.0.1", 40000}));
  EXPECT_EQ(bad.scheme, "http");

  auto v6 = scope_with({{"x-forwarded-for", "[2001:db8::5]:443"}});
  apply_proxy_headers(v6, kLoopback, TrustedProxies::parse("127.0.0.1"));
  EXPECT_EQ(v6.client, (protocol::Endpoint{"2001:db8::5", 0}));
}

TEST(ApplyProxyHeaders, DaphneRootPathFromATrustedProxy) {
  // As Daphne: percent-decoded, and taken out of the headers the app sees;
  // the nearest proxy's value (the last) wins.
  auto scope = scope_with({{"daphne-root-path", "/forged"}, {"host", "x"}, {"daphne-root-path", "/m%C3%BCnchen%20app"}});
  scope.root_path = "/from-option";
  apply_proxy_headers(scope, kLoopback, TrustedProxies::parse("127.0.0.1"));
  EXPECT_EQ(scope.root_path, "/m\xC3\xBCnchen app");
  ASSERT_EQ(scope.headers.size(), 1u);
  EXPECT_EQ(scope.headers[0].name, "host");
}

TEST(ApplyProxyHeaders, DaphneRootPathFromAnUntrustedPeerIsIgnored) {
  auto scope = scope_with({{"daphne-root-path", "/forged"}});
  scope.root_path = "/from-option";
  apply_proxy_headers(scope, ip::make_address("192.0.2.1"), TrustedProxies::parse("127.0.0.1"));
  EXPECT_EQ(scope.root_path, "/from-option");
}

}  // namespace
}  // namespace asgi_bridge::gateway
