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
//                     "lost" (a message some member lacks 10 s after its send);
//                     a member getting messages out of order is an error. After
//                     "ready" the members are read without Beast, every
//                     --poll-us microseconds (default 100; 0: on each event):
//                     see MemberReader
//   --deflate         offer permessage-deflate (as browsers do) in every mode
//                     but fanout
//
// Output: one JSON line on stdout. Exit 1 if nothing succeeded.
// Usage: asgi-bridge-wsload --url ws://HOST:PORT/PATH [--mode echo]
//          [--connections N] [--size BYTES] [--duration SECONDS] [--binary]
//          [--deflate] [--warm] [--members URL[,URL]] [--messages M] [--window W]
//          [--poll-us MICROSECONDS]
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <deque>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
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
  Clock::duration poll = std::chrono::microseconds(100);  // fanout: members read every poll (0: on each event)
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

// The members' receive path. After its handshake and "ready" (Beast), each
// member's socket is read here, not by Beast: a Beast read per frame (a
// coroutine resume, a composed operation, a reactor re-arm per socket) made
// the load generator, not the server, bound the measurement at 10,000 members.
// The sockets sit in an epoll set of their own (edge-triggered), drained on
// the io_context's thread: per ready socket, one non-blocking recv into one
// shared buffer, and only the frame heads parsed (server frames are unmasked
// and, without permessage-deflate, never compressed: RFC 6455 section 5.2).
// Pings are answered as Beast would.
class MemberReader {
 public:
  MemberReader(const asio::any_io_executor& executor, Fanout& f, Stats& stats)
      : epoll_(::epoll_create1(EPOLL_CLOEXEC)), executor_(executor), timer_(executor), f_(f), stats_(stats) {
    if (epoll_ < 0) throw std::runtime_error("epoll_create1 failed");
  }
  ~MemberReader() {
    for (auto& m : members_) end(m);
    ::close(epoll_);
  }

  // Takes the socket from Beast. Nothing may be left in Beast's read buffer:
  // the server says nothing after "ready" until the first publish.
  void add(Ws& ws) {
    int fd = beast::get_lowest_layer(ws).release_socket().release();
    members_.emplace_back().fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;  // level-triggered would poll each socket again after its read
    ev.data.u64 = members_.size() - 1;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) throw std::runtime_error("epoll_ctl failed");
  }

  // Every `poll` (or, zero, as soon as a member has data). Polling spares the
  // server's CPU a wake-up of this thread per socket: on loopback the
  // server's sendmsg runs the receiving side, which wakes a reader asleep in
  // epoll (an IPI, on a VM an exit), work a client across a network does not
  // charge to the server. A delivery is then seen at most `poll` late.
  void start(Clock::duration poll) {
    poll_ = poll;
    if (poll_ > Clock::duration::zero()) return tick();
    watch_.emplace(executor_, ::dup(epoll_));
    wait();
  }

 private:
  struct Member {
    int fd = -1;
    std::string carry;    // the start of a frame the last recv did not complete
    std::string message;  // a fragmented message's payload so far
    std::size_t next = 0; // the sequence number due next: publish order
  };
  static constexpr std::size_t kMaxPayload = 1 << 20;

  void wait() {
    watch_->async_wait(asio::posix::descriptor_base::wait_read, [this](const beast::error_code& ec) {
      if (ec) return;
      drain_ready();
      wait();
    });
  }

  void tick() {
    timer_.expires_after(poll_);
    timer_.async_wait([this](const beast::error_code& ec) {
      if (ec) return;
      drain_ready();
      tick();
    });
  }

  void drain_ready() {
    std::array<epoll_event, 256> events;
    int n;
    do {
      n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 0);
      for (int i = 0; i < n; ++i) read(members_[events[static_cast<std::size_t>(i)].data.u64]);
    } while (n == static_cast<int>(events.size()));
  }

  void read(Member& m) {
    for (;;) {
      auto got = ::recv(m.fd, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      if (got <= 0) return end(m);  // the server ended it ("lost" tells)
      if (!feed(m, buffer_.data(), static_cast<std::size_t>(got))) return end(m);
      // Drained: data arriving later is a new edge (every arrival is one on Linux).
      if (static_cast<std::size_t>(got) < buffer_.size()) return;
    }
  }

  // Parses what the member's bytes complete; keeps the rest. False: stop reading it.
  bool feed(Member& m, const char* data, std::size_t size) {
    if (m.carry.empty()) {
      auto used = frames(m, data, size);
      if (used > size) return false;
      m.carry.assign(data + used, size - used);
      return true;
    }
    m.carry.append(data, size);
    auto used = frames(m, m.carry.data(), m.carry.size());
    if (used > m.carry.size()) return false;
    m.carry.erase(0, used);
    return true;
  }

  // The bytes the whole frames at data use; more than size: stop reading.
  std::size_t frames(Member& m, const char* data, std::size_t size) {
    constexpr std::size_t kStop = std::numeric_limits<std::size_t>::max();
    std::size_t at = 0;
    while (size - at >= 2) {
      auto b0 = static_cast<unsigned char>(data[at]);
      auto b1 = static_cast<unsigned char>(data[at + 1]);
      std::size_t head = 2;
      std::uint64_t length = b1 & 0x7f;
      if (length == 126) head = 4;
      if (length == 127) head = 10;
      if (size - at < head) break;
      if (head > 2) {
        length = 0;
        for (std::size_t i = 2; i < head; ++i) length = length << 8 | static_cast<unsigned char>(data[at + i]);
      }
      if ((b1 & 0x80) || (b0 & 0x70) || length > kMaxPayload) {
        fail("a server frame masked, with RSV bits or over 1 MiB");
        return kStop;
      }
      if (size - at - head < length) break;
      if (!frame(m, b0, std::string_view(data + at + head, length))) return kStop;
      at += head + length;
    }
    return at;
  }

  // One whole frame; false: stop reading the member.
  bool frame(Member& m, unsigned char b0, std::string_view payload) {
    bool fin = b0 & 0x80;
    switch (b0 & 0x0f) {
      case 0x0:  // continuation
      case 0x1:  // text
      case 0x2:  // binary
        if (fin && m.message.empty()) {
          message(m, payload);
          return true;
        }
        m.message.append(payload);
        if (m.message.size() > kMaxPayload) {
          fail("a fragmented message over 1 MiB");
          return false;
        }
        if (fin) {
          message(m, m.message);
          m.message.clear();
        }
        return true;
      case 0x8:
        return false;  // the server closed it
      case 0x9:
        pong(m, payload);
        return true;
      case 0xa:
        return true;
      default:
        fail("a server frame with an unknown opcode");
        return false;
    }
  }

  void message(Member& m, std::string_view text) {
    std::size_t n = 0;
    std::from_chars(text.data(), text.data() + text.size(), n);
    if (n >= f_.counts.size()) return;
    if (n != m.next) fail("a member got message " + std::to_string(n) + " when " + std::to_string(m.next) + " was due");
    m.next = n + 1;
    ++f_.deliveries;
    f_.last = Clock::now();
    if (++f_.counts[n] == f_.members && !f_.settled[n]) {
      stats_.latencies_us.push_back(micros(f_.last - f_.sent[n]));
      settle(f_, n);
    }
  }

  // A client frame is masked: a zero key leaves the payload as it is.
  void pong(Member& m, std::string_view payload) {
    std::string frame{'\x8a', static_cast<char>(0x80 | payload.size()), 0, 0, 0, 0};
    frame.append(payload);  // a ping's payload is at most 125 bytes
    if (::send(m.fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size()))
      fail("a pong not written");
  }

  void fail(const std::string& why) {
    ++stats_.errors;
    if (stats_.first_error.empty()) stats_.first_error = why;
  }

  void end(Member& m) {
    if (m.fd >= 0) ::close(m.fd);  // leaves the epoll set with it
    m.fd = -1;
  }

  int epoll_;
  asio::any_io_executor executor_;
  std::optional<asio::posix::stream_descriptor> watch_;  // the epoll set, when not polling
  asio::steady_timer timer_;                              // when polling
  Clock::duration poll_{};
  Fanout& f_;
  Stats& stats_;
  std::vector<Member> members_;
  std::array<char, 64 * 1024> buffer_;
};

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
  MemberReader reader(executor, f, stats);
  f.members = 0;
  for (auto& ws : members) {
    if (!ws) continue;
    ++f.members;
    reader.add(*ws);
  }
  members.clear();
  reader.start(opt.poll);
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
               "         [--deflate] [--warm] [--members URL[,URL]] [--messages M] [--window W]\n"
               "         [--poll-us MICROSECONDS]\n";
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
    } else if (arg == "--poll-us") {
      opt.poll = std::chrono::microseconds(std::max(0, std::atoi(value().c_str())));
    } else {
      return usage();
    }
  }
  if (opt.mode != "echo" && opt.mode != "handshake" && opt.mode != "hold" && opt.mode != "fanout")
    return usage();
  if (opt.mode == "fanout" && (opt.members.empty() || opt.deflate)) return usage();

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
