#pragma once
// Starts the disconnect watchers of HTTP/1.1 exchanges that wait long for
// their response, instead of one watcher per request. A watcher is a read of
// the client socket while the response is on its way (an end of file there
// means the client left: the app hears http.disconnect). Asio 1.74 tries
// every read at once, so a watcher started with each request costs a
// recvfrom that finds nothing, and its cancel at the response's end a
// posted completion; most responses come within a millisecond, long before
// anything could be noticed. So an exchange whose request is whole enrols
// here, and leaves when its response ends; one timer per shard, running
// only while someone is enrolled, starts the watcher of every exchange that
// has waited a whole period (a client that leaves is noticed within two).
// Shard thread only.
#include <chrono>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

namespace asgi_bridge::gateway {

// An exchange that may enrol. Its hook leaves the sweep on its own when the
// exchange is destroyed.
class SweepWatched
    : public boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
 public:
  virtual ~SweepWatched() = default;
  // The exchange has waited a period: watch the client from now on.
  virtual void start_watch() = 0;
  bool enrolled() const { return is_linked(); }
  void leave_sweep() { unlink(); }
};

class DisconnectSweep {
 public:
  static constexpr auto k_period = std::chrono::milliseconds(20);

  explicit DisconnectSweep(boost::asio::io_context& io) : timer_(io) {}
  DisconnectSweep(const DisconnectSweep&) = delete;
  DisconnectSweep& operator=(const DisconnectSweep&) = delete;

  void enrol(SweepWatched& exchange);

 private:
  using List = boost::intrusive::list<SweepWatched, boost::intrusive::constant_time_size<false>>;
  void arm();
  void sweep();

  boost::asio::steady_timer timer_;
  bool armed_ = false;
  List young_;  // enrolled since the last sweep
  List old_;    // enrolled before it: waited at least a period at the next one
};

}  // namespace asgi_bridge::gateway
