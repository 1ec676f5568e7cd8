// The fast path of decode() (protocol/src/fast_decode.cpp) against the full
// decoder: whenever the fast path accepts a message, the full decoder accepts
// it too and returns an equal Envelope. Checked on every golden vector, on
// systematic mutations of them (every byte changed, every truncation, every
// map key repeated), and on valid messages in forms the encoders never write.
// And the fast path must really take the common shapes, or it saves nothing.
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "asgi_bridge/protocol/codec.hpp"
#include "fast_decode.hpp"

namespace asgi_bridge::protocol {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string vector_named(std::string_view name) {
  return read_file(fs::path(ASGI_BRIDGE_VECTORS_DIR) / (std::string(name) + ".msgpack"));
}

std::vector<std::pair<std::string, std::string>> all_vectors() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& entry : fs::directory_iterator(ASGI_BRIDGE_VECTORS_DIR)) {
    if (entry.path().extension() == ".msgpack") {
      out.emplace_back(entry.path().stem().string(), read_file(entry.path()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string hex(std::string_view bytes) {
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes.substr(0, 200)) {
    out += k_digits[c >> 4];
    out += k_digits[c & 0xF];
  }
  return out;
}

// The fast path's result when it accepts, after checking it equals the full
// decoder's; nullopt when it declines.
std::optional<Envelope> parity(std::string_view bytes) {
  Envelope fast;
  bool accepted = detail::fast_decode(bytes, fast);
  auto full = detail::full_decode(bytes);
  auto public_result = decode(bytes);
  if (const auto* envelope = std::get_if<Envelope>(&full)) {
    EXPECT_TRUE(std::holds_alternative<Envelope>(public_result) &&
                std::get<Envelope>(public_result) == *envelope)
        << hex(bytes);
  } else {
    EXPECT_FALSE(accepted) << "fast path accepted what decode() rejects with \""
                           << std::get<DecodeError>(full).message << "\": " << hex(bytes);
    EXPECT_TRUE(std::holds_alternative<DecodeError>(public_result) &&
                std::get<DecodeError>(public_result).message == std::get<DecodeError>(full).message)
        << hex(bytes);
    return std::nullopt;
  }
  if (!accepted) return std::nullopt;
  EXPECT_TRUE(fast == std::get<Envelope>(full)) << "fast path and full decoder differ: " << hex(bytes);
  return fast;
}

bool accepted(std::string_view bytes) { return parity(bytes).has_value(); }

// --- the common shapes are taken --------------------------------------------------------

TEST(FastDecode, TakesWhatTheBusCarriesMost) {
  for (std::string_view name : {
           "event_http_request_first", "event_http_request_first_features", "event_http_request_empty_body", "event_http_request_1mib_body",
           "event_http_response_start", "event_http_response_start_100_headers",
           "event_http_response_start_body", "event_http_response_start_body_more",
           "event_http_response_body", "event_http_response_body_empty", "event_http_response_trailers",
           "event_http_disconnect", "event_websocket_connect_first", "event_websocket_accept",
           "event_websocket_accept_subprotocol", "event_websocket_receive_text",
           "event_websocket_receive_bytes", "event_websocket_receive_text_70000",
           "event_websocket_send_text", "event_websocket_send_bytes", "event_websocket_send_bytes_empty",
           "event_websocket_close", "event_websocket_close_reason", "event_websocket_disconnect",
           "event_websocket_http_response_start", "event_websocket_http_response_body",
           "event_broadcast_subscribe", "event_broadcast_unsubscribe", "credit_gateway", "credit_worker",
           "heartbeat_gateway", "heartbeat_worker", "heartbeat_worker_ws_capacity", "ready", "drain",
           "bye_gateway", "bye_worker", "error_gateway", "error_worker", "group_text", "group_bytes",
           "publish_text", "publish_bytes"}) {
    SCOPED_TRACE(std::string(name));
    EXPECT_TRUE(accepted(vector_named(name)));
  }
}

// --- parity on every vector and its mutations -----------------------------------------------

TEST(FastDecodeParity, EveryVector) {
  auto vectors = all_vectors();
  ASSERT_GE(vectors.size(), 30U);
  for (const auto& [name, bytes] : vectors) {
    SCOPED_TRACE(name);
    parity(bytes);
  }
}

// The vectors small enough to mutate byte by byte.
std::vector<std::pair<std::string, std::string>> small_vectors() {
  auto vectors = all_vectors();
  std::erase_if(vectors, [](const auto& v) { return v.second.size() > 4096; });
  return vectors;
}

TEST(FastDecodeParity, EveryByteChanged) {
  // msgpack type bytes and edges of ranges, besides flipped bits.
  static constexpr std::array<std::uint8_t, 20> k_values = {
      0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0xA0, 0xBF, 0xC0, 0xC1,
      0xC2, 0xC4, 0xCC, 0xCF, 0xD0, 0xD9, 0xDC, 0xDE, 0xE0, 0xFF};
  int taken = 0;
  for (const auto& [name, bytes] : small_vectors()) {
    SCOPED_TRACE(name);
    for (std::size_t at = 0; at < bytes.size(); ++at) {
      std::string changed = bytes;
      for (int bit = 0; bit < 8; ++bit) {
        changed[at] = static_cast<char>(bytes[at] ^ (1 << bit));
        taken += accepted(changed);
      }
      for (auto value : k_values) {
        changed[at] = static_cast<char>(value);
        taken += accepted(changed);
      }
    }
  }
  EXPECT_GT(taken, 1000);  // changed payload bytes, ids, numbers: still taken
}

TEST(FastDecodeParity, EveryTruncationAndTrailingByte) {
  for (const auto& [name, bytes] : small_vectors()) {
    SCOPED_TRACE(name);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_FALSE(accepted(std::string_view(bytes).substr(0, n)));
    }
    EXPECT_FALSE(accepted(bytes + '\xC0'));
  }
}

TEST(FastDecodeParity, RandomCorruptions) {
  std::mt19937 random(19);
  for (const auto& [name, bytes] : small_vectors()) {
    SCOPED_TRACE(name);
    for (int round = 0; round < 300; ++round) {
      std::string corrupt = bytes;
      for (int n = 0; n < 3; ++n) {
        auto at = std::uniform_int_distribution<std::size_t>(0, corrupt.size() - 1)(random);
        corrupt[at] = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(random));
      }
      parity(corrupt);
    }
  }
}

// --- repeated keys ------------------------------------------------------------------------

std::string pack(const msgpack::object& object) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, object);
  return {buffer.data(), buffer.size()};
}

// Every map of `root`, each in turn: `edit` gets the map's entries to change.
// Calls `check` on the packed message after each edit.
template <typename Edit, typename Check>
void for_each_map(msgpack::object& root, msgpack::zone& zone, msgpack::object& node, Edit edit, Check check) {
  if (node.type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < node.via.array.size; ++i) {
      for_each_map(root, zone, node.via.array.ptr[i], edit, check);
    }
  }
  if (node.type != msgpack::type::MAP) return;
  auto original = node.via.map;
  for (std::uint32_t i = 0; i < original.size; ++i) {
    for (int variant = 0; variant < 3; ++variant) {
      node.via.map = edit(zone, original, i, variant);
      check(pack(root));
    }
    node.via.map = original;
    for_each_map(root, zone, original.ptr[i].val, edit, check);
  }
}

// Entry i repeated: after the map, with its value (variant 0) or nil (1);
// or before the map with nil, so that the valid one is the last (2).
msgpack::object_map repeat_entry(msgpack::zone& zone, const msgpack::object_map& map, std::uint32_t i,
                                 int variant) {
  auto* entries = static_cast<msgpack::object_kv*>(
      zone.allocate_align(sizeof(msgpack::object_kv) * (map.size + 1), alignof(msgpack::object_kv)));
  msgpack::object_kv extra = map.ptr[i];
  if (variant > 0) extra.val = msgpack::object();
  std::uint32_t at = variant == 2 ? 0 : map.size;
  for (std::uint32_t j = 0, k = 0; j <= map.size; ++j) entries[j] = j == at ? extra : map.ptr[k++];
  return msgpack::object_map{map.size + 1, entries};
}

// A repeated key declines (the full decoder takes the last one), except an
// extension name: the scope lists it twice either way.
TEST(FastDecodeParity, EveryKeyRepeated) {
  int full_accepted = 0;
  int fast_accepted = 0;
  for (const auto& [name, bytes] : small_vectors()) {
    SCOPED_TRACE(name);
    msgpack::zone zone;
    auto root = msgpack::unpack(zone, bytes.data(), bytes.size());
    for_each_map(root, zone, root, repeat_entry, [&](const std::string& message) {
      fast_accepted += accepted(message);
      full_accepted += std::holds_alternative<Envelope>(detail::full_decode(message));
    });
  }
  EXPECT_GT(full_accepted, 100);  // the mutations reached valid messages too
  EXPECT_LT(fast_accepted, 20);
}

// --- valid messages in other forms ------------------------------------------------------------

std::string str(std::string_view text) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_str(static_cast<std::uint32_t>(text.size()));
  packer.pack_str_body(text.data(), static_cast<std::uint32_t>(text.size()));
  return {buffer.data(), buffer.size()};
}

// A map of already encoded keys and values, in this order.
std::string map_of(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out(1, static_cast<char>(0x80 | entries.size()));
  for (const auto& [key, value] : entries) out += key + value;
  return out;
}

// An http.response.start of connection 9 with `status` encoded as given; the
// keys reversed, or with an unknown key holding a float.
enum class Form { canonical, reversed, extra };
std::string response_start_bytes(const std::string& status, Form form = Form::canonical) {
  std::string event = map_of({{str("type"), str("http.response.start")}, {str("status"), status}});
  std::vector<std::pair<std::string, std::string>> entries = {
      {str("v"), "\x01"}, {str("k"), str("event")}, {str("c"), "\x09"}, {str("s"), "\x01"}, {str("event"), event}};
  if (form == Form::reversed) std::reverse(entries.begin(), entries.end());
  if (form == Form::extra) entries.insert(entries.begin() + 1, {str("future"), "\xcb\x3f\xf8" + std::string(6, '\0')});
  return map_of(entries);
}

TEST(FastDecode, TakesOtherValidForms) {
  EXPECT_TRUE(accepted(response_start_bytes("\xcc\xc8")));                        // uint8 200
  EXPECT_TRUE(accepted(response_start_bytes(std::string("\xcf\0\0\0\0\0\0\0\xc8", 9))));  // uint64 200
  EXPECT_TRUE(accepted(response_start_bytes("\xcc\xc8", Form::reversed)));  // keys in any order
  EXPECT_TRUE(accepted(response_start_bytes("\xcc\xc8", Form::extra)));     // an unknown key
  auto envelope = parity(response_start_bytes("\xcd\x01\xf4"));
  ASSERT_TRUE(envelope);
  EXPECT_EQ(std::get<HttpResponseStart>(*envelope->event).status, 500);
}

TEST(FastDecode, LeavesRareFormsToTheFullDecoder) {
  std::string int16_status("\xd1\x00\xc8", 3);  // int16 200: the full decoder reads it as a uint
  EXPECT_FALSE(accepted(response_start_bytes(int16_status)));
  EXPECT_TRUE(std::holds_alternative<Envelope>(decode(response_start_bytes(int16_status))));
  EXPECT_FALSE(accepted(response_start_bytes("\xcc\x63")));      // status 99: its error message
  EXPECT_FALSE(accepted(response_start_bytes("\xc0")));          // nil status
}

// Fields the encoders write rarely, through encode(), so every field has a
// non-default value somewhere.
TEST(FastDecode, TakesEveryScopeField) {
  Envelope http;
  http.gateway_id = "gw";
  http.conn_id = 1;
  http.seq = 0;
  http.window = 1 << 20;
  http.event = HttpRequest{"body", true};
  Scope& scope = http.scope.emplace();
  scope.asgi_version = "3.1";
  scope.spec_version = "2.4";
  scope.http_version = "2";
  scope.method = "POST";
  scope.scheme = "https";
  scope.path = "/caf\xc3\xa9";
  scope.raw_path = "/caf%C3%A9";
  scope.query_string = "a=1";
  scope.root_path = "/root";
  scope.headers = {{"host", "x"}, {"x-bytes", "\xff\xfe"}};
  scope.client = Endpoint{"::1", 40000};
  scope.server = Endpoint{"/tmp/sock", std::nullopt};
  scope.extensions = {"http.response.trailers", "websocket.http.response"};

  Envelope websocket = http;
  websocket.event = WebSocketConnect{};
  websocket.scope->type = ScopeType::websocket;
  websocket.scope->method.clear();
  websocket.scope->scheme = "wss";
  websocket.scope->subprotocols = {"v1.chat", "v2"};
  websocket.scope->client.reset();

  for (const auto& envelope : {http, websocket}) {
    auto taken = parity(encode(envelope));
    ASSERT_TRUE(taken);
    EXPECT_EQ(*taken, envelope);
  }
}

}  // namespace
}  // namespace asgi_bridge::protocol
