// parse_config: the --tls-cert/--tls-key pair (files are checked at startup, not here), the head limits,
// the bus's security rule (a non-loopback zmq:// bus needs CURVE or --bus-insecure), the
// --bus-tls-* options of rediss:// buses, the numbers every option must be, and the
// WebSocket permessage-deflate options.
#include "config.hpp"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace asgi_bridge::gateway {
namespace {

ParseOutcome parse(std::vector<std::string> args) {
  args.insert(args.begin(), "asgi-bridge");
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  return parse_config(static_cast<int>(argv.size()), argv.data());
}

TEST(ConfigTls, OffByDefault) {
  auto outcome = parse({});
  ASSERT_TRUE(outcome.config);
  EXPECT_FALSE(outcome.config->tls());
}

TEST(ConfigTls, CertificateAndKeyTogether) {
  auto outcome = parse({"--tls-cert", "cert.pem", "--tls-key", "key.pem"});
  ASSERT_TRUE(outcome.config);
  EXPECT_TRUE(outcome.config->tls());
  EXPECT_EQ(outcome.config->tls_cert, "cert.pem");
  EXPECT_EQ(outcome.config->tls_key, "key.pem");
}

TEST(ConfigTls, OneWithoutTheOtherIsAnError) {
  auto cert_only = parse({"--tls-cert", "cert.pem"});
  EXPECT_FALSE(cert_only.config);
  EXPECT_NE(cert_only.exit_code, 0);
  auto key_only = parse({"--tls-key", "key.pem"});
  EXPECT_FALSE(key_only.config);
  EXPECT_NE(key_only.exit_code, 0);
}

TEST(ConfigTls, ReadsTheEnvironment) {
  ::setenv("ASGI_BRIDGE_TLS_CERT", "env-cert.pem", 1);
  ::setenv("ASGI_BRIDGE_TLS_KEY", "env-key.pem", 1);
  auto outcome = parse({});
  ::unsetenv("ASGI_BRIDGE_TLS_CERT");
  ::unsetenv("ASGI_BRIDGE_TLS_KEY");
  ASSERT_TRUE(outcome.config);
  EXPECT_EQ(outcome.config->tls_cert, "env-cert.pem");
  EXPECT_EQ(outcome.config->tls_key, "env-key.pem");
}

TEST(ConfigHeadLimits, DefaultsOptionAndEnvironment) {
  auto defaults = parse({});
  ASSERT_TRUE(defaults.config);
  EXPECT_EQ(defaults.config->max_header_count, 100u);
  EXPECT_EQ(defaults.config->max_header_size, 16384u);
  auto given = parse({"--max-header-count", "7"});
  ASSERT_TRUE(given.config);
  EXPECT_EQ(given.config->max_header_count, 7u);
  ::setenv("ASGI_BRIDGE_MAX_HEADER_COUNT", "9", 1);
  auto from_env = parse({});
  ::unsetenv("ASGI_BRIDGE_MAX_HEADER_COUNT");
  ASSERT_TRUE(from_env.config);
  EXPECT_EQ(from_env.config->max_header_count, 9u);
  // A zero limit would refuse every request.
  EXPECT_FALSE(parse({"--max-header-count", "0"}).config);
  EXPECT_FALSE(parse({"--max-header-size", "0"}).config);
}

TEST(ConfigMinBodyRate, DefaultsLikeApacheMinRate) {
  auto outcome = parse({});
  ASSERT_TRUE(outcome.config);
  EXPECT_EQ(outcome.config->min_body_rate, 500u);
  EXPECT_EQ(outcome.config->min_body_rate_grace.count(), 10);
}

TEST(ConfigMinBodyRate, OptionsAndEnvironment) {
  auto outcome = parse({"--min-body-rate", "0", "--min-body-rate-grace", "2.5"});
  ASSERT_TRUE(outcome.config);
  EXPECT_EQ(outcome.config->min_body_rate, 0u);  // off
  EXPECT_EQ(outcome.config->min_body_rate_grace.count(), 2.5);
  ::setenv("ASGI_BRIDGE_MIN_BODY_RATE", "1000", 1);
  ::setenv("ASGI_BRIDGE_MIN_BODY_RATE_GRACE", "3", 1);
  auto from_env = parse({});
  ::unsetenv("ASGI_BRIDGE_MIN_BODY_RATE");
  ::unsetenv("ASGI_BRIDGE_MIN_BODY_RATE_GRACE");
  ASSERT_TRUE(from_env.config);
  EXPECT_EQ(from_env.config->min_body_rate, 1000u);
  EXPECT_EQ(from_env.config->min_body_rate_grace.count(), 3);
}

TEST(ConfigMinBodyRate, NegativeIsAnError) {
  EXPECT_FALSE(parse({"--min-body-rate", "-1"}).config);
  EXPECT_FALSE(parse({"--min-body-rate-grace", "-1"}).config);
}

bool accepted(std::vector<std::string> args) { return parse(std::move(args)).config.has_value(); }

TEST(ConfigBusSecurity, LoopbackIpcAndRedisNeedNoCurve) {
  for (const char* url : {"zmq://127.0.0.1:5555", "zmq://127.0.0.2:5555", "zmq://localhost:5555",
                          "zmq://[::1]:5555", "zmq+ipc:///tmp/bus.sock", "redis://10.0.0.1:6379/0"}) {
    EXPECT_TRUE(accepted({"--bus", url})) << url;
  }
}

TEST(ConfigBusSecurity, NonLoopbackZmqNeedsCurveOrBusInsecure) {
  for (const char* url : {"zmq://0.0.0.0:5555", "zmq://*:5555", "zmq://10.1.2.3:5555", "zmq://[::]:5555",
                          "zmq://eth0:5555", "zmq://bus.example.com:5555", "zmq://127.example.com:5555"}) {
    EXPECT_FALSE(accepted({"--bus", url})) << url;
    EXPECT_TRUE(accepted({"--bus", url, "--bus-insecure"})) << url;
    EXPECT_TRUE(accepted({"--bus", url, "--bus-secret-key", "gw.key_secret", "--bus-authorized-keys", "workers"}))
        << url;
  }
  ::setenv("ASGI_BRIDGE_BUS_INSECURE", "1", 1);
  EXPECT_TRUE(accepted({"--bus", "zmq://0.0.0.0:5555"}));
  ::unsetenv("ASGI_BRIDGE_BUS_INSECURE");
}

TEST(ConfigBusSecurity, CurveNeedsBothKeysAndAZmqBus) {
  EXPECT_FALSE(accepted({"--bus-secret-key", "gw.key_secret"}));
  EXPECT_FALSE(accepted({"--bus-authorized-keys", "workers"}));
  EXPECT_FALSE(accepted({"--bus", "redis://127.0.0.1:6379/0", "--bus-secret-key", "gw.key_secret",
                         "--bus-authorized-keys", "workers"}));
  ::setenv("ASGI_BRIDGE_BUS_SECRET_KEY", "env.key_secret", 1);
  ::setenv("ASGI_BRIDGE_BUS_AUTHORIZED_KEYS", "env-workers", 1);
  auto outcome = parse({});
  ::unsetenv("ASGI_BRIDGE_BUS_SECRET_KEY");
  ::unsetenv("ASGI_BRIDGE_BUS_AUTHORIZED_KEYS");
  ASSERT_TRUE(outcome.config);
  EXPECT_EQ(outcome.config->bus_secret_key, "env.key_secret");
  EXPECT_EQ(outcome.config->bus_authorized_keys, "env-workers");
}

// CLI11 reads "-1" into an unsigned option as 2^64 - 1: a limit of none.
// Every numeric option refuses it, from the command line and the environment.
const std::vector<std::string> k_numeric_options = {
    "threads",          "max-body-size",      "max-header-size",           "max-header-count",
    "max-message-size", "group-relay-rate",   "min-body-rate",             "http-timeout",
    "dispatch-timeout", "websocket-timeout",  "websocket-connect-timeout", "ping-interval",
    "ping-timeout",     "keepalive-timeout",  "request-timeout",           "min-body-rate-grace",
    "drain-timeout",    "heartbeat-interval", "limit-connections", "bus-shared-memory"};

// parse({}) with ASGI_BRIDGE_<OPTION> set to `value`.
ParseOutcome parse_with_env(const std::string& option, const std::string& value) {
  std::string env = "ASGI_BRIDGE_";
  for (char c : option) env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  ::setenv(env.c_str(), value.c_str(), 1);
  testing::internal::CaptureStderr();
  auto outcome = parse({});
  testing::internal::GetCapturedStderr();
  ::unsetenv(env.c_str());
  return outcome;
}

TEST(ConfigNumbers, NegativeOnTheCommandLineIsAnError) {
  for (const auto& option : k_numeric_options) {
    testing::internal::CaptureStderr();
    auto outcome = parse({"--" + option, "-1"});
    auto error = testing::internal::GetCapturedStderr();
    EXPECT_FALSE(outcome.config) << option;
    EXPECT_NE(outcome.exit_code, 0) << option;
    EXPECT_NE(error.find("--" + option + ": expected a number"), std::string::npos) << option << ": " << error;
  }
}

TEST(ConfigNumbers, NegativeInTheEnvironmentIsAnError) {
  for (const auto& option : k_numeric_options) {
    auto outcome = parse_with_env(option, "-1");
    EXPECT_FALSE(outcome.config) << option;
    EXPECT_NE(outcome.exit_code, 0) << option;
  }
}

// docs/protocol.md §1.1: 0 (no ring) or a power of two from 64 KiB to 64 MiB.
TEST(ConfigBusSharedMemory, DefaultOptionEnvironmentAndBounds) {
  EXPECT_EQ(parse({}).config->bus_shared_memory, 1048576u);
  EXPECT_EQ(parse({"--bus-shared-memory", "0"}).config->bus_shared_memory, 0u);
  EXPECT_EQ(parse({"--bus-shared-memory", "65536"}).config->bus_shared_memory, 65536u);
  EXPECT_EQ(parse({"--bus-shared-memory", "67108864"}).config->bus_shared_memory, 67108864u);
  EXPECT_EQ(parse_with_env("bus-shared-memory", "4194304").config->bus_shared_memory, 4194304u);
  for (std::string bad : {"1000000", "32768", "134217728", "65537", "1.5", "1e6"}) {
    testing::internal::CaptureStderr();
    auto outcome = parse({"--bus-shared-memory", bad});
    auto error = testing::internal::GetCapturedStderr();
    EXPECT_FALSE(outcome.config) << bad;
    EXPECT_NE(error.find("--bus-shared-memory: expected 0 (no ring) or a power of two from 65536 to 67108864"),
              std::string::npos)
        << bad << ": " << error;
  }
  EXPECT_FALSE(parse_with_env("bus-shared-memory", "12345").config);
}

TEST(ConfigNumbers, HugeNegativeSizeDoesNotWrapToASmallOne) {
  // strtoull("-18446744073709551615") is 1.
  EXPECT_FALSE(parse({"--max-body-size", "-18446744073709551615"}).config);
}

TEST(ConfigNumbers, TimesAreFiniteAndBounded) {
  for (const char* bad : {"nan", "inf", "-inf", "1e300", "-0.5"}) {
    EXPECT_FALSE(parse({"--http-timeout", bad}).config) << bad;
    EXPECT_FALSE(parse_with_env("keepalive-timeout", bad).config) << bad;
  }
  auto fine = parse({"--http-timeout", "0", "--keepalive-timeout", "2.5"});
  ASSERT_TRUE(fine.config);
  EXPECT_EQ(fine.config->http_timeout.count(), 0);
  EXPECT_EQ(fine.config->keepalive_timeout.count(), 2.5);
}

TEST(ConfigNumbers, ZeroAndPositiveSizesStillParse) {
  auto outcome = parse({"--max-body-size", "0", "--max-message-size", "1048576", "--group-relay-rate", "0"});
  ASSERT_TRUE(outcome.config);
  EXPECT_EQ(outcome.config->max_body_size, 0u);
  EXPECT_EQ(outcome.config->max_message_size, 1048576u);
  auto from_env = parse_with_env("max-body-size", "4096");
  ASSERT_TRUE(from_env.config);
  EXPECT_EQ(from_env.config->max_body_size, 4096u);
}

TEST(ConfigBusTls, OptionsBelongToRedissAndACertificateNeedsItsKey) {
  const char* tls = "rediss://127.0.0.1:6380/0";
  EXPECT_TRUE(accepted({"--bus", tls}));
  EXPECT_TRUE(accepted({"--bus", tls, "--bus-tls-ca-file", "ca.crt", "--bus-tls-cert", "c.crt", "--bus-tls-key", "c.key"}));
  EXPECT_TRUE(accepted({"--bus", tls, "--bus-tls-insecure"}));
  EXPECT_FALSE(accepted({"--bus", tls, "--bus-tls-cert", "c.crt"}));
  EXPECT_FALSE(accepted({"--bus", tls, "--bus-tls-key", "c.key"}));
  EXPECT_FALSE(accepted({"--bus", "redis://127.0.0.1:6379/0", "--bus-tls-ca-file", "ca.crt"}));
  EXPECT_FALSE(accepted({"--bus-tls-insecure"}));  // the default zmq:// bus
  ::setenv("ASGI_BRIDGE_BUS_TLS_CA_FILE", "env-ca.crt", 1);
  ::setenv("ASGI_BRIDGE_BUS_TLS_INSECURE", "1", 1);
  auto outcome = parse({"--bus", tls});
  ::unsetenv("ASGI_BRIDGE_BUS_TLS_CA_FILE");
  ::unsetenv("ASGI_BRIDGE_BUS_TLS_INSECURE");
  ASSERT_TRUE(outcome.config);
  EXPECT_EQ(outcome.config->bus_tls_ca_file, "env-ca.crt");
  EXPECT_TRUE(outcome.config->bus_tls_insecure);
}

// Daphne's and uvicorn's names are aliases of the same options.
TEST(ConfigAliases, DaphneAndUvicornNames) {
  auto daphne = parse({"-b", "0.0.0.0", "-p", "9001", "-u", "/tmp/a.sock", "-t", "7", "--websocket_timeout", "60",
                       "--websocket_connect_timeout", "3", "-s", "daphne"});
  ASSERT_TRUE(daphne.config);
  ASSERT_EQ(daphne.config->binds.size(), 1u);
  EXPECT_EQ(daphne.config->binds[0].host, "0.0.0.0");
  EXPECT_EQ(daphne.config->binds[0].port, 9001);
  EXPECT_EQ(daphne.config->unix_sockets, std::vector<std::string>{"/tmp/a.sock"});
  EXPECT_EQ(daphne.config->http_timeout.count(), 7);
  EXPECT_EQ(daphne.config->websocket_timeout.count(), 60);
  EXPECT_EQ(daphne.config->websocket_connect_timeout.count(), 3);
  EXPECT_EQ(daphne.config->server_name, "daphne");
  auto uvicorn = parse({"--host", "::1", "--port", "9002", "--uds", "/tmp/b.sock", "--fd", "5",
                        "--forwarded-allow-ips", "10.0.0.0/8", "--ws-ping-interval", "4", "--ws-ping-timeout", "6",
                        "--limit-concurrency", "50", "--backlog", "128", "--timeout-keep-alive", "9",
                        "--ws-max-size", "1000", "--timeout-graceful-shutdown", "11"});
  ASSERT_TRUE(uvicorn.config);
  const auto& c = *uvicorn.config;
  ASSERT_EQ(c.binds.size(), 1u);
  EXPECT_EQ(c.binds[0].host, "::1");
  EXPECT_EQ(c.binds[0].port, 9002);
  EXPECT_EQ(c.unix_sockets, std::vector<std::string>{"/tmp/b.sock"});
  EXPECT_EQ(c.inherited_fds, std::vector<int>{5});
  EXPECT_TRUE(c.trusted_proxies.contains("10.1.2.3"));
  EXPECT_FALSE(c.trusted_proxies.contains("127.0.0.1"));
  EXPECT_EQ(c.ping_interval.count(), 4);
  EXPECT_EQ(c.ping_timeout.count(), 6);
  EXPECT_EQ(c.limit_connections, 50u);
  EXPECT_EQ(c.backlog, 128u);
  EXPECT_EQ(c.keepalive_timeout.count(), 9);
  EXPECT_EQ(c.max_message_size, 1000u);
  EXPECT_EQ(c.drain_timeout.count(), 11);
  auto ssl = parse({"--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"});
  ASSERT_TRUE(ssl.config);
  EXPECT_EQ(ssl.config->tls_cert, "c.pem");
  EXPECT_EQ(ssl.config->tls_key, "k.pem");
  // One option, whatever its name: an alias and its option together add up.
  auto both = parse({"--bind", "127.0.0.1:1", "-b", "127.0.0.2:2", "--host", "[::1]:3"});
  ASSERT_TRUE(both.config);
  ASSERT_EQ(both.config->binds.size(), 3u);
  EXPECT_EQ(both.config->binds[2].host, "::1");
  EXPECT_EQ(both.config->binds[2].port, 3);
}

TEST(ConfigBinds, DefaultsAndPort) {
  auto none = parse({});
  ASSERT_TRUE(none.config);
  ASSERT_EQ(none.config->binds.size(), 1u);
  EXPECT_EQ(none.config->binds[0].port, 8000);
  auto unix_only = parse({"--uds", "/tmp/x.sock"});
  ASSERT_TRUE(unix_only.config);
  EXPECT_TRUE(unix_only.config->binds.empty());
  auto fd_only = parse({"--fd", "3"});
  ASSERT_TRUE(fd_only.config);
  EXPECT_TRUE(fd_only.config->binds.empty());
  // A port given explicitly is listened on, as in Daphne, next to the rest.
  auto port_and_unix = parse({"--uds", "/tmp/x.sock", "-p", "9003"});
  ASSERT_TRUE(port_and_unix.config);
  ASSERT_EQ(port_and_unix.config->binds.size(), 1u);
  EXPECT_EQ(port_and_unix.config->binds[0].host, "127.0.0.1");
  EXPECT_EQ(port_and_unix.config->binds[0].port, 9003);
  EXPECT_FALSE(parse({"--bind", "1.2.3.4:99999"}).config);
  EXPECT_FALSE(parse({"--bind", "[::1"}).config);
  EXPECT_FALSE(parse({"--port", "70000"}).config);
  EXPECT_FALSE(parse({"--admin", "127.0.0.1"}).config) << "the admin endpoint needs its port";
}

TEST(ConfigBinds, SeveralFromTheEnvironmentCommaSeparated) {
  ::setenv("ASGI_BRIDGE_BIND", "127.0.0.1:7001,[::1]:7002", 1);
  ::setenv("ASGI_BRIDGE_UNIX_SOCKET", "/tmp/a.sock,/tmp/b.sock", 1);
  ::setenv("ASGI_BRIDGE_FD", "3,4", 1);
  auto outcome = parse({});
  ::unsetenv("ASGI_BRIDGE_BIND");
  ::unsetenv("ASGI_BRIDGE_UNIX_SOCKET");
  ::unsetenv("ASGI_BRIDGE_FD");
  ASSERT_TRUE(outcome.config);
  ASSERT_EQ(outcome.config->binds.size(), 2u);
  EXPECT_EQ(outcome.config->binds[1].host, "::1");
  EXPECT_EQ(outcome.config->unix_sockets, (std::vector<std::string>{"/tmp/a.sock", "/tmp/b.sock"}));
  EXPECT_EQ(outcome.config->inherited_fds, (std::vector<int>{3, 4}));
}

TEST(ConfigBinds, SystemdSocketActivation) {
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDS", "2", 1);
  auto ours = parse({});
  ASSERT_TRUE(ours.config);
  EXPECT_EQ(ours.config->inherited_fds, (std::vector<int>{3, 4}));
  EXPECT_TRUE(ours.config->binds.empty());
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr) << "not passed on";
  ::setenv("LISTEN_PID", "1", 1);  // another process's sockets
  ::setenv("LISTEN_FDS", "2", 1);
  auto theirs = parse({});
  ASSERT_TRUE(theirs.config);
  EXPECT_TRUE(theirs.config->inherited_fds.empty());
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDS", "two", 1);
  EXPECT_FALSE(parse({}).config);
  ::unsetenv("LISTEN_PID");  // the tests after this one parse a clean environment
  ::unsetenv("LISTEN_FDS");
}

TEST(ConfigVersion, PrintsAndExitsZero) {
  auto outcome = parse({"--version"});
  EXPECT_FALSE(outcome.config);
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_FALSE(version().empty());
}

TEST(ConfigWsDeflate, OnByDefaultAndTakesTrueOrFalseAsUvicorn) {
  auto defaults = parse({});
  ASSERT_TRUE(defaults.config);
  EXPECT_TRUE(defaults.config->ws_per_message_deflate);
  EXPECT_EQ(defaults.config->ws_deflate_server_window_bits, 12);
  EXPECT_EQ(defaults.config->ws_deflate_client_window_bits, 12);
  EXPECT_FALSE(defaults.config->ws_deflate_server_no_context_takeover);
  EXPECT_FALSE(defaults.config->ws_deflate_client_no_context_takeover);
  auto off = parse({"--ws-per-message-deflate", "false"});
  ASSERT_TRUE(off.config);
  EXPECT_FALSE(off.config->ws_per_message_deflate);
  auto on = parse({"--ws-per-message-deflate", "true"});
  ASSERT_TRUE(on.config);
  EXPECT_TRUE(on.config->ws_per_message_deflate);
  auto from_env = parse_with_env("ws-per-message-deflate", "false");
  ASSERT_TRUE(from_env.config);
  EXPECT_FALSE(from_env.config->ws_per_message_deflate);
  EXPECT_FALSE(parse_with_env("ws-per-message-deflate", "maybe").config);
}

TEST(ConfigWsDeflate, WindowBitsFrom9To15) {
  auto outcome = parse({"--ws-deflate-server-window-bits", "9", "--ws-deflate-client-window-bits", "15",
                        "--ws-deflate-server-no-context-takeover", "--ws-deflate-client-no-context-takeover"});
  ASSERT_TRUE(outcome.config);
  EXPECT_EQ(outcome.config->ws_deflate_server_window_bits, 9);
  EXPECT_EQ(outcome.config->ws_deflate_client_window_bits, 15);
  EXPECT_TRUE(outcome.config->ws_deflate_server_no_context_takeover);
  EXPECT_TRUE(outcome.config->ws_deflate_client_no_context_takeover);
  // 8: zlib would silently use 9 (Beast refuses it); 16 is no deflate window.
  for (const char* bits : {"8", "16", "-1", "nan"}) {
    EXPECT_FALSE(parse_with_env("ws-deflate-server-window-bits", bits).config) << bits;
    EXPECT_FALSE(parse_with_env("ws-deflate-client-window-bits", bits).config) << bits;
  }
}

TEST(ConfigHttp2, OnByDefaultOffByOptionFlagOrEnvironment) {
  auto defaults = parse({});
  ASSERT_TRUE(defaults.config);
  EXPECT_TRUE(defaults.config->http2);
  EXPECT_EQ(defaults.config->http2_max_concurrent_streams, 100u);
  for (auto args : {std::vector<std::string>{"--http2", "false"}, std::vector<std::string>{"--no-http2"}}) {
    auto outcome = parse(args);
    ASSERT_TRUE(outcome.config);
    EXPECT_FALSE(outcome.config->http2);
  }
  ::setenv("ASGI_BRIDGE_HTTP2", "0", 1);
  auto from_env = parse({});
  ::unsetenv("ASGI_BRIDGE_HTTP2");
  ASSERT_TRUE(from_env.config);
  EXPECT_FALSE(from_env.config->http2);
  auto streams = parse({"--http2-max-concurrent-streams", "8"});
  ASSERT_TRUE(streams.config);
  EXPECT_EQ(streams.config->http2_max_concurrent_streams, 8u);
  EXPECT_FALSE(parse({"--http2-max-concurrent-streams", "0"}).config);
}

}  // namespace
}  // namespace asgi_bridge::gateway
