#pragma once
// libzmq's non-blocking calls look at the socket's command pipe with poll(),
// and a signal that lands meanwhile (SIGTERM, SIGINT, SIGHUP: the gateway and
// the workers handle them all) makes the call fail with EINTR although nothing
// went wrong: cppzmq throws then. The call is simply made again.
#include <cerrno>

#include <zmq.hpp>

namespace asgi_bridge::bus {

template <class Call>
auto again_on_eintr(Call call) -> decltype(call()) {
  for (;;) {
    try {
      return call();
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
  }
}

}  // namespace asgi_bridge::bus
