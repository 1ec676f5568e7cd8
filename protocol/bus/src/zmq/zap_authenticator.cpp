#include "zmq/zap_authenticator.hpp"

#include <array>

#include <zmq_addon.hpp>

#include "zmq/again_on_eintr.hpp"

namespace asgi_bridge::bus {
namespace {

// RFC 27 request frames.
enum Frame : std::size_t { version, request_id, domain, address, routing_id, mechanism, credentials };

std::string z85(const zmq::message_t& binary_key) {
  std::array<char, 41> text{};
  if (binary_key.size() != 32 || !zmq_z85_encode(text.data(), binary_key.data<std::uint8_t>(), 32)) return {};
  return text.data();
}

}  // namespace

ZapAuthenticator::ZapAuthenticator(boost::asio::io_context& io, zmq::context_t& context,
                                   const std::vector<std::string>& keys, OnRefused on_refused)
    : socket_(context, zmq::socket_type::rep), on_refused_(std::move(on_refused)),
      reader_(io, socket_, [this] { return answer_one(); }) {
  set_keys(keys);
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("inproc://zeromq.zap.01");
  reader_.start();
}

void ZapAuthenticator::set_keys(const std::vector<std::string>& keys) { keys_ = {keys.begin(), keys.end()}; }

void ZapAuthenticator::stop() {
  reader_.stop();
  socket_.close();
}

bool ZapAuthenticator::answer_one() {
  std::vector<zmq::message_t> request;
  if (!again_on_eintr([&] { return zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait); })) return false;
  if (request.size() < 2) return true;  // not RFC 27: libzmq never sends it; REP needs no reply to skip it
  std::string user_id;
  auto refusal = decide(request, user_id);
  if (!refusal.empty() && on_refused_ && request.size() > address) {
    on_refused_(request[address].to_string_view(), refusal);
  }
  std::array<zmq::message_t, 6> reply{zmq::message_t(std::string_view("1.0")), std::move(request[request_id]),
                                      zmq::message_t(std::string_view(refusal.empty() ? "200" : "400")),
                                      zmq::message_t(std::string_view(refusal.empty() ? "OK" : "Refused")),
                                      zmq::message_t(user_id), zmq::message_t()};
  for (std::size_t i = 0; i < reply.size(); ++i) {  // frame by frame: a retried frame is sent once
    auto flags = i + 1 < reply.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait : zmq::send_flags::dontwait;
    again_on_eintr([&] { return socket_.send(reply[i], flags); });
  }
  return true;
}

// Empty when the peer is allowed (user_id: its Z85 key), else the reason.
std::string ZapAuthenticator::decide(const std::vector<zmq::message_t>& request, std::string& user_id) {
  if (request.size() <= credentials || request[version].to_string_view() != "1.0") return "malformed ZAP request";
  if (request[mechanism].to_string_view() != "CURVE") return "no CURVE key";
  auto key = z85(request[credentials]);
  if (keys_.count(key) == 0) return "unknown key " + key + " (not in --bus-authorized-keys)";
  user_id = std::move(key);
  return {};
}

}  // namespace asgi_bridge::bus
