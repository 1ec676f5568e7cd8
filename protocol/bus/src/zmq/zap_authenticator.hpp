#pragma once
// The gateway's ZAP handler (ZeroMQ Authentication Protocol, RFC 27): libzmq
// asks it, on inproc://zeromq.zap.01 of the ROUTER's context, about every
// CURVE client that completed the key exchange; we answer 200 for a public
// key on the allow-list and 400 otherwise (libzmq then closes the
// connection, and the worker's monitor sees HANDSHAKE_FAILED_AUTH 400).
// Runs on the bus thread; must exist before the ROUTER binds.
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <zmq.hpp>

#include "socket_reader.hpp"

namespace asgi_bridge::bus {

class ZapAuthenticator {
 public:
  using OnRefused = std::function<void(std::string_view address, std::string_view reason)>;

  ZapAuthenticator(boost::asio::io_context& io, zmq::context_t& context, const std::vector<std::string>& keys,
                   OnRefused on_refused);
  // Z85 public keys. A removed key is refused from its next handshake on;
  // connections already made with it are not affected (libzmq cannot close
  // one peer of a ROUTER): docs/security.md.
  void set_keys(const std::vector<std::string>& keys);
  std::size_t key_count() const { return keys_.size(); }
  void stop();

 private:
  bool answer_one();
  std::string decide(const std::vector<zmq::message_t>& request, std::string& user_id);

  zmq::socket_t socket_;
  std::unordered_set<std::string> keys_;
  OnRefused on_refused_;
  SocketReader reader_;
};

}  // namespace asgi_bridge::bus
