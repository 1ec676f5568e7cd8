#pragma once
// The TLS settings of the --bind listeners (--tls-cert/--tls-key), built once
// at startup and shared by every shard: OpenSSL's SSL_CTX is safe to create
// connections from on several threads.
#include <memory>

#include <boost/asio/ssl/context.hpp>

#include "config.hpp"

namespace asgi_bridge::gateway {

// Null without --tls-cert. Throws std::runtime_error naming the option and
// the file when a file cannot be read, is not what it should be, or the key
// does not belong to the certificate.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const Config& config);

}  // namespace asgi_bridge::gateway
