#pragma once
// What a session receives in its inbox: events from its worker, failures the
// dispatcher detected, and signals from the session's own socket reader.
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "asgi_bridge/bus/transport.hpp"
#include "asgi_bridge/protocol/envelope.hpp"

namespace asgi_bridge::gateway {

enum class BusFailure {
  no_capacity,  // no worker took the connection within --dispatch-timeout
  worker_lost,  // the owning worker died, left, or broke the protocol
};

struct ClientGone {        // the client closed or reset the connection
  int code = 1006;         // WebSocket: the close code it sent (1005: none; 1006: no close frame)
  std::string reason;
};
struct ReaderStopped {};   // the session's socket reader coroutine has ended
struct RequestInvalid {    // the request body broke a limit or its framing
  int status = 400;        // 400 or 413
};

struct LocalClose {        // the gateway itself ends a WebSocket (lifetime, shutdown)
  int code = 1001;
};

struct Broadcast {};       // the WebSocket's broadcast queue has a publish to write

// What a session needs of its worker's envelope. protocol::Envelope also holds
// routing fields and the scope inline (800 bytes): queued events and the
// frames of coroutines waiting for them would carry all of it, for hours on an
// idle WebSocket.
struct WorkerMessage {
  protocol::Kind kind = protocol::Kind::event;  // event, credit or error
  std::optional<std::uint64_t> seq;
  std::uint64_t events = 0;  // credit: events the app has consumed
  std::string worker_id;     // for log lines
  std::string error;         // error: what went wrong
  std::optional<protocol::Event> event;

  static WorkerMessage from(protocol::Envelope&& envelope) {
    return {envelope.kind,
            envelope.seq,
            envelope.events.value_or(0),
            std::move(envelope.worker_id),
            std::move(envelope.message).value_or(std::string()),
            std::move(envelope.event)};
  }
};

using SessionEvent =
    std::variant<WorkerMessage, BusFailure, ClientGone, ReaderStopped, RequestInvalid, LocalClose, Broadcast>;

// Session -> dispatcher, posted to the bus thread. Built with designated
// initializers: two fields convert from each other silently.
struct ToBus {
  enum class Type {
    first,    // first event of a connection (carries the scope): pick a worker
    message,  // any later message of the connection: to its owner
    end,      // the connection is over at the gateway: forget it
  };
  Type type = Type::message;
  std::uint64_t conn_id = 0;
  bus::MessageParts encoded;    // the envelope (empty for end); a large body apart when sent once
  bool redispatchable = false;  // first: GET/HEAD or WebSocket connect
  std::uint64_t credit_bytes = 0;  // message: a byte credit to the worker, for the dispatcher's window check
  bool websocket = false;       // first: a WebSocket connect (routed by WebSocket capacity)
  std::uint64_t window = 0;     // first: the byte window granted the worker (0: the default)
};

}  // namespace asgi_bridge::gateway
