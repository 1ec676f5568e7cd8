#pragma once
// What an application's send() throws. The same three families as the Python
// worker (workers/python/asgi_bridge/errors.py), so apps in both languages
// can tell a bad value from a bad order from a connection that is over.
#include <stdexcept>

namespace asgi_bridge::worker {

// An event with a wrong value: a status outside 100..599, a header name that
// is not a token, a header value with CR/LF/NUL, a close code an app may not
// send, text that is not UTF-8.
class InvalidEvent : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// An event the ASGI state machine does not allow now: a body before the
// response start, a second start, websocket.send before accept...
class UnexpectedMessage : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// send() on a connection that is over: the client left, the gateway is gone,
// or the app already completed its response / closed its WebSocket (ASGI
// www spec 2.4 asks servers to raise here rather than drop silently).
class ClientDisconnected : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace asgi_bridge::worker
