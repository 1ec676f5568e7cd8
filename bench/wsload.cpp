// asgi-bridge-wsload: a WebSocket load generator on one thread.
//
//   --mode echo       N connections, each sends a --size byte message and
//                     waits for it back, for --duration seconds:
//                     messages/s, p50 and p99 round-trip latency
//   --mode handshake  N concurrent loops of connect + upgrade + close for
//                     --duration seconds: handshakes/s and p50 upgrade-to-101
//   --mode hold       opens N connections one after another and keeps them
//                     open: p50 upgrade-to-101 of those handshakes; prints
//                     "HELD n" once all are open, then holds them for
//                     --duration seconds (or until stdin closes with --stdin);
//                     with --warm each sends one --size byte message and reads
//                     its echo first (a compressor and inflater in use, not idle)
//   --deflate         offer permessage-deflate (as browsers do) in every mode
//
// Output: one JSON line on stdout. Exit 1 if nothing succeeded.
// Usage: asgi-bridge-wsload --url ws://HOST:PORT/PATH [--mode echo]
//          [--connections N] [--size BYTES] [--duration SECONDS] [--binary]
//          [--deflate] [--warm]
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "8000";
  std::string path = "/ws";
  std::string mode = "echo";
  int connections = 1;
  std::size_t size = 32;
  double duration = 5.0;
  bool binary = false;
  bool deflate = false;  // offer permessage-deflate
  bool warm = false;     // hold: one echo per connection before holding
};

struct Stats {
  std::vector<double> latencies_us;  // echo round trips or handshakes
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;
  std::string first_error;
  Clock::time_point deadline;
  bool measuring = true;
};

using Ws = websocket::stream<beast::tcp_stream>;

double micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

void note_error(Stats& stats, const std::exception& e) {
  ++stats.errors;
  if (stats.first_error.empty()) stats.first_error = e.what();
}

// Connects TCP, then upgrades; returns the upgrade-to-101 time.
awaitable<Clock::duration> open(Ws& ws, const tcp::resolver::results_type& endpoints,
                                const Options& opt) {
  if (opt.deflate) {
    websocket::permessage_deflate offer;
    offer.client_enable = true;
    ws.set_option(offer);
  }
  co_await beast::get_lowest_layer(ws).async_connect(endpoints, use_awaitable);
  beast::get_lowest_layer(ws).socket().set_option(tcp::no_delay(true));
  auto start = Clock::now();
  co_await ws.async_handshake(opt.host + ":" + opt.port, opt.path, use_awaitable);
  co_return Clock::now() - start;
}

awaitable<void> echo_loop(tcp::resolver::results_type endpoints, const Options& opt, Stats& stats) {
  try {
    Ws ws(co_await asio::this_coro::executor);
    co_await open(ws, endpoints, opt);
    ws.binary(opt.binary);
    std::string message(opt.size, 'x');
    beast::flat_buffer buffer;
    while (Clock::now() < stats.deadline) {
      auto start = Clock::now();
      co_await ws.async_write(asio::buffer(message), use_awaitable);
      co_await ws.async_read(buffer, use_awaitable);
      auto elapsed = Clock::now() - start;
      if (buffer.size() != message.size()) throw std::runtime_error("echo of the wrong size");
      buffer.consume(buffer.size());
      stats.latencies_us.push_back(micros(elapsed));
      ++stats.completed;
    }
    beast::error_code ec;
    beast::get_lowest_layer(ws).socket().shutdown(tcp::socket::shutdown_both, ec);
  } catch (const std::exception& e) {
    note_error(stats, e);
  }
}

awaitable<void> handshake_loop(tcp::resolver::results_type endpoints, const Options& opt,
                               Stats& stats) {
  while (Clock::now() < stats.deadline) {
    try {
      Ws ws(co_await asio::this_coro::executor);
      auto elapsed = co_await open(ws, endpoints, opt);
      stats.latencies_us.push_back(micros(elapsed));
      ++stats.completed;
      co_await ws.async_close(websocket::close_code::normal, use_awaitable);
    } catch (const std::exception& e) {
      note_error(stats, e);
    }
  }
}

awaitable<void> hold(tcp::resolver::results_type endpoints, const Options& opt, Stats& stats) {
  std::vector<std::unique_ptr<Ws>> held;
  auto executor = co_await asio::this_coro::executor;
  for (int i = 0; i < opt.connections; ++i) {
    try {
      auto ws = std::make_unique<Ws>(executor);
      auto elapsed = co_await open(*ws, endpoints, opt);
      if (opt.warm) {
        beast::flat_buffer buffer;
        co_await ws->async_write(asio::buffer(std::string(opt.size, 'x')), use_awaitable);
        co_await ws->async_read(buffer, use_awaitable);
      }
      stats.latencies_us.push_back(micros(elapsed));
      ++stats.completed;
      held.push_back(std::move(ws));
    } catch (const std::exception& e) {
      note_error(stats, e);
    }
  }
  std::cout << "HELD " << held.size() << std::endl;
  asio::steady_timer timer(executor);
  timer.expires_after(std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(opt.duration)));
  co_await timer.async_wait(use_awaitable);
  for (auto& ws : held) {
    beast::error_code ec;
    beast::get_lowest_layer(*ws).socket().shutdown(tcp::socket::shutdown_both, ec);
  }
}

double percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0.0;
  auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index), values.end());
  return values[index];
}

bool parse_url(const std::string& url, Options& opt) {
  const std::string scheme = "ws://";
  if (url.rfind(scheme, 0) != 0) return false;
  auto rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  opt.path = slash == std::string::npos ? "/" : rest.substr(slash);
  auto colon = authority.rfind(':');
  if (colon == std::string::npos) return false;
  opt.host = authority.substr(0, colon);
  opt.port = authority.substr(colon + 1);
  return true;
}

int usage() {
  std::cerr << "usage: asgi-bridge-wsload --url ws://HOST:PORT/PATH [--mode echo|handshake|hold]\n"
               "         [--connections N] [--size BYTES] [--duration SECONDS] [--binary]\n"
               "         [--deflate] [--warm]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--url") {
      if (!parse_url(value(), opt)) return usage();
    } else if (arg == "--mode") {
      opt.mode = value();
    } else if (arg == "--connections") {
      opt.connections = std::max(1, std::atoi(value().c_str()));
    } else if (arg == "--size") {
      opt.size = static_cast<std::size_t>(std::atoll(value().c_str()));
    } else if (arg == "--duration") {
      opt.duration = std::atof(value().c_str());
    } else if (arg == "--binary") {
      opt.binary = true;
    } else if (arg == "--deflate") {
      opt.deflate = true;
    } else if (arg == "--warm") {
      opt.warm = true;
    } else {
      return usage();
    }
  }
  if (opt.mode != "echo" && opt.mode != "handshake" && opt.mode != "hold") return usage();

  asio::io_context io(1);
  Stats stats;
  tcp::resolver resolver(io);
  auto endpoints = resolver.resolve(opt.host, opt.port);
  auto start = Clock::now();
  stats.deadline = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(opt.duration));
  if (opt.mode == "hold") {
    asio::co_spawn(io, hold(endpoints, opt, stats), asio::detached);
  } else {
    for (int i = 0; i < opt.connections; ++i) {
      if (opt.mode == "echo") {
        asio::co_spawn(io, echo_loop(endpoints, opt, stats), asio::detached);
      } else {
        asio::co_spawn(io, handshake_loop(endpoints, opt, stats), asio::detached);
      }
    }
  }
  io.run();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (opt.mode == "hold") elapsed = std::max(1e-9, elapsed - opt.duration);
  double p50 = percentile(stats.latencies_us, 0.50);
  double p99 = percentile(stats.latencies_us, 0.99);
  std::string error = stats.first_error;
  std::replace(error.begin(), error.end(), '"', '\'');
  std::printf(
      "{\"mode\": \"%s\", \"connections\": %d, \"size\": %zu, \"seconds\": %.3f, "
      "\"completed\": %llu, \"rate\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
      "\"errors\": %llu, \"first_error\": \"%s\"}\n",
      opt.mode.c_str(), opt.connections, opt.size, elapsed,
      static_cast<unsigned long long>(stats.completed),
      static_cast<double>(stats.completed) / elapsed, p50, p99,
      static_cast<unsigned long long>(stats.errors), error.c_str());
  return stats.completed > 0 ? 0 : 1;
}
