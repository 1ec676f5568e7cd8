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
//   --mode fanout     opens N member connections (round robin over --members
//                     URLs, each must say "ready"), prints "CONNECTED n", waits
//                     for a line on stdin; then one sender on --url sends
//                     --messages texts (its sequence number), at most --window
//                     not yet delivered to every member: deliveries/s, p50 and
//                     p99 from a send to its delivery at the LAST member, and
//                     "lost" (a message some member lacks 10 s after its send)
//   --deflate         offer permessage-deflate (as browsers do) in every mode
//
// Output: one JSON line on stdout. Exit 1 if nothing succeeded.
// Usage: asgi-bridge-wsload --url ws://HOST:PORT/PATH [--mode echo]
//          [--connections N] [--size BYTES] [--duration SECONDS] [--binary]
//          [--deflate] [--warm] [--members URL[,URL]] [--messages M] [--window W]
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
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
  std::vector<std::string> members;  // fanout: the members' URLs
  int messages = 100;                // fanout
  int window = 8;                    // fanout
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

// fanout: each message's send time and how many members have it.
struct Fanout {
  std::vector<Clock::time_point> sent;
  std::vector<int> counts;
  std::vector<bool> settled;  // delivered to every member, or given up
  int members = 0;
  int in_flight = 0;
  std::uint64_t deliveries = 0;
  std::uint64_t lost = 0;
  Clock::time_point last;
  std::unique_ptr<asio::steady_timer> wake;  // the sender waits on it for a free slot
};

constexpr auto kGiveUp = std::chrono::seconds(10);

void settle(Fanout& f, std::size_t n) {
  f.settled[n] = true;
  --f.in_flight;
  f.wake->cancel();
}

awaitable<void> member_reads(std::unique_ptr<Ws> ws, Fanout& f, Stats& stats) {
  try {
    beast::flat_buffer buffer;
    for (;;) {
      co_await ws->async_read(buffer, use_awaitable);
      auto text = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      auto n = static_cast<std::size_t>(std::strtoul(text.c_str(), nullptr, 10));
      if (n >= f.counts.size()) continue;
      ++f.deliveries;
      f.last = Clock::now();
      if (++f.counts[n] == f.members && !f.settled[n]) {
        stats.latencies_us.push_back(micros(f.last - f.sent[n]));
        settle(f, n);
      }
    }
  } catch (const std::exception&) {
    // the socket ended (the run is over, or the server closed it: "lost" tells)
  }
}

awaitable<void> drain(Ws& ws) {
  try {
    beast::flat_buffer buffer;
    for (;;) {
      co_await ws.async_read(buffer, use_awaitable);
      buffer.consume(buffer.size());
    }
  } catch (const std::exception&) {
  }
}

awaitable<std::unique_ptr<Ws>> open_member(const std::string& url, const Options& opt) {
  Options target = opt;
  if (!parse_url(url, target)) throw std::runtime_error("bad --members URL " + url);
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  auto endpoints = co_await resolver.async_resolve(target.host, target.port, use_awaitable);
  auto ws = std::make_unique<Ws>(executor);
  co_await open(*ws, endpoints, target);
  beast::flat_buffer buffer;
  co_await ws->async_read(buffer, use_awaitable);
  if (beast::buffers_to_string(buffer.data()) != "ready") throw std::runtime_error("no ready");
  co_return ws;
}

// Opens members[i] for i = first, first + step, ... (several of these run at once).
awaitable<void> connect_members(int first, int step, std::vector<std::unique_ptr<Ws>>& out,
                                const Options& opt, Stats& stats) {
  for (int i = first; i < opt.connections; i += step) {
    try {
      out[static_cast<std::size_t>(i)] =
          co_await open_member(opt.members[static_cast<std::size_t>(i) % opt.members.size()], opt);
    } catch (const std::exception& e) {
      note_error(stats, e);
    }
  }
}

// Waits until a window slot is free, giving up the oldest message 10 s after its send.
awaitable<void> wait_for_slot(Fanout& f, std::deque<std::size_t>& pending, int limit) {
  while (f.in_flight >= limit) {
    while (!pending.empty() && f.settled[pending.front()]) pending.pop_front();
    if (pending.empty()) break;
    auto oldest = pending.front();
    if (Clock::now() >= f.sent[oldest] + kGiveUp) {
      ++f.lost;
      settle(f, oldest);
      continue;
    }
    f.wake->expires_at(f.sent[oldest] + kGiveUp);
    beast::error_code ec;
    co_await f.wake->async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

awaitable<void> fanout(asio::io_context& io, tcp::resolver::results_type endpoints,
                       const Options& opt, Stats& stats, Fanout& f) {
  auto executor = co_await asio::this_coro::executor;
  std::vector<std::unique_ptr<Ws>> members(static_cast<std::size_t>(opt.connections));
  {
    // 32 connecting at once: no accept storm, and 10,000 members in seconds.
    constexpr int kParallel = 32;
    asio::steady_timer all_done(executor, Clock::time_point::max());
    int running = kParallel;
    for (int k = 0; k < kParallel; ++k) {
      asio::co_spawn(executor, connect_members(k, kParallel, members, opt, stats),
                     [&](std::exception_ptr) { if (--running == 0) all_done.cancel(); });
    }
    beast::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  f.members = 0;
  for (auto& ws : members) {
    if (!ws) continue;
    ++f.members;
    asio::co_spawn(executor, member_reads(std::move(ws), f, stats), asio::detached);
  }
  Ws sender(executor);
  co_await open(sender, endpoints, opt);
  // A read always pending: Beast answers the server's pings only while reading
  // (uvicorn closes a socket whose pings go unanswered for 20 s).
  asio::co_spawn(executor, drain(sender), asio::detached);
  std::cout << "CONNECTED " << f.members << std::endl;
  asio::posix::stream_descriptor in(executor, ::dup(0));
  std::string line;
  co_await asio::async_read_until(in, asio::dynamic_buffer(line), '\n', use_awaitable);

  stats.deadline = f.last = Clock::now();  // the rate's window: first send to last delivery
  std::deque<std::size_t> pending;
  for (std::size_t n = 0; n < f.sent.size(); ++n) {
    co_await wait_for_slot(f, pending, opt.window);
    f.sent[n] = Clock::now();
    ++f.in_flight;
    pending.push_back(n);
    co_await sender.async_write(asio::buffer(std::to_string(n)), use_awaitable);
  }
  co_await wait_for_slot(f, pending, 1);
  io.stop();  // the members' reads are abandoned with the process
}

int usage() {
  std::cerr << "usage: asgi-bridge-wsload --url ws://HOST:PORT/PATH [--mode echo|handshake|hold|fanout]\n"
               "         [--connections N] [--size BYTES] [--duration SECONDS] [--binary]\n"
               "         [--deflate] [--warm] [--members URL[,URL]] [--messages M] [--window W]\n";
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
    } else if (arg == "--members") {
      std::string list = value();
      for (std::size_t at = 0; at <= list.size();) {
        auto comma = std::min(list.find(',', at), list.size());
        opt.members.push_back(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else if (arg == "--messages") {
      opt.messages = std::max(1, std::atoi(value().c_str()));
    } else if (arg == "--window") {
      opt.window = std::max(1, std::atoi(value().c_str()));
    } else {
      return usage();
    }
  }
  if (opt.mode != "echo" && opt.mode != "handshake" && opt.mode != "hold" && opt.mode != "fanout")
    return usage();
  if (opt.mode == "fanout" && opt.members.empty()) return usage();

  asio::io_context io(1);
  Stats stats;
  tcp::resolver resolver(io);
  auto endpoints = resolver.resolve(opt.host, opt.port);
  auto start = Clock::now();
  stats.deadline = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(opt.duration));
  Fanout fan;
  if (opt.mode == "fanout") {
    auto count = static_cast<std::size_t>(opt.messages);
    fan.sent.resize(count);
    fan.counts.resize(count);
    fan.settled.resize(count);
    fan.wake = std::make_unique<asio::steady_timer>(io);
    asio::co_spawn(io, fanout(io, endpoints, opt, stats, fan), [&](std::exception_ptr e) {
      if (!e) return;
      try { std::rethrow_exception(e); } catch (const std::exception& x) { note_error(stats, x); }
      io.stop();
    });
  } else if (opt.mode == "hold") {
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
  if (opt.mode == "fanout") {
    stats.completed = fan.deliveries;
    elapsed = std::max(1e-9, std::chrono::duration<double>(fan.last - stats.deadline).count());
  }
  double p50 = percentile(stats.latencies_us, 0.50);
  double p99 = percentile(stats.latencies_us, 0.99);
  std::string error = stats.first_error;
  std::replace(error.begin(), error.end(), '"', '\'');
  std::printf(
      "{\"mode\": \"%s\", \"connections\": %d, \"size\": %zu, \"seconds\": %.3f, "
      "\"completed\": %llu, \"rate\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
      "\"errors\": %llu, \"first_error\": \"%s\", \"members\": %d, \"lost\": %llu}\n",
      opt.mode.c_str(), opt.connections, opt.size, elapsed,
      static_cast<unsigned long long>(stats.completed),
      static_cast<double>(stats.completed) / elapsed, p50, p99,
      static_cast<unsigned long long>(stats.errors), error.c_str(), fan.members,
      static_cast<unsigned long long>(fan.lost));
  return stats.completed > 0 ? 0 : 1;
}
