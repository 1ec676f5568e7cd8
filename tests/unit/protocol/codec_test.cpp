// The codec against docs/protocol.md: round trips, the golden vectors of
// tests/vectors (decode, then re-encode byte for byte), the canonical byte
// layout, and malformed input, each rejected with a message naming the field.
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "asgi_bridge/protocol/codec.hpp"
#include "fast_decode.hpp"

namespace asgi_bridge::protocol {
namespace {

namespace fs = std::filesystem;

// --- helpers -----------------------------------------------------------------------

Envelope decode_ok(std::string_view bytes) {
  auto result = decode(bytes);
  if (const auto* error = std::get_if<DecodeError>(&result)) {
    ADD_FAILURE() << "unexpected DecodeError: " << error->message;
    return {};
  }
  // decode() takes its fast path where it can: the full decoder must agree.
  auto full = detail::full_decode(bytes);
  EXPECT_TRUE(std::holds_alternative<Envelope>(full) && std::get<Envelope>(full) == std::get<Envelope>(result));
  return std::get<Envelope>(std::move(result));
}

DecodeError decode_error(std::string_view bytes) {
  auto result = decode(bytes);
  if (std::holds_alternative<Envelope>(result)) {
    ADD_FAILURE() << "decoded although malformed";
    return {};
  }
  return std::get<DecodeError>(std::move(result));
}

std::string hex(std::string_view bytes) {
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += k_digits[c >> 4];
    out += k_digits[c & 0xF];
  }
  return out;
}

// A msgpack value built by hand, to write messages the codec would never
// produce. Map keys are values too, so that a key can be something else than str.
struct Value;
struct Nil {};
struct Str {
  std::string text;
};
struct Bin {
  std::string bytes;
};
struct Raw {  // already encoded msgpack bytes, copied as they are
  std::string bytes;
};
using Array = std::vector<Value>;
using Map = std::vector<std::pair<Value, Value>>;
struct Value {
  std::variant<Nil, bool, std::uint64_t, std::int64_t, Str, Bin, Raw, Array, Map> data;
};

Value nil() { return {Nil{}}; }
Value boolean(bool b) { return {b}; }
Value u(std::uint64_t n) { return {n}; }
Value negative(std::int64_t n) { return {n}; }
Value s(std::string text) { return {Str{std::move(text)}}; }
Value b(std::string bytes) { return {Bin{std::move(bytes)}}; }
Value raw(std::string bytes) { return {Raw{std::move(bytes)}}; }
Value array(Array items) { return {std::move(items)}; }
Value map(Map entries) { return {std::move(entries)}; }

void pack(msgpack::packer<msgpack::sbuffer>& packer, msgpack::sbuffer& buffer, const Value& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Nil>) {
          packer.pack_nil();
        } else if constexpr (std::is_same_v<T, bool>) {
          packer.pack(v);
        } else if constexpr (std::is_same_v<T, std::uint64_t>) {
          packer.pack_uint64(v);
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          packer.pack_int64(v);
        } else if constexpr (std::is_same_v<T, Str>) {
          packer.pack_str(static_cast<std::uint32_t>(v.text.size()));
          packer.pack_str_body(v.text.data(), static_cast<std::uint32_t>(v.text.size()));
        } else if constexpr (std::is_same_v<T, Bin>) {
          packer.pack_bin(static_cast<std::uint32_t>(v.bytes.size()));
          packer.pack_bin_body(v.bytes.data(), static_cast<std::uint32_t>(v.bytes.size()));
        } else if constexpr (std::is_same_v<T, Raw>) {
          buffer.write(v.bytes.data(), v.bytes.size());
        } else if constexpr (std::is_same_v<T, Array>) {
          packer.pack_array(static_cast<std::uint32_t>(v.size()));
          for (const auto& item : v) pack(packer, buffer, item);
        } else {
          packer.pack_map(static_cast<std::uint32_t>(v.size()));
          for (const auto& [key, item] : v) {
            pack(packer, buffer, key);
            pack(packer, buffer, item);
          }
        }
      },
      value.data);
}

std::string bytes_of(const Value& value) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  pack(packer, buffer, value);
  return {buffer.data(), buffer.size()};
}

bool is_key(const Value& key, std::string_view name) {
  const auto* str = std::get_if<Str>(&key.data);
  return str != nullptr && str->text == name;
}

// `entries` with `key` set to `value` (replaced in place, or appended).
Map with(Map entries, std::string_view key, Value value) {
  for (auto& [k, v] : entries) {
    if (is_key(k, key)) {
      v = std::move(value);
      return entries;
    }
  }
  entries.emplace_back(s(std::string(key)), std::move(value));
  return entries;
}

Map without(Map entries, std::string_view key) {
  std::erase_if(entries, [key](const auto& entry) { return is_key(entry.first, key); });
  return entries;
}

// A worker -> gateway event message of connection 7 carrying `event`.
Map event_message(Map event) {
  return {{s("v"), u(1)}, {s("k"), s("event")}, {s("g"), s("gw-1")}, {s("w"), s("wk-1")},
          {s("c"), u(7)}, {s("s"), u(0)},       {s("event"), map(std::move(event))}};
}

Map event_of(std::string type, Map fields = {}) {
  fields.insert(fields.begin(), {s("type"), s(std::move(type))});
  return fields;
}

// A worker's publish to gateway broadcast channel "news".
Map publish_message() {
  return {{s("v"), u(1)}, {s("k"), s("publish")}, {s("w"), s("wk-1")}, {s("channel"), s("news")},
          {s("event"), map(event_of("websocket.send", {{s("text"), s("hi")}}))}};
}

// A worker's broadcast to group "lobby".
Map group_message() {
  return {{s("v"), u(1)},         {s("k"), s("group")}, {s("w"), s("wk-1")}, {s("s"), u(3)},
          {s("group"), s("lobby")}, {s("event"), map(event_of("websocket.send", {{s("text"), s("hi")}}))}};
}

Value header(std::string name, std::string value) { return array({b(std::move(name)), b(std::move(value))}); }

Map http_scope_map() {
  return {
      {s("type"), s("http")},
      {s("asgi"), map({{s("version"), s("3.0")}, {s("spec_version"), s("2.5")}})},
      {s("http_version"), s("1.1")},
      {s("method"), s("GET")},
      {s("scheme"), s("http")},
      {s("path"), s("/")},
      {s("raw_path"), b("/")},
      {s("query_string"), b("")},
      {s("root_path"), s("")},
      {s("headers"), array({header("host", "x")})},
      {s("client"), array({s("127.0.0.1"), u(5000)})},
      {s("server"), array({s("127.0.0.1"), u(8000)})},
      {s("extensions"), map({{s("http.response.trailers"), map({})}})},
  };
}

// A gateway -> worker first event: connection 7, with `scope`.
Map first_event_message(Map scope) {
  return {{s("v"), u(1)},
          {s("k"), s("event")},
          {s("g"), s("gw-1")},
          {s("c"), u(7)},
          {s("s"), u(0)},
          {s("window"), u(k_default_byte_window)},
          {s("scope"), map(std::move(scope))},
          {s("event"), map(event_of("http.request"))}};
}

std::string bytes_of(const Map& entries) { return bytes_of(map(entries)); }

// --- sample values -------------------------------------------------------------------

Scope sample_http_scope() {
  Scope scope;
  scope.method = "GET";
  scope.path = "/caf\xc3\xa9";
  scope.raw_path = "/caf%C3%A9";
  scope.query_string = "a=1";
  scope.headers = {{"host", "example.com"}, {"x-bytes", "\xff\xfe"}};
  scope.client = Endpoint{"::1", 40000};
  scope.server = Endpoint{"::1", 80};
  scope.extensions = {"http.response.trailers"};
  return scope;
}

Scope sample_websocket_scope() {
  Scope scope;
  scope.type = ScopeType::websocket;
  scope.scheme = "wss";
  scope.path = "/chat";
  scope.raw_path = "/chat";
  scope.server = Endpoint{"/tmp/sock", std::nullopt};
  scope.subprotocols = {"v1.chat"};
  scope.extensions = {"websocket.http.response"};
  return scope;
}

template <typename T>
T message_event(std::string data, bool text) {
  T event;
  event.data = std::move(data);
  event.text = text;
  return event;
}

HttpResponseStart start_event(int status, Headers headers, bool trailers,
                              std::optional<Bytes> body = std::nullopt, bool more_body = false) {
  return HttpResponseStart{status, std::move(headers), trailers, std::move(body), more_body};
}

std::vector<Event> sample_events() {
  return {
      HttpRequest{"body", true},
      HttpRequest{std::string(1 << 16, 'x'), false},
      start_event(404, {{"content-type", "text/html"}, {"set-cookie", "a"}}, true),
      start_event(200, {{"content-length", "3"}}, false, std::string("\0\1\2", 3)),
      start_event(201, {}, true, "", true),
      HttpResponseBody{std::string("\0\1\2", 3), false},
      HttpResponseTrailers{{{"x-checksum", "abc"}}, true},
      HttpDisconnect{},
      WebSocketConnect{},
      WebSocketAccept{std::nullopt, {}},
      WebSocketAccept{"graphql-ws", {{"x-a", "b"}}},
      message_event<WebSocketReceive>("text \xe2\x9c\x93", true),
      message_event<WebSocketReceive>(std::string("\0\xff", 2), false),
      message_event<WebSocketSend>("", true),
      message_event<WebSocketSend>("b", false),
      WebSocketClose{1001, "bye"},
      WebSocketClose{4999, std::string(123, 'r')},
      WebSocketDisconnect{1006, ""},
      WebSocketHttpResponseStart{401, {{"www-authenticate", "Basic"}}},
      WebSocketHttpResponseBody{"denied", true},
  };
}

std::vector<Envelope> sample_envelopes() {
  std::vector<Envelope> out;
  std::uint64_t seq = 0;
  for (auto& event : sample_events()) {
    Envelope e;
    e.gateway_id = "gw-1";
    e.worker_id = "wk-1";
    e.conn_id = 1ULL << 40;
    e.seq = seq++;
    e.event = std::move(event);
    out.push_back(std::move(e));
  }
  for (auto scope : {sample_http_scope(), sample_websocket_scope()}) {
    Envelope e;
    e.gateway_id = "gw-1";
    e.conn_id = 3;
    e.seq = 0;
    e.window = 65536;
    e.features = scope.type == ScopeType::http ? k_feature_start_body : 0xffffffffffULL;  // unknown bits travel
    e.event = scope.type == ScopeType::http ? Event{HttpRequest{}} : Event{WebSocketConnect{}};
    e.scope = std::move(scope);
    out.push_back(std::move(e));
  }
  auto kind = [](Kind k) {
    Envelope e;
    e.kind = k;
    return e;
  };
  Envelope ready = kind(Kind::ready);
  ready.worker_id = "wk-1";
  ready.capacity = 4294967295U;
  ready.active = 0;
  out.push_back(ready);
  Envelope heartbeat = kind(Kind::heartbeat);
  heartbeat.gateway_id = "gw-1";
  out.push_back(heartbeat);
  Envelope credit = kind(Kind::credit);
  credit.gateway_id = "gw-1";
  credit.worker_id = "wk-1";
  credit.conn_id = 0;
  credit.events = 8;
  credit.bytes = 18446744073709551615ULL;
  out.push_back(credit);
  Envelope drain = kind(Kind::drain);
  drain.worker_id = "wk-1";
  out.push_back(drain);
  Envelope bye = kind(Kind::bye);
  bye.worker_id = "wk-1";
  out.push_back(bye);
  Envelope error = kind(Kind::error);
  error.gateway_id = "gw-1";
  error.conn_id = 12;
  error.message = "boom \xe2\x9c\x93";
  out.push_back(error);
  Envelope group = kind(Kind::group);
  group.worker_id = "wk-1";
  group.seq = 0;
  group.group = "lobby";
  group.event = WebSocketSend{{"hi", true}};
  out.push_back(group);
  Envelope publish = kind(Kind::publish);
  publish.worker_id = "wk-1";
  publish.channel = "room:lobby";
  publish.event = WebSocketSend{{"hi", true}};
  out.push_back(publish);
  return out;
}

// --- round trips ---------------------------------------------------------------------

TEST(CodecRoundTrip, EverySampleEnvelope) {
  for (const auto& envelope : sample_envelopes()) {
    std::string trace(kind_name(envelope.kind));
    if (envelope.event) {
      trace.append(" ").append(event_type(*envelope.event));
    }
    SCOPED_TRACE(trace);
    EXPECT_EQ(decode_ok(encode(envelope)), envelope);
  }
}

template <std::size_t... I>
void round_trip_default_events(std::index_sequence<I...>) {
  auto one = [](Event event) {
    SCOPED_TRACE(std::string(event_type(event)));
    // A channel has no valid default: the empty name is refused.
    std::visit([](auto& e) {
      if constexpr (requires { e.channel; }) e.channel = "c";
    }, event);
    Envelope envelope;
    envelope.gateway_id = "gw";
    envelope.conn_id = 1;
    envelope.seq = 0;
    envelope.event = std::move(event);
    EXPECT_EQ(decode_ok(encode(envelope)), envelope);
  };
  (one(Event(std::in_place_index<I>)), ...);
}

TEST(CodecRoundTrip, EveryEventTypeWithDefaults) {
  round_trip_default_events(std::make_index_sequence<std::variant_size_v<Event>>{});
}

TEST(CodecRoundTrip, EveryKind) {
  std::set<Kind> seen;
  for (const auto& envelope : sample_envelopes()) seen.insert(envelope.kind);
  EXPECT_EQ(seen.size(), 9U);
  for (Kind kind : seen) EXPECT_EQ(kind_from_name(kind_name(kind)), kind);
  EXPECT_EQ(kind_from_name("gossip"), std::nullopt);
}

// --- golden vectors --------------------------------------------------------------------

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> vector_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(ASGI_BRIDGE_VECTORS_DIR)) {
    if (entry.path().extension() == ".msgpack") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

Envelope vector_named(std::string_view name) {
  return decode_ok(read_file(fs::path(ASGI_BRIDGE_VECTORS_DIR) / (std::string(name) + ".msgpack")));
}

TEST(GoldenVectors, DecodeAndReencodeByteForByte) {
  auto files = vector_files();
  ASSERT_GE(files.size(), 30U) << "vectors missing in " << ASGI_BRIDGE_VECTORS_DIR;
  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    std::string bytes = read_file(file);
    auto result = decode(bytes);
    ASSERT_TRUE(std::holds_alternative<Envelope>(result)) << std::get<DecodeError>(result).message;
    std::string again = encode(std::get<Envelope>(result));
    EXPECT_EQ(again.size(), bytes.size());
    EXPECT_TRUE(again == bytes) << "re-encoded bytes differ";
  }
}

TEST(GoldenVectors, CoverEveryEventTypeAndKind) {
  std::set<std::string> types;
  std::set<Kind> kinds;
  for (const auto& file : vector_files()) {
    auto envelope = decode_ok(read_file(file));
    kinds.insert(envelope.kind);
    if (envelope.event) types.emplace(event_type(*envelope.event));
  }
  EXPECT_EQ(kinds.size(), 9U);
  EXPECT_EQ(types.size(), std::variant_size_v<Event>);
}

TEST(GoldenVectors, EdgeValues) {
  auto big = vector_named("event_http_request_1mib_body");
  EXPECT_EQ(std::get<HttpRequest>(*big.event).body.size(), 1U << 20);

  auto start = vector_named("event_http_response_start_100_headers");
  EXPECT_EQ(std::get<HttpResponseStart>(*start.event).headers.size(), 100U);

  auto with_body = std::get<HttpResponseStart>(*vector_named("event_http_response_start_body").event);
  EXPECT_EQ(with_body.body, "Hello, world!");
  EXPECT_FALSE(with_body.more_body);
  EXPECT_EQ(with_body.headers, (Headers{{"content-type", "text/plain"}}));
  EXPECT_TRUE(std::get<HttpResponseStart>(*vector_named("event_http_response_start_body_more").event).more_body);
  EXPECT_FALSE(std::get<HttpResponseStart>(*vector_named("event_http_response_start").event).body);

  auto close = vector_named("event_websocket_close_reason");
  EXPECT_EQ(std::get<WebSocketClose>(*close.event).reason,
            "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe2\x9c\x93");  // "привет ✓"

  auto ws = vector_named("event_websocket_connect_first");
  ASSERT_TRUE(ws.scope);
  EXPECT_EQ(ws.scope->type, ScopeType::websocket);
  EXPECT_EQ(ws.scope->client, std::nullopt);
  ASSERT_TRUE(ws.scope->server);
  EXPECT_EQ(ws.scope->server->port, std::nullopt);
  EXPECT_EQ(ws.window, k_default_byte_window);

  auto http = vector_named("event_http_request_first");
  ASSERT_TRUE(http.scope);
  EXPECT_EQ(http.scope->headers.at(2).value, "caf\xe9 \xff\xfe");
  EXPECT_EQ(http.features, 0U);
  auto with_features = vector_named("event_http_request_first_features");
  EXPECT_EQ(with_features.features, k_feature_start_body);
  with_features.features = 0;
  EXPECT_EQ(with_features, http);

  EXPECT_EQ(std::get<WebSocketAccept>(*vector_named("event_websocket_accept").event).subprotocol,
            std::nullopt);
  EXPECT_EQ(std::get<WebSocketAccept>(*vector_named("event_websocket_accept_subprotocol").event)
                .subprotocol,
            "chat");
}

// --- canonical bytes ----------------------------------------------------------------------

TEST(CanonicalForm, ExactBytesOfSmallMessages) {
  Envelope bye;
  bye.kind = Kind::bye;
  bye.gateway_id = "gw";
  // {"v": 1, "k": "bye", "g": "gw"}
  EXPECT_EQ(hex(encode(bye)), "83a17601a16ba3627965a167a26777");

  Envelope credit;
  credit.kind = Kind::credit;
  credit.gateway_id = "g";
  credit.conn_id = 200;     // uint8
  credit.bytes = 70000;     // uint32
  // {"v": 1, "k": "credit", "g": "g", "c": 200, "bytes": 70000}
  EXPECT_EQ(hex(encode(credit)),
            "85a17601a16ba6637265646974a167a167a163ccc8a56279746573ce00011170");
}

TEST(CanonicalForm, EventDefaultsAreWritten) {
  Envelope e;
  e.gateway_id = "g";
  e.conn_id = 0;
  e.seq = 0;
  e.event = WebSocketClose{};
  // ... "event": {"type": "websocket.close", "code": 1000, "reason": ""}
  std::string expected_event = bytes_of(map({{s("type"), s("websocket.close")},
                                             {s("code"), u(1000)},
                                             {s("reason"), s("")}}));
  std::string bytes = encode(e);
  EXPECT_EQ(hex(bytes.substr(bytes.size() - expected_event.size())), hex(expected_event));
}

// "features" right after "window", and left out when 0; a start's first
// body and more_body after "trailers", both or neither.
TEST(CanonicalForm, FeaturesAndStartBodyPlaces) {
  Envelope first;
  first.gateway_id = "g";
  first.conn_id = 1;
  first.seq = 0;
  first.window = 5;
  first.event = HttpDisconnect{};
  std::string window_key = "a677696e646f7705";  // "window": 5
  EXPECT_EQ(hex(encode(first)).find("6665617475726573"), std::string::npos);
  first.features = k_feature_start_body;
  EXPECT_NE(hex(encode(first)).find(window_key + "a8" "6665617475726573" "01" "a5" "6576656e74"), std::string::npos);

  Envelope start;
  start.gateway_id = "g";
  start.conn_id = 1;
  start.seq = 0;
  start.event = start_event(200, {}, false, "hi");
  // {"type": ..., "status": 200, "headers": [], "trailers": false, "body": b"hi", "more_body": false}
  EXPECT_TRUE(hex(encode(start)).ends_with("86a474797065b3687474702e726573706f6e73652e7374617274a6737461747573cc"
                                           "c8a76865616465727390a8747261696c657273c2a4626f6479c4026869a96d6f72"
                                           "655f626f6479c2"));
}

// more_body without body is meaningless: dropped on decode, not re-encoded.
TEST(Decode, MoreBodyWithoutBodyIsIgnored) {
  auto bytes = bytes_of(event_message(event_of("http.response.start", {{s("status"), u(200)}, {s("more_body"), boolean(true)}})));
  auto envelope = decode_ok(bytes);
  const auto& start = std::get<HttpResponseStart>(*envelope.event);
  EXPECT_FALSE(start.body);
  EXPECT_FALSE(start.more_body);
  EXPECT_EQ(hex(encode(envelope)).find("6d6f72655f626f6479"), std::string::npos);
}

TEST(CanonicalForm, StrAndBinUseTheShortestHeader) {
  Envelope e;
  e.kind = Kind::error;
  e.gateway_id = "g";
  e.message = std::string(32, 'm');  // str8, as Python's msgpack writes it
  std::string bytes = encode(e);
  EXPECT_NE(bytes.find("\xd9\x20mmmm"), std::string::npos);

  e.kind = Kind::event;
  e.message.reset();
  e.conn_id = 1;
  e.seq = 1;
  e.event = HttpResponseBody{std::string(300, 'x'), false};  // bin16
  bytes = encode(e);
  EXPECT_NE(bytes.find("\xc5\x01\x2cxxxx"), std::string::npos);
}

// encode() has a msgpack writer of its own: every size class of every type it
// writes must come out as msgpack-c's packer writes it (unpacked and packed again).
TEST(CanonicalForm, EveryFormAsMsgpackCWritesIt) {
  auto repacked = [](const std::string& bytes) {
    auto handle = msgpack::unpack(bytes.data(), bytes.size());
    msgpack::sbuffer out;
    msgpack::pack(out, handle.get());
    return std::string(out.data(), out.size());
  };
  const std::vector<std::int64_t> integers = {0,      1,     127,    128,         255,         256,
                                              65535,  65536, -1,     -32,         -33,         -128,
                                              -129,   -32768, -32769, 2147483647, -2147483648LL};
  for (auto value : integers) {
    Envelope e;
    e.gateway_id = "g";
    e.conn_id = static_cast<std::uint64_t>(value < 0 ? -value : value);
    e.seq = 1;
    e.event = WebSocketClose{static_cast<int>(value), ""};
    auto bytes = encode(e);
    EXPECT_EQ(bytes, repacked(bytes)) << value;
  }
  for (std::size_t size : {0, 15, 16, 31, 32, 255, 256, 65535, 65536}) {
    Envelope e;
    e.gateway_id = "g";
    e.conn_id = 5'000'000'000ULL;  // uint64
    e.seq = 1;
    Scope scope = sample_http_scope();
    scope.path = std::string(size, 'p');                                // str of every size class
    scope.headers.assign(std::min<std::size_t>(size, 300), {"n", std::string(std::min<std::size_t>(size, 300), 'v')});
    e.scope = scope;
    e.event = HttpRequest{std::string(size, 'b'), false};
    auto bytes = encode(e);
    EXPECT_EQ(bytes, repacked(bytes)) << size;
  }
}

TEST(CanonicalForm, ScopeFieldsOnlyWhereTheyApply) {
  Scope http = sample_http_scope();
  http.subprotocols = {"ignored"};
  Scope websocket = sample_websocket_scope();
  websocket.method = "GET";
  for (auto* scope : {&http, &websocket}) {
    Envelope e;
    e.gateway_id = "g";
    e.conn_id = 1;
    e.seq = 0;
    e.scope = *scope;
    e.event = WebSocketConnect{};
    auto back = decode_ok(encode(e));
    ASSERT_TRUE(back.scope);
    EXPECT_TRUE(back.scope->subprotocols.empty() || back.scope->type == ScopeType::websocket);
    EXPECT_TRUE(back.scope->method.empty() || back.scope->type == ScopeType::http);
  }
}

// --- lenient decoding ------------------------------------------------------------------------

TEST(Decode, IgnoresUnknownKeysEverywhere) {
  Map scope = with(http_scope_map(), "future", map({{s("deep"), array({u(1), nil()})}}));
  Map message = with(first_event_message(scope), "zz", raw("\xc7\x01\x05x"));  // an ext value
  message = with(message, "event", map(with(event_of("http.request"), "later", boolean(true))));
  auto with_unknown = decode_ok(bytes_of(message));
  auto plain = decode_ok(bytes_of(first_event_message(http_scope_map())));
  EXPECT_EQ(with_unknown, plain);
}

TEST(Decode, UnknownKindIsFlaggedNotMalformed) {
  auto error = decode_error(bytes_of(Map{{s("v"), u(1)}, {s("k"), s("gossip")}, {s("x"), u(1)}}));
  EXPECT_TRUE(error.unknown_kind);
  EXPECT_NE(error.message.find("k: unknown kind \"gossip\""), std::string::npos) << error.message;

  auto malformed = decode_error(bytes_of(Map{{s("v"), u(1)}, {s("k"), u(3)}}));
  EXPECT_FALSE(malformed.unknown_kind);
}

TEST(Decode, KeysInAnyOrderAndLongIntegerForms) {
  // c as uint64 (0xcf), s as uint16: valid, though not canonical.
  Map message = {{s("event"), map(event_of("http.disconnect"))},
                 {s("s"), raw(std::string("\xcd\x00\x01", 3))},
                 {s("c"), raw(std::string("\xcf\0\0\0\0\0\0\0\x07", 9))},
                 {s("g"), s("gw")},
                 {s("k"), s("event")},
                 {s("v"), u(1)}};
  auto envelope = decode_ok(bytes_of(message));
  EXPECT_EQ(envelope.conn_id, 7U);
  EXPECT_EQ(envelope.seq, 1U);
  EXPECT_TRUE(std::holds_alternative<HttpDisconnect>(*envelope.event));
}

TEST(Decode, MissingEventFieldsTakeDefaults) {
  auto request = decode_ok(bytes_of(event_message(event_of("http.request"))));
  EXPECT_EQ(std::get<HttpRequest>(*request.event), HttpRequest{});
  auto close = decode_ok(bytes_of(event_message(event_of("websocket.close"))));
  EXPECT_EQ(std::get<WebSocketClose>(*close.event), (WebSocketClose{1000, ""}));
  auto disconnect = decode_ok(bytes_of(event_message(event_of("websocket.disconnect"))));
  EXPECT_EQ(std::get<WebSocketDisconnect>(*disconnect.event), (WebSocketDisconnect{1005, ""}));
  auto accept = decode_ok(bytes_of(event_message(event_of("websocket.accept"))));
  EXPECT_EQ(std::get<WebSocketAccept>(*accept.event), WebSocketAccept{});
}

TEST(Decode, MissingScopeKeysTakeDefaults) {
  Map minimal = {{s("type"), s("websocket")}, {s("path"), s("/p\xc3\xa9")}};
  auto envelope = decode_ok(bytes_of(first_event_message(minimal)));
  ASSERT_TRUE(envelope.scope);
  EXPECT_EQ(envelope.scope->scheme, "ws");
  EXPECT_EQ(envelope.scope->raw_path, "/p\xc3\xa9");
  EXPECT_EQ(envelope.scope->asgi_version, "3.0");
  EXPECT_EQ(envelope.scope->spec_version, "2.5");
  EXPECT_EQ(envelope.scope->http_version, "1.1");
  EXPECT_EQ(envelope.scope->client, std::nullopt);
}

TEST(Decode, MessageEventAcceptsTheOtherKeyAsNil) {
  auto envelope = decode_ok(bytes_of(
      event_message(event_of("websocket.receive", {{s("bytes"), nil()}, {s("text"), s("hi")}}))));
  EXPECT_EQ(std::get<WebSocketReceive>(*envelope.event), message_event<WebSocketReceive>("hi", true));
}

TEST(Decode, ReasonOf123BytesIsAccepted) {
  decode_ok(bytes_of(event_message(
      event_of("websocket.close", {{s("code"), u(1000)}, {s("reason"), s(std::string(123, 'r'))}}))));
}

TEST(Decode, ErrorCarriesTheConnectionWhenItCouldBeRead) {
  auto error = decode_error(bytes_of(event_message(event_of("http.response.start", {{s("status"), u(1000)}}))));
  EXPECT_EQ(error.message, "event.status: 1000 out of range 100..599");
  EXPECT_EQ(error.conn_id, 7U);
  EXPECT_EQ(decode_error("\x92\x01\x02").conn_id, std::nullopt);
}

// --- malformed input ---------------------------------------------------------------------------

struct Malformed {
  std::string name;
  std::string bytes;
  std::string expected;  // a substring of DecodeError::message
};

std::string valid_message() { return bytes_of(event_message(event_of("http.disconnect"))); }

Map response_start(Value status, Value headers = array({})) {
  return event_message(event_of("http.response.start", {{s("status"), std::move(status)},
                                                        {s("headers"), std::move(headers)}}));
}

Map close_with(Value code, Value reason = s("")) {
  return event_message(event_of("websocket.close", {{s("code"), std::move(code)},
                                                    {s("reason"), std::move(reason)}}));
}

Map send_with(Map fields) { return event_message(event_of("websocket.send", std::move(fields))); }

Map scope_with(std::string_view key, Value value) {
  return first_event_message(with(http_scope_map(), key, std::move(value)));
}

std::string nested_arrays(int depth) { return std::string(static_cast<std::size_t>(depth), '\x91') + '\xc0'; }

std::vector<Malformed> malformed_samples() {
  std::string valid = valid_message();
  return {
      // Framing.
      {"empty input", "", "empty message"},
      {"not a map", bytes_of(array({u(1)})), "expected a map, got array"},
      {"not a map: str", bytes_of(s("hello")), "expected a map, got str"},
      {"truncated", valid.substr(0, valid.size() - 1), "truncated msgpack data"},
      {"truncated header", "\x81\xa1", "truncated msgpack data"},
      {"trailing bytes", valid + "\xc0\xc0", "2 trailing bytes after the message"},
      {"never-used byte 0xc1", "\xc1", "invalid msgpack data"},
      // Envelope.
      {"wrong version", bytes_of(with(event_message(event_of("http.disconnect")), "v", u(2))),
       "v: 2 is not protocol version 1"},
      {"missing version", bytes_of(without(event_message(event_of("http.disconnect")), "v")), "v: missing"},
      {"version as str", bytes_of(with(event_message(event_of("http.disconnect")), "v", s("1"))),
       "v: expected uint, got str"},
      {"missing k", bytes_of(without(event_message(event_of("http.disconnect")), "k")), "k: missing"},
      {"k as bin", bytes_of(with(event_message(event_of("http.disconnect")), "k", b("event"))),
       "k: expected str, got bin"},
      {"missing c on an event", bytes_of(without(event_message(event_of("http.disconnect")), "c")),
       "c: missing on an event"},
      {"missing s on an event", bytes_of(without(event_message(event_of("http.disconnect")), "s")),
       "s: missing on an event"},
      {"missing event", bytes_of(without(event_message(event_of("http.disconnect")), "event")),
       "event: missing on an event"},
      {"negative c", bytes_of(with(event_message(event_of("http.disconnect")), "c", negative(-1))),
       "c: expected uint, got negative int"},
      {"empty gateway id", bytes_of(with(event_message(event_of("http.disconnect")), "g", s(""))),
       "g: empty id"},
      {"capacity over uint32",
       bytes_of(Map{{s("v"), u(1)}, {s("k"), s("ready")}, {s("w"), s("wk")}, {s("capacity"), u(1ULL << 32)}}),
       "capacity: 4294967296 out of range 0..4294967295"},
      {"message as bin", bytes_of(Map{{s("v"), u(1)}, {s("k"), s("error")}, {s("message"), b("x")}}),
       "message: expected str, got bin"},
      {"features as str", bytes_of(with(event_message(event_of("http.disconnect")), "features", s("1"))),
       "features: expected uint, got str"},
      {"start body as str",
       bytes_of(event_message(event_of("http.response.start", {{s("status"), u(200)}, {s("body"), s("hi")}}))),
       "event.body: expected bin, got str"},
      {"start more_body as uint",
       bytes_of(event_message(event_of("http.response.start",
                                       {{s("status"), u(200)}, {s("body"), b("hi")}, {s("more_body"), u(1)}}))),
       "event.more_body: expected bool, got uint"},
      {"start more_body as nil without a body",
       bytes_of(event_message(event_of("http.response.start", {{s("status"), u(200)}, {s("more_body"), nil()}}))),
       "event.more_body: expected bool, got nil"},
      {"group without origin", bytes_of(without(group_message(), "w")), "w: missing on a group message"},
      {"group without s", bytes_of(without(group_message(), "s")), "s: missing on a group message"},
      {"group without name", bytes_of(without(group_message(), "group")), "group: missing on a group message"},
      {"group with an empty name", bytes_of(with(group_message(), "group", s(""))),
       "group: missing on a group message"},
      {"group name as bin", bytes_of(with(group_message(), "group", b("lobby"))), "group: expected str, got bin"},
      {"group carrying a close", bytes_of(with(group_message(), "event", map(event_of("websocket.close")))),
       "event: a group message carries one websocket.send"},
      {"publish without channel", bytes_of(without(publish_message(), "channel")),
       "channel: missing on a publish message"},
      {"publish to a bad channel", bytes_of(with(publish_message(), "channel", s("a b"))),
       "channel: \"a b\" is not a channel name"},
      {"publish to a channel of 129 bytes", bytes_of(with(publish_message(), "channel", s(std::string(129, 'c')))),
       "is not a channel name"},
      {"publish carrying a close", bytes_of(with(publish_message(), "event", map(event_of("websocket.close")))),
       "event: a publish message carries one websocket.send"},
      {"subscribe without channel", bytes_of(event_message(event_of("asgi-bridge.subscribe"))),
       "event.channel: missing"},
      {"subscribe to an empty channel",
       bytes_of(event_message(event_of("asgi-bridge.subscribe", {{s("channel"), s("")}}))),
       "event.channel: \"\" is not a channel name"},
      {"unsubscribe from a channel with a NUL",
       bytes_of(event_message(event_of("asgi-bridge.unsubscribe", {{s("channel"), s(std::string("a\0b", 3))}}))),
       "is not a channel name"},
      // Events.
      {"event not a map", bytes_of(with(event_message({}), "event", s("http.disconnect"))),
       "event: expected map, got str"},
      {"missing event type", bytes_of(event_message({{s("body"), b("")}})), "event.type: missing"},
      {"unknown event type", bytes_of(event_message(event_of("http.request.maybe"))),
       "event.type: unknown event type \"http.request.maybe\""},
      {"event type as bin", bytes_of(event_message({{s("type"), b("http.request")}})),
       "event.type: expected str, got bin"},
      {"body as str (str where bin is required)",
       bytes_of(event_message(event_of("http.response.body", {{s("body"), s("text")}}))),
       "event.body: expected bin, got str"},
      {"reason as bin (bin where str is required)", bytes_of(close_with(u(1000), b("bye"))),
       "event.reason: expected str, got bin"},
      {"more_body as int", bytes_of(event_message(event_of("http.request", {{s("more_body"), u(1)}}))),
       "event.more_body: expected bool, got uint"},
      {"status 99", bytes_of(response_start(u(99))), "event.status: 99 out of range 100..599"},
      {"status 600", bytes_of(response_start(u(600))), "event.status: 600 out of range 100..599"},
      {"status missing", bytes_of(event_message(event_of("http.response.start"))), "event.status: missing"},
      {"status negative", bytes_of(response_start(negative(-200))), "event.status: expected uint, got negative int"},
      {"websocket.http.response.start status 1000",
       bytes_of(event_message(event_of("websocket.http.response.start", {{s("status"), u(1000)}}))),
       "event.status: 1000 out of range 100..599"},
      {"close code 1005", bytes_of(close_with(u(1005))), "event.code: 1005 is not a close code"},
      {"close code 999", bytes_of(close_with(u(999))), "event.code: 999 is not a close code"},
      {"close code 5000", bytes_of(close_with(u(5000))), "event.code: 5000 is not a close code"},
      {"close code 2000", bytes_of(close_with(u(2000))), "event.code: 2000 is not a close code"},
      {"close reason of 124 bytes", bytes_of(close_with(u(1000), s(std::string(124, 'r')))),
       "event.reason: 124 bytes, over the 123-byte limit"},
      {"close reason of 62 two-byte characters",
       bytes_of(close_with(u(1000), s([] {
                             std::string out;
                             for (int i = 0; i < 62; ++i) out += "\xc3\xa9";
                             return out;
                           }()))),
       "event.reason: 124 bytes"},
      {"disconnect code 999", bytes_of(event_message(event_of("websocket.disconnect", {{s("code"), u(999)}}))),
       "event.code: 999 out of range 1000..4999"},
      {"both text and bytes", bytes_of(send_with({{s("bytes"), b("x")}, {s("text"), s("x")}})),
       "event: both bytes and text"},
      {"neither text nor bytes", bytes_of(send_with({})), "event: neither bytes nor text"},
      {"both nil", bytes_of(send_with({{s("bytes"), nil()}, {s("text"), nil()}})), "event: neither bytes nor text"},
      {"text as bin", bytes_of(send_with({{s("text"), b("x")}})), "event.text: expected str, got bin"},
      {"invalid UTF-8 text", bytes_of(send_with({{s("text"), s("ab\xff")}})), "event.text: invalid UTF-8"},
      {"overlong UTF-8", bytes_of(send_with({{s("text"), s("\xc0\xaf")}})), "event.text: invalid UTF-8"},
      {"UTF-8 surrogate", bytes_of(send_with({{s("text"), s("\xed\xa0\x80")}})), "event.text: invalid UTF-8"},
      {"cut UTF-8 sequence", bytes_of(send_with({{s("text"), s("ok \xe2\x9c")}})), "event.text: invalid UTF-8"},
      {"invalid UTF-8 subprotocol",
       bytes_of(event_message(event_of("websocket.accept", {{s("subprotocol"), s("\x80")}}))),
       "event.subprotocol: invalid UTF-8"},
      // Headers.
      {"header value with CR LF", bytes_of(response_start(u(200), array({header("x-a", "1\r\nset-cookie: evil")}))),
       "event.headers[0]: header \"x-a\" value contains CR, LF or NUL"},
      {"header value with LF", bytes_of(response_start(u(200), array({header("a", "b"), header("x", "\n")}))),
       "event.headers[1]: header \"x\" value contains CR, LF or NUL"},
      {"header value with NUL", bytes_of(response_start(u(200), array({header("x", std::string("a\0b", 3))}))),
       "value contains CR, LF or NUL"},
      {"empty header name", bytes_of(response_start(u(200), array({header("", "v")}))),
       "event.headers[0]: empty header name"},
      {"header name not a token", bytes_of(response_start(u(200), array({header("x a:", "v")}))),
       "event.headers[0]: header name \"x a:\" is not a token"},
      {"header name with CR", bytes_of(response_start(u(200), array({header("x\r", "v")}))),
       "header name \"x\\x0d\" is not a token"},
      {"header of one element", bytes_of(response_start(u(200), array({array({b("x")})}))),
       "event.headers[0]: expected a [name, value] array of two bin"},
      {"header name as str", bytes_of(response_start(u(200), array({array({s("x"), b("v")})}))),
       "event.headers[0].name: expected bin, got str"},
      {"headers as a map", bytes_of(response_start(u(200), map({{s("x"), b("v")}}))),
       "event.headers: expected array, got map"},
      {"trailer header with LF",
       bytes_of(event_message(event_of("http.response.trailers", {{s("headers"), array({header("x", "\n")})}}))),
       "event.headers[0]: header \"x\" value contains"},
      // Scope.
      {"scope type ftp", bytes_of(scope_with("type", s("ftp"))), "scope.type: \"ftp\" is not http or websocket"},
      {"scope without path", bytes_of(first_event_message(without(http_scope_map(), "path"))),
       "scope.path: missing"},
      {"http scope without method", bytes_of(first_event_message(without(http_scope_map(), "method"))),
       "scope.method: missing"},
      {"client port 70000", bytes_of(scope_with("client", array({s("10.0.0.1"), u(70000)}))),
       "scope.client.port: 70000 out of range 0..65535"},
      {"server port negative", bytes_of(scope_with("server", array({s("h"), negative(-1)}))),
       "scope.server.port: expected uint, got negative int"},
      {"client nil port", bytes_of(scope_with("client", array({s("h"), nil()}))), "scope.client.port: nil"},
      {"client of three elements", bytes_of(scope_with("client", array({s("h"), u(1), u(2)}))),
       "scope.client: expected nil or a [host, port] array"},
      {"raw_path as str", bytes_of(scope_with("raw_path", s("/"))), "scope.raw_path: expected bin, got str"},
      {"scope header with CR", bytes_of(scope_with("headers", array({header("x", "a\rb")}))),
       "scope.headers[0]: header \"x\" value contains CR, LF or NUL"},
      {"path invalid UTF-8", bytes_of(scope_with("path", s("/\xfe"))), "scope.path: invalid UTF-8"},
      {"extension not a map", bytes_of(scope_with("extensions", map({{s("x.y"), u(1)}}))),
       "scope.extensions.x.y: expected map, got uint"},
      {"asgi not a map", bytes_of(scope_with("asgi", s("3.0"))), "scope.asgi: expected map, got str"},
      {"subprotocols not str",
       bytes_of(first_event_message(with(with(http_scope_map(), "type", s("websocket")), "subprotocols",
                                         array({b("chat")})))),
       "scope.subprotocols[0]: expected str, got bin"},
      // Size and depth bombs.
      {"array claiming 4 Gi elements", "\xdd\xff\xff\xff\xff", "an array claims more elements"},
      {"map claiming 4 Gi entries", "\xdf\xff\xff\xff\xff", "a map claims more entries"},
      {"nested array claiming 4 Gi elements",
       bytes_of(with(event_message(event_of("http.disconnect")), "zz", raw("\xdd\xff\xff\xff\xff"))),
       "an array claims more elements"},
      {"str claiming 4 GiB", "\x81\xa1v\xdb\xff\xff\xff\xff", "truncated msgpack data"},
      {"bin claiming 4 GiB", "\x81\xa1v\xc6\xff\xff\xff\xff", "truncated msgpack data"},
      {"nesting bomb", "\x81\xa2zz" + nested_arrays(100000), "nested deeper than 16 levels"},
  };
}

TEST(DecodeMalformed, EachRejectedWithAMessageNamingTheField) {
  auto samples = malformed_samples();
  // A non-str key at the top: {1: nil, ...valid entries}.
  auto valid = event_message(event_of("http.disconnect"));
  valid.insert(valid.begin(), {u(1), nil()});
  samples.push_back({"non-str key at the top", bytes_of(valid), "a key is uint, not str"});
  auto inner = event_message({{s("type"), s("http.disconnect")}, {negative(-1), nil()}});
  samples.push_back({"non-str key in the event", bytes_of(inner), "event: a key is negative int, not str"});

  ASSERT_GE(samples.size(), 20U);
  for (const auto& sample : samples) {
    SCOPED_TRACE(sample.name);
    auto error = decode_error(sample.bytes);
    EXPECT_FALSE(error.unknown_kind);
    EXPECT_NE(error.message.find(sample.expected), std::string::npos)
        << "message: " << error.message << "\nexpected to contain: " << sample.expected;
  }
}

TEST(DecodeMalformed, NestingWithinTheLimitIsAccepted) {
  // An unknown key may hold nested values: 14 levels below the envelope is fine.
  auto envelope = decode_ok(bytes_of(with(event_message(event_of("http.disconnect")), "zz", raw(nested_arrays(14)))));
  EXPECT_TRUE(std::holds_alternative<HttpDisconnect>(*envelope.event));
}

// Every prefix of a valid message, and random corruptions of it, decode to an
// error or a message: never a crash, never an exception.
TEST(DecodeMalformed, PrefixesAndCorruptionsNeverThrow) {
  std::vector<std::string> messages;
  for (const auto& envelope : sample_envelopes()) {
    auto bytes = encode(envelope);
    if (bytes.size() < 4096) messages.push_back(std::move(bytes));
  }
  std::mt19937 random(12345);
  for (const auto& bytes : messages) {
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_TRUE(std::holds_alternative<DecodeError>(decode(std::string_view(bytes).substr(0, n))));
    }
    for (int round = 0; round < 200; ++round) {
      std::string corrupt = bytes;
      auto at = std::uniform_int_distribution<std::size_t>(0, corrupt.size() - 1)(random);
      corrupt[at] = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(random));
      EXPECT_NO_THROW((void)decode(corrupt));
    }
  }
}

// The gateway's per-message encoder writes what encode() writes: text and
// bytes at every str/bin header size, ids and sequence numbers at every uint size.
TEST(EncodeWebSocketReceive, SameBytesAsEncode) {
  const std::vector<std::uint64_t> numbers = {0, 127, 128, 255, 256, 65535, 65536, 0xffffffffULL, 0x100000000ULL};
  for (bool text : {true, false}) {
    for (std::size_t size : {0, 1, 31, 32, 255, 256, 65535, 65536, 70000}) {
      for (std::size_t i = 0; i < numbers.size(); ++i) {
        Envelope envelope;
        envelope.kind = Kind::event;
        envelope.gateway_id = size % 2 ? "gw-0123abcd" : std::string(40, 'g');
        envelope.conn_id = numbers[i];
        envelope.seq = numbers[numbers.size() - 1 - i];
        WebSocketReceive receive;
        receive.text = text;
        receive.data = std::string(size, text ? 'x' : '\xff');
        envelope.event = receive;
        EXPECT_EQ(encode_websocket_receive(envelope.gateway_id, *envelope.conn_id, *envelope.seq, text, receive.data),
                  encode(envelope))
            << (text ? "text " : "bytes ") << size << " conn " << numbers[i];
      }
    }
  }
}

// encode()'s fast path for event envelopes writes what the packer writes:
// every event type, bodies and messages at every header size, ids absent,
// short and long, numbers at every uint size; and declines when another
// field is set.
TEST(EncodeEventEnvelope, SameBytesAsThePacker) {
  const std::vector<std::uint64_t> numbers = {0, 127, 128, 255, 256, 65535, 65536, 0xffffffffULL, 0x100000000ULL};
  auto events = sample_events();
  for (std::size_t size : {0, 31, 32, 255, 256, 65535, 65536}) {
    events.push_back(message_event<WebSocketSend>(std::string(size, 'x'), true));
    events.push_back(message_event<WebSocketSend>(std::string(size, '\xff'), false));
    events.push_back(HttpResponseBody{std::string(size, 'b'), size % 2 == 0});
    events.push_back(start_event(200, {}, false, std::string(size, 's'), size % 2 == 1));
  }
  std::size_t checked = 0;
  for (const auto& event : events) {
    for (const std::string& id : {std::string(), std::string("gw-1"), std::string(40, 'g')}) {
      for (std::size_t i = 0; i < numbers.size(); ++i) {
        Envelope envelope;
        envelope.gateway_id = id;
        envelope.worker_id = i % 2 ? "wk-0123abcd" : "";
        envelope.conn_id = numbers[i];
        envelope.seq = numbers[numbers.size() - 1 - i];
        envelope.event = event;
        EXPECT_EQ(encode(envelope), detail::full_encode(envelope)) << event_type(event) << " id " << id.size();
        envelope.window = 1;  // not the fast path's shape
        EXPECT_EQ(encode(envelope), detail::full_encode(envelope)) << event_type(event) << " with a window";
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 1000U);
}

// encode_split()'s three parts are encode()'s bytes, the payload moved
// (not copied) into the middle one from its threshold up; below it, or
// without a payload, everything is in the head. Every event with a payload,
// on both encoders' paths (a scope or a window takes the full one).
TEST(EncodeSplit, PartsJoinToEncodesBytes) {
  std::vector<Event> events = sample_events();
  for (std::size_t size : {k_split_min - 1, k_split_min, std::size_t{65536}, std::size_t{70000}}) {
    events.push_back(HttpRequest{std::string(size, 'q'), true});
    events.push_back(start_event(200, {{"content-length", "9"}}, false, std::string(size, 's'), true));
    events.push_back(HttpResponseBody{std::string(size, 'b'), false});
    events.push_back(message_event<WebSocketSend>(std::string(size, 't'), true));
    events.push_back(message_event<WebSocketReceive>(std::string(size, '\xff'), false));
    events.push_back(WebSocketHttpResponseBody{std::string(size, 'd'), true});
  }
  std::size_t split = 0;
  for (const auto& event : events) {
    for (int shape = 0; shape < 3; ++shape) {
      Envelope envelope;
      envelope.gateway_id = "gw-1";
      envelope.worker_id = shape == 1 ? "wk-1" : "";
      envelope.conn_id = 7;
      envelope.seq = shape == 2 ? 0 : 5;
      envelope.event = event;
      if (shape == 2) {
        envelope.window = 65536;
        if (std::holds_alternative<HttpRequest>(event)) envelope.scope = sample_http_scope();
      }
      auto expected = encode(envelope);
      auto size = payload_size(*envelope.event);
      const char* payload = size > 0 ? payload_of(*envelope.event)->data() : nullptr;
      auto parts = encode_split(std::move(envelope));
      EXPECT_EQ(parts.head + parts.body + parts.tail, expected) << event_type(event) << " shape " << shape;
      if (size >= k_split_min) {
        EXPECT_EQ(parts.body.size(), size) << event_type(event);
        EXPECT_EQ(parts.body.data(), payload) << event_type(event) << ": moved, not copied";
        ++split;
      } else {
        EXPECT_TRUE(parts.body.empty() && parts.tail.empty()) << event_type(event);
      }
    }
  }
  EXPECT_EQ(split, 3U * 6 * 3 + 3U);  // and the 64 KiB request of sample_events()
}

}  // namespace
}  // namespace asgi_bridge::protocol
