// asgi-bridge-raw-beast: the ceiling of the benchmarks (docs/performance.md).
//
// A minimal in-process Boost.Beast server answering like the benchmark app
// (bench/app.py) and the C++ example workers, on any path:
//
//   GET, HEAD   "Hello, world!" (text/plain)
//   POST        the request body back, with its content type
//   upgrade     WebSocket echo (text as text, bytes as bytes)
//
// No bus, no scope, no limits beyond Beast's defaults: what one Beast thread
// can do on this machine. Same coroutine style as the gateway, so the gap
// between the two is what the gateway adds.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;
using asio::redirect_error;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kMaxBody = 100 * 1024 * 1024;
constexpr std::size_t kReadBuffer = 64 * 1024;

awaitable<void> serve_websocket(tcp::socket socket, http::request<http::string_body> request) {
  websocket::stream<tcp::socket> ws(std::move(socket));
  ws.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& response) { response.set(http::field::server, "raw-beast"); }));
  boost::system::error_code ec;
  co_await ws.async_accept(request, redirect_error(use_awaitable, ec));
  if (ec) co_return;
  beast::flat_buffer buffer;
  for (;;) {
    co_await ws.async_read(buffer, redirect_error(use_awaitable, ec));
    if (ec) co_return;  // closed (Beast answered the close frame) or failed
    ws.text(ws.got_text());
    co_await ws.async_write(buffer.data(), redirect_error(use_awaitable, ec));
    if (ec) co_return;
    buffer.consume(buffer.size());
  }
}

http::response<http::string_body> answer(const http::request<http::string_body>& request) {
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  response.set(http::field::server, "raw-beast");
  if (request.method() == http::verb::get || request.method() == http::verb::head) {
    response.result(http::status::ok);
    response.set(http::field::content_type, "text/plain");
    response.body() = "Hello, world!";
  } else if (request.method() == http::verb::post) {
    response.result(http::status::ok);
    auto type = request[http::field::content_type];
    response.set(http::field::content_type, type.empty() ? "application/octet-stream" : type);
    response.body() = request.body();
  } else {
    response.result(http::status::method_not_allowed);
    response.set(http::field::content_type, "text/plain");
    response.body() = "Method not allowed\n";
  }
  response.prepare_payload();
  return response;
}

awaitable<void> serve(tcp::socket socket) {
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  // Beast reads at most the buffer's spare capacity (at least 512 bytes) at
  // a time: without room, a 64 KiB body would take over a hundred reads.
  beast::flat_buffer buffer;
  buffer.reserve(kReadBuffer);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxBody);
    co_await http::async_read(socket, buffer, parser, redirect_error(use_awaitable, ec));
    if (ec) co_return;
    if (websocket::is_upgrade(parser.get())) {
      buffer.clear();
      buffer.shrink_to_fit();  // an idle WebSocket keeps only its own buffer
      co_await serve_websocket(std::move(socket), parser.release());
      co_return;
    }
    auto response = answer(parser.get());
    co_await http::async_write(socket, response, redirect_error(use_awaitable, ec));
    if (ec || !response.keep_alive()) break;
  }
  socket.shutdown(tcp::socket::shutdown_send, ec);
}

awaitable<void> accept_loop(tcp::acceptor& acceptor) {
  for (;;) {
    boost::system::error_code ec;
    auto socket = co_await acceptor.async_accept(redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // e.g. out of descriptors: try again
    asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"asgi-bridge-raw-beast: minimal Beast server (hello, POST echo, WebSocket echo), the benchmark ceiling"};
  std::string bind = "127.0.0.1:8000";
  unsigned threads = 1;
  app.add_option("--bind", bind, "HOST:PORT to listen on")->capture_default_str();
  app.add_option("--threads", threads, "threads running the one io_context")->check(CLI::Range(1u, 64u))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto colon = bind.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "--bind: expected HOST:PORT, got %s\n", bind.c_str());
    return 2;
  }
  asio::io_context ioc(static_cast<int>(threads));
  tcp::acceptor acceptor(ioc);
  try {
    tcp::endpoint endpoint(asio::ip::make_address(bind.substr(0, colon)),
                           static_cast<unsigned short>(std::stoul(bind.substr(colon + 1))));
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot listen on %s: %s\n", bind.c_str(), e.what());
    return 1;
  }
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });
  asio::co_spawn(ioc, accept_loop(acceptor), asio::detached);
  std::fprintf(stderr, "raw-beast listening on %s (%u thread%s)\n", bind.c_str(), threads, threads == 1 ? "" : "s");

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return 0;
}
