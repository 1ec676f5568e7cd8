// Writes the golden vectors of tests/vectors: one canonical message per file,
// NAME.msgpack. The committed files are the contract (see README.md); run this
// only to add a vector or after a deliberate protocol change:
//
//   build/bin/asgi-bridge-make-vectors tests/vectors
//
// Each message is checked to decode back to itself before it is written.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "asgi_bridge/protocol/codec.hpp"

namespace {

using namespace asgi_bridge::protocol;

constexpr const char* k_gateway = "gw-3f9a0c1e";
constexpr const char* k_worker = "wk-7c21d0aa";

struct Vector {
  std::string name;
  Envelope envelope;
};

// Deterministic filler bytes: all 256 values, not a repeating short period.
std::string pattern(std::size_t size) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 31 + i / 251) & 0xFF);
  return out;
}

// --- envelopes -------------------------------------------------------------------

// gateway -> worker event of connection `conn` (no "w" on ZeroMQ).
Envelope to_worker(std::uint64_t conn, std::uint64_t seq, Event event) {
  Envelope e;
  e.kind = Kind::event;
  e.gateway_id = k_gateway;
  e.conn_id = conn;
  e.seq = seq;
  e.event = std::move(event);
  return e;
}

// worker -> gateway event of connection `conn`.
Envelope to_gateway(std::uint64_t conn, std::uint64_t seq, Event event) {
  Envelope e = to_worker(conn, seq, std::move(event));
  e.worker_id = k_worker;
  return e;
}

// The first event of a connection: carries the scope and the byte window.
Envelope first(std::uint64_t conn, Scope scope, Event event) {
  Envelope e = to_worker(conn, 0, std::move(event));
  e.window = k_default_byte_window;
  e.scope = std::move(scope);
  return e;
}

Envelope from_worker(Kind kind) {
  Envelope e;
  e.kind = kind;
  e.worker_id = k_worker;
  return e;
}

Envelope from_gateway(Kind kind) {
  Envelope e;
  e.kind = kind;
  e.gateway_id = k_gateway;
  return e;
}

// --- scopes ----------------------------------------------------------------------

Scope http_scope() {
  Scope s;
  s.type = ScopeType::http;
  s.http_version = "1.1";
  s.method = "POST";
  s.scheme = "https";
  s.path = "/items/\xc3\xbc" "n\xc3\xaf" "code";  // "/items/ünïcode"
  s.raw_path = "/items/%C3%BCn%C3%AFcode";
  s.query_string = "q=1&x=%20y&empty=";
  s.root_path = "/api";
  s.headers = {
      {"host", "example.com"},
      {"content-type", "application/json"},
      {"x-latin1", "caf\xe9 \xff\xfe"},  // not UTF-8: header values are bytes
      {"cookie", "a=1"},
      {"cookie", "b=2"},  // duplicates kept, in order
  };
  s.client = Endpoint{"192.0.2.10", 54321};
  s.server = Endpoint{"127.0.0.1", 8443};
  s.extensions = {"http.response.trailers"};
  return s;
}

Scope websocket_scope() {
  Scope s;
  s.type = ScopeType::websocket;
  s.http_version = "1.1";
  s.scheme = "ws";
  s.path = "/ws";
  s.raw_path = "/ws";
  s.headers = {
      {"host", "localhost"},
      {"upgrade", "websocket"},
      {"sec-websocket-protocol", "chat, superchat"},
  };
  s.client = std::nullopt;                          // unknown peer
  s.server = Endpoint{"/run/asgi-bridge.sock", {}};  // unix socket: [path, nil]
  s.subprotocols = {"chat", "superchat"};
  s.extensions = {"websocket.http.response"};
  return s;
}

Headers hundred_headers() {
  Headers headers;
  for (int i = 0; i < 100; ++i) {
    headers.push_back({"x-header-" + std::to_string(i), pattern(static_cast<std::size_t>(i * 3))});
  }
  // Printable values are not required: only CR, LF and NUL are excluded.
  for (auto& header : headers) {
    for (auto& c : header.value) {
      if (c == '\r' || c == '\n' || c == '\0') c = '.';
    }
  }
  return headers;
}

WebSocketReceive ws_receive(std::string data, bool text) {
  WebSocketReceive e;
  e.data = std::move(data);
  e.text = text;
  return e;
}

WebSocketSend ws_send(std::string data, bool text) {
  WebSocketSend e;
  e.data = std::move(data);
  e.text = text;
  return e;
}

HttpResponseStart response_start(int status, Headers headers, bool trailers = false,
                                 std::optional<Bytes> body = std::nullopt, bool more_body = false) {
  return HttpResponseStart{status, std::move(headers), trailers, std::move(body), more_body};
}

// A start carrying the first body (feature bit 1).
HttpResponseStart start_with_body(bool more_body) {
  return response_start(200, {{"content-type", "text/plain"}}, false, "Hello, world!", more_body);
}

// --- the vectors ----------------------------------------------------------------------

std::vector<Vector> event_vectors() {
  std::vector<Vector> v;
  // HTTP, gateway -> worker
  v.push_back({"event_http_request_first", first(1, http_scope(), HttpRequest{"{\"a\":1}", true})});
  Envelope with_features = first(1, http_scope(), HttpRequest{"{\"a\":1}", true});
  with_features.features = k_feature_start_body;
  v.push_back({"event_http_request_first_features", with_features});
  v.push_back({"event_http_request_empty_body", to_worker(1, 1, HttpRequest{})});
  v.push_back({"event_http_request_1mib_body", to_worker(70000, 2, HttpRequest{pattern(1 << 20), true})});
  v.push_back({"event_http_disconnect", to_worker(1, 3, HttpDisconnect{})});
  // HTTP, worker -> gateway
  v.push_back({"event_http_response_start",
               to_gateway(1, 0, response_start(200, {{"content-type", "text/plain"}, {"x-raw", "\x80\xff bytes"}}))});
  v.push_back({"event_http_response_start_100_headers",
               to_gateway(200, 0, response_start(599, hundred_headers(), true))});
  v.push_back({"event_http_response_start_body", to_gateway(1, 0, start_with_body(false))});
  v.push_back({"event_http_response_start_body_more", to_gateway(1, 0, start_with_body(true))});
  v.push_back({"event_http_response_body", to_gateway(1, 1, HttpResponseBody{"hello, world", true})});
  v.push_back({"event_http_response_body_empty", to_gateway(1, 2, HttpResponseBody{})});
  v.push_back({"event_http_response_trailers",
               to_gateway(200, 2, HttpResponseTrailers{{{"grpc-status", "0"}}, false})});
  // WebSocket, gateway -> worker
  v.push_back({"event_websocket_connect_first", first(1ULL << 33, websocket_scope(), WebSocketConnect{})});
  v.push_back({"event_websocket_receive_text", to_worker(2, 1, ws_receive("hi \xe2\x9c\x93", true))});
  v.push_back({"event_websocket_receive_text_70000", to_worker(2, 2, ws_receive(std::string(70000, 'x'), true))});
  v.push_back({"event_websocket_receive_bytes", to_worker(2, 3, ws_receive(std::string("\x00\x01\xfe\xff", 4), false))});
  v.push_back({"event_websocket_disconnect", to_worker(2, 4, WebSocketDisconnect{})});
  v.push_back({"event_websocket_disconnect_1006", to_worker(2, 5, WebSocketDisconnect{1006, "abnormal closure"})});
  // WebSocket, worker -> gateway
  v.push_back({"event_websocket_accept", to_gateway(2, 0, WebSocketAccept{})});
  v.push_back({"event_websocket_accept_subprotocol",
               to_gateway(2, 0, WebSocketAccept{"chat", {{"x-served-by", "worker"}}})});
  v.push_back({"event_websocket_send_text", to_gateway(2, 1, ws_send(std::string(300, 'y'), true))});
  v.push_back({"event_websocket_send_bytes", to_gateway(2, 2, ws_send(pattern(40), false))});
  v.push_back({"event_websocket_send_bytes_empty", to_gateway(2, 3, ws_send("", false))});
  v.push_back({"event_websocket_close", to_gateway(2, 4, WebSocketClose{})});
  v.push_back({"event_websocket_close_reason", to_gateway(2, 4, WebSocketClose{4000, "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe2\x9c\x93"})});  // "привет ✓"
  v.push_back({"event_websocket_http_response_start",
               to_gateway(3, 0, WebSocketHttpResponseStart{403, {{"content-type", "text/plain"}}})});
  v.push_back({"event_websocket_http_response_body",
               to_gateway(3, 1, WebSocketHttpResponseBody{"forbidden", false})});
  return v;
}

std::vector<Vector> kind_vectors() {
  std::vector<Vector> v;
  Envelope ready = from_worker(Kind::ready);
  ready.capacity = 64;
  ready.active = 0;
  v.push_back({"ready", ready});

  v.push_back({"heartbeat_gateway", from_gateway(Kind::heartbeat)});
  Envelope heartbeat = from_worker(Kind::heartbeat);
  heartbeat.capacity = 100000;
  heartbeat.active = 300;
  v.push_back({"heartbeat_worker", heartbeat});
  Envelope split = from_worker(Kind::heartbeat);  // WebSockets counted apart
  split.capacity = 100;
  split.active = 2;
  split.ws_capacity = 10000;
  v.push_back({"heartbeat_worker_ws_capacity", split});

  Envelope credit_worker = from_worker(Kind::credit);
  credit_worker.gateway_id = k_gateway;
  credit_worker.conn_id = 1;
  credit_worker.events = k_event_ack_batch;
  v.push_back({"credit_worker", credit_worker});
  Envelope credit_gateway = from_gateway(Kind::credit);
  credit_gateway.conn_id = 70000;
  credit_gateway.bytes = 262144;
  v.push_back({"credit_gateway", credit_gateway});

  v.push_back({"drain", from_worker(Kind::drain)});
  v.push_back({"bye_gateway", from_gateway(Kind::bye)});
  v.push_back({"bye_worker", from_worker(Kind::bye)});

  Envelope error_worker = from_worker(Kind::error);
  error_worker.gateway_id = k_gateway;
  error_worker.conn_id = 1;
  error_worker.message = "application raised ZeroDivisionError: division by zero";
  v.push_back({"error_worker", error_worker});
  Envelope error_gateway = from_gateway(Kind::error);
  error_gateway.conn_id = 1ULL << 33;
  error_gateway.message = "unknown connection";
  v.push_back({"error_gateway", error_gateway});

  Envelope group_text = from_worker(Kind::group);
  group_text.seq = 0;
  group_text.group = "lobby \xe2\x9c\x93";  // "lobby ✓"
  group_text.event = ws_send("hello, room", true);
  v.push_back({"group_text", group_text});
  Envelope group_bytes = from_worker(Kind::group);
  group_bytes.seq = 70000;
  group_bytes.group = "room/42";
  group_bytes.event = ws_send(pattern(40), false);
  v.push_back({"group_bytes", group_bytes});

  v.push_back({"event_broadcast_subscribe", to_gateway(2, 1, BroadcastSubscribe{"prices/EUR-USD"})});
  v.push_back({"event_broadcast_unsubscribe", to_gateway(2, 2, BroadcastUnsubscribe{"prices/EUR-USD"})});
  Envelope publish_text = from_worker(Kind::publish);
  publish_text.channel = "room:lobby";
  publish_text.event = ws_send("hello, everyone", true);
  v.push_back({"publish_text", publish_text});
  Envelope publish_bytes = from_gateway(Kind::publish);  // an admin publish, relayed on ZeroMQ
  publish_bytes.channel = "ticks@eu";
  publish_bytes.event = ws_send(pattern(40), false);
  v.push_back({"publish_bytes", publish_bytes});
  return v;
}

bool write_vector(const std::string& dir, const Vector& vector) {
  std::string bytes = encode(vector.envelope);
  auto decoded = decode(bytes);
  if (const auto* error = std::get_if<DecodeError>(&decoded)) {
    std::fprintf(stderr, "%s: does not decode: %s\n", vector.name.c_str(), error->message.c_str());
    return false;
  }
  if (std::get<Envelope>(decoded) != vector.envelope) {
    std::fprintf(stderr, "%s: decodes to a different message\n", vector.name.c_str());
    return false;
  }
  std::string path = dir + "/" + vector.name + ".msgpack";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "%s: cannot write\n", path.c_str());
    return false;
  }
  std::printf("%-45s %8zu bytes\n", path.c_str(), bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR   (normally tests/vectors)\n", argv[0]);
    return 2;
  }
  bool ok = true;
  for (const auto& list : {event_vectors(), kind_vectors()}) {
    for (const auto& vector : list) ok = write_vector(argv[1], vector) && ok;
  }
  return ok ? 0 : 1;
}
