#pragma once
// A bus transport moves opaque messages (encoded envelopes) between a gateway
// and its workers. It lives on one io_context (the bus thread) and is never
// touched from another thread: ZeroMQ sockets and hiredis contexts are
// single-threaded.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "asgi_bridge/bus/curve.hpp"

namespace asgi_bridge::bus {

enum class Role { gateway, worker };

enum class SendStatus {
  sent,          // handed to the transport
  would_block,   // the peer's queue is full: backpressure, try later or fail the connection
  peer_unknown,  // no such peer is connected (gateway side)
  failed,        // the transport is broken or stopped
};

// Gateway: a worker whose handshake failed (address: where it came from;
// reason: no key, unknown key, ...). Called on the bus thread; outsiders can
// trigger it at will, so the callee rate-limits its log.
using RefusedCallback = std::function<void(std::string_view address, std::string_view reason)>;

// Redis: new connections wait in one shared queue per kind, so that a worker
// whose HTTP slots are full still takes WebSockets, and the reverse.
enum class NewConnection { http, websocket };

// Redis over TLS (rediss:// URLs, docs/redis.md). The server's certificate is
// checked against ca_file (empty: the system's CAs) and the URL's host name
// unless insecure is set; cert_file and key_file: a client certificate, for
// servers with `tls-auth-clients yes`.
struct RedisTlsOptions {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool insecure = false;
};

// Same-host shared memory (ZeroMQ, docs/protocol.md §1.1): the messages and
// bytes that went through rings instead of the socket. Written by the bus
// thread only, read from any thread (relaxed: each figure exact on its own).
struct SharedMemoryCounters {
  std::atomic<std::uint64_t> sent_messages{0};
  std::atomic<std::uint64_t> sent_bytes{0};
  std::atomic<std::uint64_t> received_messages{0};
  std::atomic<std::uint64_t> received_bytes{0};
};

struct TransportOptions {
  Role role = Role::gateway;
  std::string identity;               // this process's id: worker id or gateway id
  std::size_t max_message_size = 0;   // 0: unlimited; ZeroMQ: a larger incoming message closes its peer's connection
  std::string key_prefix = "asgi";    // Redis: prefix of every key
  CurveOptions curve;                 // ZeroMQ: CURVE key files (docs/security.md); empty: plain
  RedisTlsOptions redis_tls;          // Redis: used for rediss:// URLs only
  RefusedCallback on_refused;         // ZeroMQ gateway with CURVE; empty: logged unlimited
  // ZeroMQ: the capacity in bytes of the shared-memory ring this side
  // creates per peer (0: none, and no offer; it still maps its peers' rings).
  // 0 or a power of two from 64 KiB to 64 MiB.
  std::uint64_t shared_memory = 1024 * 1024;
  SharedMemoryCounters* shared_memory_counters = nullptr;  // outlives the transport; null: not counted
};

// --bus-shared-memory's rule (gateway and C++ worker): 0 or a power of two
// from 65536 to 67108864. Empty when `bytes` is valid, else the error.
std::string shared_memory_problem(std::string_view bytes);

// A message handed over in three parts that mean their concatenation,
// head + body + tail: a large body its encoder left where it was
// (protocol::encode_split). A transport that copies the message anyway (into
// a shared-memory ring) copies each part once, so the body is copied once
// between the app and the peer, not twice.
struct MessageParts {
  std::string head{};  // (initialised: {whole} alone is a message in one part)
  std::string body{};
  std::string tail{};

  std::size_t size() const { return head.size() + body.size() + tail.size(); }
  // The concatenation: the head grown in place (one copy of the body).
  std::string joined() && {
    if (body.empty() && tail.empty()) return std::move(head);
    head.reserve(size());
    head += body;
    head += tail;
    return std::move(head);
  }
};

class Transport {
 public:
  // peer: on ZeroMQ, the sending worker's id (gateway side) or empty (worker
  // side); on Redis always empty: the envelope names its sender. payload is
  // valid only during the call.
  using OnMessage = std::function<void(std::string_view peer, std::string_view payload)>;
  // Gateway: a peer's connection closed (ZeroMQ: its TCP or IPC connection
  // ended; a worker killed with SIGKILL is noticed at once, not after three
  // silent heartbeat intervals).
  using OnPeerGone = std::function<void(std::string_view peer)>;

  virtual ~Transport() = default;
  virtual void start(OnMessage on_message) = 0;
  // Gateway, before start(): where to report peers whose connection closed.
  // Transports that cannot tell (Redis) never call it.
  virtual void watch_peers(OnPeerGone /*on_peer_gone*/) {}
  // Gateway: peer is a worker id. Worker: peer is the gateway id (ZeroMQ
  // ignores it: one transport per gateway). Never blocks.
  virtual SendStatus send(std::string_view peer, std::string_view payload) = 0;
  // The same, for a caller done with the payload: a transport that can send
  // it without copying it (ZeroMQ: a large one goes as a zero-copy message
  // that frees the string once sent) takes it over.
  virtual SendStatus send_owned(std::string_view peer, std::string&& payload) { return send(peer, payload); }
  // The same, for a message in parts; joined unless the transport can do better.
  virtual SendStatus send_parts(std::string_view peer, MessageParts&& parts) {
    return send_owned(peer, std::move(parts).joined());
  }
  // Closes the sockets; idempotent. No callback runs afterwards.
  virtual void stop() = 0;

  // Redis: new connections go to a shared queue that workers pull from;
  // ZeroMQ: the gateway picks the worker itself.
  virtual bool has_shared_queue() const { return false; }
  // Gateway: offers a first event on the shared queue of its kind.
  virtual SendStatus offer_shared(NewConnection /*kind*/, std::string_view /*payload*/) { return SendStatus::failed; }
  // Gateway: takes back a first event nobody pulled in time (best effort).
  virtual void withdraw_shared(NewConnection /*kind*/, std::string_view /*payload*/) {}
  // Worker: how many new HTTP requests and WebSockets it may pull from the
  // shared queues now.
  virtual void set_free_capacity(std::size_t /*http*/, std::size_t /*websockets*/ = 0) {}

  // Worker: broadcast groups (docs/workers-cpp.md, "Chat rooms"). publish()
  // sends an encoded `group` message towards the other workers: by default
  // to the peer (ZeroMQ: the gateway, which relays it); Redis publishes it on
  // the group's channel. A worker hears a group's messages (through
  // on_message, like any other) only while subscribed to it, on transports
  // that need subscriptions (Redis); subscriptions survive reconnects.
  virtual SendStatus publish(std::string_view /*group*/, std::string_view payload) { return send({}, payload); }
  virtual void subscribe(std::string_view /*group*/) {}
  virtual void unsubscribe(std::string_view /*group*/) {}

  // Broadcast channels (docs/broadcast.md). Redis carries a publish as a
  // plain PUBLISH on PREFIX:broadcast:CHANNEL (a text message) or
  // PREFIX:broadcast-bin:CHANNEL (binary), so that any Redis client can
  // publish; ZeroMQ carries `publish` bus messages instead (never calls
  // back, broadcast() fails). Gateway, before start(): where such publishes
  // arrive. Any side: publishes one.
  using OnBroadcast = std::function<void(std::string_view channel, bool text, std::string_view data)>;
  virtual void watch_broadcasts(OnBroadcast /*on_broadcast*/) {}
  virtual SendStatus broadcast(std::string_view /*channel*/, bool /*text*/, std::string_view /*data*/) {
    return SendStatus::failed;
  }

  // Gateway (SIGHUP): rereads the key files that may change while running
  // (the CURVE allow-list). Bus thread.
  virtual void reload_credentials() {}
};

// zmq://HOST:PORT, zmq+ipc://PATH, redis://[user:password@]HOST:PORT/DB. Throws std::invalid_argument naming the
// URL when it is malformed or its scheme is unknown, std::runtime_error when
// binding/connecting fails.
std::unique_ptr<Transport> make_transport(boost::asio::io_context& io, std::string_view url,
                                          const TransportOptions& options);

}  // namespace asgi_bridge::bus
