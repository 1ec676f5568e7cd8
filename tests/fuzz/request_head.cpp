// Fuzz target (c): a client's request as the gateway reads it. The bytes go
// through Beast's basic_parser put() in the gateway's RequestParser, fed in
// pieces of a size the input's first byte chooses (as reads from a socket
// arrive), with the gateway's limits; a head that parses is then checked and
// turned into an ASGI scope as http_session.cpp does. Nothing may crash, hang
// or read out of bounds, whatever the client sends.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/error.hpp>

#include "asgi_adapter.hpp"
#include "config.hpp"
#include "request_head_check.hpp"
#include "request_parser.hpp"

using namespace asgi_bridge;
namespace http = boost::beast::http;

namespace {

const gateway::Config& fuzz_config() {
  static const gateway::Config config = [] {
    gateway::Config c;
    c.proxy_headers = true;  // X-Forwarded-* from the (trusted) loopback peer are applied too
    c.root_path = "/root";
    return c;
  }();
  return config;
}

gateway::SocketEnds fuzz_ends() {
  gateway::SocketEnds ends;
  ends.client = protocol::Endpoint{"127.0.0.1", 40000};
  ends.server = protocol::Endpoint{"127.0.0.1", 8000};
  ends.peer_address = boost::asio::ip::make_address("127.0.0.1");
  return ends;
}

// What http_session.cpp does with a head once Beast has parsed it.
void check_head(gateway::RequestParser& parser) {
  const auto& config = fuzz_config();
  auto& request = parser.request();
  (void)gateway::has_valid_host(request);
  (void)gateway::offered_subprotocols(request);
  for (auto type : {protocol::ScopeType::http, protocol::ScopeType::websocket}) {
    (void)gateway::make_scope(request, parser.headers(), type, fuzz_ends(), config);
  }
}

// The gateway's own count and grammar check, which runs before Beast sees a
// head: fed in pieces it must reach the verdict it reaches on the bytes whole
// (a client chooses how its head is split), and a complete head is never
// longer than the limit or the input.
void check_head_check(std::string_view input, std::size_t step) {
  gateway::HeadLimits limits{1024, 16};
  auto whole = gateway::check_request_head(input, limits);
  gateway::RequestHeadCheck pieces(limits);
  gateway::HeadVerdict verdict;
  for (std::size_t end = std::min(step, input.size());; end = std::min(end + step, input.size())) {
    verdict = pieces.feed(input.substr(0, end));
    if (verdict.state != gateway::HeadVerdict::State::need_more || end == input.size()) break;
  }
  if (verdict.state != whole.state || verdict.status != whole.status) std::abort();
  if (whole.complete() && (whole.head_bytes > limits.max_bytes || whole.head_bytes > input.size())) std::abort();
  if (whole.rejected() && whole.status != 400 && whole.status != 431 && whole.status != 501) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t step = data[0] % 64 + 1;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  check_head_check(input, step);

  gateway::RequestParser parser;
  parser.header_limit(static_cast<std::uint32_t>(fuzz_config().max_header_size));
  parser.body_limit(64 * 1024);
  parser.eager(true);
  char body[4096];
  std::string pending;
  std::size_t fed = 0;
  bool head_checked = false;
  // Each turn feeds or consumes something; the bound only guards the target itself.
  for (std::size_t turn = 0; turn < 4 * size + 16 && !parser.is_done(); ++turn) {
    if (fed < input.size()) {
      auto n = std::min(step, input.size() - fed);
      pending.append(input.substr(fed, n));
      fed += n;
    }
    boost::beast::error_code ec;
    parser.lend_body_buffer(body, sizeof body);
    pending.erase(0, parser.put(boost::asio::buffer(pending), ec));
    if (!head_checked && parser.is_header_done()) {
      head_checked = true;
      check_head(parser);
    }
    if (ec == http::error::need_more || ec == http::error::need_buffer) {
      if (fed < input.size() || ec == http::error::need_buffer) continue;
      parser.put_eof(ec);  // the client closed: the parser decides what that means
      break;
    }
    if (ec) break;  // rejected: the gateway answers 400/413/431 and closes
  }
  return 0;
}
