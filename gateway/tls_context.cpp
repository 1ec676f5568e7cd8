#include "tls_context.hpp"

#include <openssl/ssl.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

namespace asgi_bridge::gateway {
namespace ssl = boost::asio::ssl;

namespace {

[[noreturn]] void fail(std::string_view option, const std::string& path, std::string_view why) {
  throw std::runtime_error(fmt::format("{} {}: {}", option, path, why));
}

// OpenSSL's own message for a missing file is "system library"; say which.
void check_readable(std::string_view option, const std::string& path) {
  std::ifstream file(path);
  if (!file) fail(option, path, fmt::format("cannot read: {}", std::strerror(errno)));
}

// ALPN in the server's order of preference: h2 first when HTTP/2 is on
// (docs/http2.md), then HTTP/1.1 (WebSocket upgrades ride on it). A client
// offering neither still gets a connection without ALPN.
constexpr unsigned char k_h2_then_http11[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr unsigned char k_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

int select_protocol(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* offered,
                    unsigned int offered_length, void* http2) {
  const unsigned char* ours = http2 ? k_h2_then_http11 : k_http11;
  unsigned int ours_length = http2 ? sizeof(k_h2_then_http11) : sizeof(k_http11);
  auto* selected = const_cast<unsigned char**>(out);
  int result = SSL_select_next_proto(selected, out_length, ours, ours_length, offered, offered_length);
  return result == OPENSSL_NPN_NEGOTIATED ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_NOACK;
}

// TLS 1.2 and 1.3 only, OpenSSL's default ciphers in the server's order of
// preference; no compression (CRIME) and no renegotiation (a client-driven
// CPU cost, and nothing here needs it).
void harden(ssl::context& context, bool http2) {
  context.set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  SSL_CTX* native = context.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  // The callback's argument only says whether h2 is offered: non-null for yes.
  SSL_CTX_set_alpn_select_cb(native, select_protocol, http2 ? const_cast<unsigned char*>(k_h2_then_http11) : nullptr);
}

}  // namespace

std::unique_ptr<ssl::context> make_tls_context(const Config& config) {
  if (!config.tls()) return nullptr;
  auto context = std::make_unique<ssl::context>(ssl::context::tls_server);
  harden(*context, config.http2);
  check_readable("--tls-cert", config.tls_cert);
  check_readable("--tls-key", config.tls_key);
  boost::system::error_code ec;
  context->use_certificate_chain_file(config.tls_cert, ec);
  if (ec) fail("--tls-cert", config.tls_cert, "not a PEM certificate chain: " + ec.message());
  context->use_private_key_file(config.tls_key, ssl::context::pem, ec);
  if (ec) fail("--tls-key", config.tls_key, "not a PEM private key for --tls-cert: " + ec.message());
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    fail("--tls-key", config.tls_key, "does not match the certificate of --tls-cert " + config.tls_cert);
  }
  return context;
}

}  // namespace asgi_bridge::gateway
