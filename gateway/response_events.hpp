#pragma once
// What one message of a worker means for an HTTP exchange, given where its
// response stands: the rules of docs/protocol.md for credits, errors,
// sequence numbers and the http.response.* events, shared by the HTTP/1.1
// session and each HTTP/2 stream.
#include "bus_link.hpp"
#include "session_event.hpp"

namespace asgi_bridge::gateway {

enum class ResponsePhase { awaiting_start, started, awaiting_trailers, done };

struct ResponseStep {
  enum class Kind {
    none,       // nothing to do (a message that is neither event, credit nor error)
    credit,     // taken by the link: the reader may go on
    app_error,  // the worker's `error`: answer 500 or abort
    start,      // http.response.start, in its place
    body,       // http.response.body, in its place
    trailers,   // http.response.trailers, in its place, header lines valid
    violation,  // a broken rule: `violation` says which
  };
  Kind kind = Kind::none;
  const char* violation = nullptr;
};

// Counts the message's sequence number and credits on `link`.
ResponseStep classify_response_message(const WorkerMessage& reply, BusLink& link, ResponsePhase phase);

}  // namespace asgi_bridge::gateway
