// The fast path of decode() (fast_decode.hpp): one pass over the msgpack bytes
// straight into the Envelope. The full decoder first builds msgpack-c's object
// tree of the whole message, then looks every field up in it by a linear key
// search; on the gateway that was a fifth of its instructions per HTTP request.
//
// Identical results by construction: this path accepts only what it can check
// completely, with the full decoder's rules and the same check functions
// (is_valid_utf8, is_token, ...), and declines everything else to it. Any doubt
// declines: a repeated key (the full decoder reads the last one and never looks
// at the others), an unknown key holding an array, map or ext, a signed
// integer encoding where a uint is expected, a scope or event whose "type" is
// not its first key. It never words an error: the full decoder does, for every
// invalid message.
//
// Keep the fields in step with describe_*() in codec.cpp; the parity tests
// (tests/unit/protocol/fast_decode_test.cpp, fuzz target codec_decode) catch a
// difference.
#include "fast_decode.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "asgi_bridge/protocol/http_grammar.hpp"
#include "names.hpp"
#include "validate.hpp"

namespace asgi_bridge::protocol::detail {
namespace {

template <typename T, typename... Ts>
inline constexpr bool is_one_of = (std::is_same_v<T, Ts> || ...);

// The full decoder's msgpack-c limits (65536 array elements, half as many map
// entries, 16 levels) reject nothing this path accepts: it takes no count over
// this, and reads 4 levels at most (envelope, event, headers, header).
constexpr std::uint64_t k_max_count = 32768;

// The fewest bytes a valid header takes: [bin8 name of 1 byte, bin8 empty value].
constexpr std::size_t k_min_header_bytes = 6;

// A read position in untrusted bytes: every read checks the length left first.
// A false return means "decline"; where the cursor then stands does not matter.
class Cursor {
 public:
  explicit Cursor(std::string_view bytes) : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}
  bool at_end() const { return p_ == end_; }

  // A map or array header whose entries can all be in the bytes left.
  bool map(std::uint32_t& count) {
    std::uint64_t n = 0;
    return container(0x80, 0xDE, n) && plausible(n, 2, count);  // a key and a value: 2 bytes at least
  }
  bool array(std::uint32_t& count, std::size_t min_element_bytes) {
    std::uint64_t n = 0;
    return container(0x90, 0xDC, n) && plausible(n, min_element_bytes, count);
  }

  // A str or bin, viewed in place.
  bool str(std::string_view& out) {
    std::uint8_t type = 0;
    std::uint64_t size = 0;
    if (!next(type)) return false;
    if ((type & 0xE0) == 0xA0) {
      size = type & 0x1F;
    } else if (type < 0xD9 || type > 0xDB) {
      return false;
    } else if (!number(std::size_t{1} << (type - 0xD9), size)) {
      return false;
    }
    return take(size, out);
  }
  bool bin(std::string_view& out) {
    std::uint8_t type = 0;
    std::uint64_t size = 0;
    if (!next(type) || type < 0xC4 || type > 0xC6) return false;
    return number(std::size_t{1} << (type - 0xC4), size) && take(size, out);
  }

  // A positive fixint or uint 8..64. The full decoder also reads a signed
  // encoding of a non-negative number as a uint; no encoder writes that, so
  // it is left to the full decoder.
  bool uint(std::uint64_t& out) {
    std::uint8_t type = 0;
    if (!next(type)) return false;
    if (type <= 0x7F) {
      out = type;
      return true;
    }
    return type >= 0xCC && type <= 0xCF && number(std::size_t{1} << (type - 0xCC), out);
  }
  bool boolean(bool& out) {
    std::uint8_t type = 0;
    if (!next(type) || (type != 0xC2 && type != 0xC3)) return false;
    out = type == 0xC3;
    return true;
  }
  // Consumes a nil; false, consuming nothing, for any other value.
  bool nil() {
    if (at_end() || static_cast<std::uint8_t>(*p_) != 0xC0) return false;
    ++p_;
    return true;
  }

  // Skips an ignored value: nil, bool, int, float, str or bin. An array, map
  // or ext is left to the full decoder (nesting, limits).
  bool skip_scalar() {
    if (at_end()) return false;
    auto type = static_cast<std::uint8_t>(*p_);
    std::string_view ignored;
    if ((type & 0xE0) == 0xA0 || (type >= 0xD9 && type <= 0xDB)) return str(ignored);
    if (type >= 0xC4 && type <= 0xC6) return bin(ignored);
    ++p_;
    if (type <= 0x7F || type >= 0xE0 || type == 0xC0 || type == 0xC2 || type == 0xC3) return true;
    switch (type) {
      case 0xCC: case 0xD0: return take(1, ignored);  // uint8, int8
      case 0xCD: case 0xD1: return take(2, ignored);
      case 0xCE: case 0xD2: case 0xCA: return take(4, ignored);  // and float32
      case 0xCF: case 0xD3: case 0xCB: return take(8, ignored);  // and float64
      default: return false;
    }
  }

 private:
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  bool next(std::uint8_t& type) {
    if (at_end()) return false;
    type = static_cast<std::uint8_t>(*p_++);
    return true;
  }
  // The count of a map or array: fix form `fix` (4 bits of count), or the
  // 16-bit form `wide` followed by the 32-bit one.
  bool container(std::uint8_t fix, std::uint8_t wide, std::uint64_t& n) {
    std::uint8_t type = 0;
    if (!next(type)) return false;
    if ((type & 0xF0) == fix) {
      n = type & 0x0F;
      return true;
    }
    return (type == wide || type == wide + 1) && number(type == wide ? 2 : 4, n);
  }
  // The next `size` bytes as a big-endian number.
  bool number(std::size_t size, std::uint64_t& out) {
    if (left() < size) return false;
    out = 0;
    for (std::size_t i = 0; i < size; ++i) out = (out << 8) | static_cast<std::uint8_t>(p_[i]);
    p_ += size;
    return true;
  }
  bool take(std::uint64_t size, std::string_view& out) {
    if (size > left()) return false;
    out = std::string_view(p_, static_cast<std::size_t>(size));
    p_ += size;
    return true;
  }
  // Bounds a claimed count before anyone reserves memory for it.
  bool plausible(std::uint64_t n, std::size_t min_element_bytes, std::uint32_t& count) const {
    if (n > k_max_count || n * min_element_bytes > left()) return false;
    count = static_cast<std::uint32_t>(n);
    return true;
  }

  const char* p_;
  const char* end_;
};

// --- values -----------------------------------------------------------------------

bool read_text(Cursor& in, Text& out) {
  std::string_view text;
  if (!in.str(text) || !is_valid_utf8(text)) return false;
  out.assign(text);
  return true;
}

bool read_bytes(Cursor& in, Bytes& out) {
  std::string_view bytes;
  if (!in.bin(bytes)) return false;
  out.assign(bytes);
  return true;
}

bool read_uint_in(Cursor& in, std::uint64_t low, std::uint64_t high, std::uint64_t& out) {
  return in.uint(out) && out >= low && out <= high;
}

template <typename T>
bool read_optional_uint(Cursor& in, std::optional<T>& out) {
  std::uint64_t value = 0;
  if (!read_uint_in(in, 0, std::numeric_limits<T>::max(), value)) return false;
  out = static_cast<T>(value);
  return true;
}

bool read_optional_text(Cursor& in, std::optional<Text>& out) { return read_text(in, out.emplace()); }

bool read_int_in(Cursor& in, std::uint64_t low, std::uint64_t high, int& out) {
  std::uint64_t value = 0;
  if (!read_uint_in(in, low, high, value)) return false;
  out = static_cast<int>(value);
  return true;
}

bool read_headers(Cursor& in, Headers& headers) {
  std::uint32_t count = 0;
  if (!in.array(count, k_min_header_bytes)) return false;
  headers.clear();
  headers.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t pair = 0;
    std::string_view name;
    std::string_view value;
    if (!in.array(pair, 1) || pair != 2 || !in.bin(name) || !in.bin(value)) return false;
    if (!http::is_token(name) || !http::is_safe_field_value(value)) return false;
    headers.push_back(Header{Bytes(name), Bytes(value)});
  }
  return true;
}

// --- maps -------------------------------------------------------------------------

// What reading one field of a map came to.
enum class Field { read, unknown, invalid };

Field field(bool ok) { return ok ? Field::read : Field::invalid; }

// The keys of one map seen so far, by their index in the map's key list.
class Seen {
 public:
  bool has(std::size_t key) const { return (bits_ >> key) & 1U; }
  bool first(std::size_t key) {
    if (has(key)) return false;
    bits_ |= std::uint32_t{1} << key;
    return true;
  }

 private:
  std::uint32_t bits_ = 0;
};

// Keys are a few bytes, most of them one: a loop beats a call to memcmp.
bool same_key(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

template <std::size_t N>
std::size_t key_index(const std::array<std::string_view, N>& keys, std::string_view key) {
  std::size_t i = 0;
  while (i < N && !same_key(keys[i], key)) ++i;
  return i;
}

// Reads `count` entries of a map: each key of `keys` at most once, by
// `read(index)`, which answers Field::unknown (the cursor untouched) for a
// key that does not apply; the value of any other key is skipped.
template <std::size_t N, typename Read>
bool read_entries(Cursor& in, std::uint32_t count, const std::array<std::string_view, N>& keys,
                  Seen& seen, Read read) {
  static_assert(N <= 32, "Seen holds 32 keys");
  for (std::uint32_t i = 0; i < count; ++i) {
    std::string_view key;
    if (!in.str(key)) return false;
    auto index = key_index(keys, key);
    auto outcome = Field::unknown;
    if (index < N) {
      if (!seen.first(index)) return false;
      outcome = read(index);
    }
    if (outcome == Field::invalid || (outcome == Field::unknown && !in.skip_scalar())) return false;
  }
  return true;
}

// A map that starts with "type": its value, and the count of the entries after it.
bool read_typed_map(Cursor& in, std::string_view& type, std::uint32_t& rest) {
  std::uint32_t count = 0;
  std::string_view key;
  if (!in.map(count) || count == 0 || !in.str(key) || key != "type" || !in.str(type)) return false;
  rest = count - 1;
  return true;
}

// --- events -------------------------------------------------------------------------

// "type" first: a repeat of it declines.
constexpr std::array<std::string_view, 13> k_event_keys = {
    "type", "body", "more_body", "status", "headers", "trailers", "more_trailers",
    "subprotocol", "bytes", "text", "code", "reason", "channel"};
enum class EventKey { type, body, more_body, status, headers, trailers, more_trailers, subprotocol,
                      bytes, text, code, reason, channel };

// What the reading of one event keeps besides its fields.
struct EventState {
  Seen seen;
  int payloads = 0;  // websocket.receive/send: non-nil "bytes" and "text" read
};

bool read_close_code(Cursor& in, int& code) {
  std::uint64_t number = 0;
  if (!in.uint(number) || !is_valid_close_code(number)) return false;
  code = static_cast<int>(number);
  return true;
}

// A close frame's payload is 125 bytes, 2 of them the code.
bool read_close_reason(Cursor& in, Text& reason) { return read_text(in, reason) && reason.size() <= 123; }

// websocket.receive/send: "bytes" (bin) or "text" (str); the other may be
// there as nil.
bool read_payload(Cursor& in, bool text, WebSocketMessage& e, EventState& state) {
  if (in.nil()) return true;
  ++state.payloads;
  e.text = text;
  return text ? read_text(in, e.data) : read_bytes(in, e.data);
}

// The fields describe_event() lists for each event, with its checks.
template <typename T>
Field read_event_field(Cursor& in, EventKey key, T& e, EventState& state) {
  using enum EventKey;
  if constexpr (is_one_of<T, HttpRequest, HttpResponseBody, WebSocketHttpResponseBody>) {
    if (key == body) return field(read_bytes(in, e.body));
    if (key == more_body) return field(in.boolean(e.more_body));
  } else if constexpr (is_one_of<T, HttpResponseStart, WebSocketHttpResponseStart>) {
    if (key == status) return field(read_int_in(in, 100, 599, e.status));
    if (key == headers) return field(read_headers(in, e.headers));
    if constexpr (std::is_same_v<T, HttpResponseStart>) {
      if (key == trailers) return field(in.boolean(e.trailers));
      if (key == body) return field(read_bytes(in, e.body.emplace()));
      if (key == more_body) return field(in.boolean(e.more_body));
    }
  } else if constexpr (std::is_same_v<T, HttpResponseTrailers>) {
    if (key == headers) return field(read_headers(in, e.headers));
    if (key == more_trailers) return field(in.boolean(e.more_trailers));
  } else if constexpr (std::is_same_v<T, WebSocketAccept>) {
    if (key == subprotocol) return field(in.nil() || read_optional_text(in, e.subprotocol));
    if (key == headers) return field(read_headers(in, e.headers));
  } else if constexpr (is_one_of<T, WebSocketReceive, WebSocketSend>) {
    if (key == bytes || key == text) return field(read_payload(in, key == text, e, state));
  } else if constexpr (std::is_same_v<T, WebSocketClose>) {
    if (key == code) return field(read_close_code(in, e.code));
    if (key == reason) return field(read_close_reason(in, e.reason));
  } else if constexpr (std::is_same_v<T, WebSocketDisconnect>) {
    if (key == code) return field(read_int_in(in, 1000, 4999, e.code));
    if (key == reason) return field(read_text(in, e.reason));
  } else if constexpr (is_one_of<T, BroadcastSubscribe, BroadcastUnsubscribe>) {
    if (key == channel) return field(read_text(in, e.channel) && is_valid_channel(e.channel));
  } else {
    static_assert(is_one_of<T, HttpDisconnect, WebSocketConnect>, "read_event_field: a new event");
  }
  (void)in, (void)e, (void)state;
  return Field::unknown;
}

// The required fields of describe_event(), and MapReader::message()'s "exactly one".
template <typename T>
bool event_complete(const EventState& state) {
  if constexpr (is_one_of<T, HttpResponseStart, WebSocketHttpResponseStart>) {
    return state.seen.has(static_cast<std::size_t>(EventKey::status));
  } else if constexpr (is_one_of<T, BroadcastSubscribe, BroadcastUnsubscribe>) {
    return state.seen.has(static_cast<std::size_t>(EventKey::channel));
  } else if constexpr (is_one_of<T, WebSocketReceive, WebSocketSend>) {
    return state.payloads == 1;
  } else {
    return true;
  }
}

// The `count` entries after "type" of an event of alternative I.
template <std::size_t I>
bool read_alternative(Cursor& in, std::uint32_t count, std::optional<Event>& out) {
  auto& e = std::get<I>(out.emplace(std::in_place_index<I>));
  using T = std::decay_t<decltype(e)>;
  EventState state;
  state.seen.first(static_cast<std::size_t>(EventKey::type));
  auto read = [&](std::size_t key) { return read_event_field(in, static_cast<EventKey>(key), e, state); };
  if (!read_entries(in, count, k_event_keys, state.seen, read) || !event_complete<T>(state)) return false;
  if constexpr (std::is_same_v<T, HttpResponseStart>) {
    if (!e.body) e.more_body = false;  // MapReader::start_body(): meaningless without a body
  }
  return true;
}

using AlternativeReader = bool (*)(Cursor&, std::uint32_t, std::optional<Event>&);
template <std::size_t... I>
constexpr auto make_alternative_readers(std::index_sequence<I...>) {
  return std::array<AlternativeReader, sizeof...(I)>{&read_alternative<I>...};
}
constexpr auto k_alternative_readers = make_alternative_readers(std::make_index_sequence<k_event_count>{});

bool read_event(Cursor& in, std::optional<Event>& out) {
  std::string_view type;
  std::uint32_t rest = 0;
  if (!read_typed_map(in, type, rest)) return false;
  auto index = event_index(type);  // a known type is ASCII: the full decoder's UTF-8 check passes
  return index && k_alternative_readers[*index](in, rest, out);
}

// --- the scope ------------------------------------------------------------------------

constexpr std::array<std::string_view, 14> k_scope_keys = {
    "type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string",
    "root_path", "headers", "client", "server", "subprotocols", "extensions"};
enum class ScopeKey { type, asgi, http_version, method, scheme, path, raw_path, query_string,
                      root_path, headers, client, server, subprotocols, extensions };

bool scope_type(std::string_view name, ScopeType& type) {
  if (name == "http") {
    type = ScopeType::http;
  } else if (name == "websocket") {
    type = ScopeType::websocket;
  } else {
    return false;
  }
  return true;
}

// "asgi": {"version": str, "spec_version": str}.
bool read_asgi(Cursor& in, Scope& scope) {
  static constexpr std::array<std::string_view, 2> k_keys = {"version", "spec_version"};
  std::uint32_t count = 0;
  Seen seen;
  auto read = [&](std::size_t key) { return field(read_text(in, key == 0 ? scope.asgi_version : scope.spec_version)); };
  return in.map(count) && read_entries(in, count, k_keys, seen, read);
}

// nil or [host, port]; a nil port only where `nil_port` allows it.
bool read_endpoint(Cursor& in, std::optional<Endpoint>& out, bool nil_port) {
  if (in.nil()) {
    out.reset();
    return true;
  }
  std::uint32_t count = 0;
  auto& endpoint = out.emplace();
  if (!in.array(count, 1) || count != 2 || !read_text(in, endpoint.host)) return false;
  if (in.nil()) return nil_port;
  std::uint64_t port = 0;
  if (!read_uint_in(in, 0, 65535, port)) return false;
  endpoint.port = static_cast<int>(port);
  return true;
}

bool read_texts(Cursor& in, std::vector<Text>& out) {
  std::uint32_t count = 0;
  if (!in.array(count, 1)) return false;
  out.assign(count, Text());
  for (auto& text : out) {
    if (!read_text(in, text)) return false;
  }
  return true;
}

// A map of extension name -> settings. The full decoder ignores the settings
// but checks their keys: only the empty map, as encode() writes it, is taken.
bool read_extensions(Cursor& in, std::vector<Text>& out) {
  std::uint32_t count = 0;
  if (!in.map(count)) return false;
  out.assign(count, Text());
  for (auto& name : out) {
    std::uint32_t settings = 0;
    if (!read_text(in, name) || !in.map(settings) || settings != 0) return false;
  }
  return true;
}

// The fields describe_scope() lists; `method` exists for http only,
// `subprotocols` for websocket only.
Field read_scope_field(Cursor& in, ScopeKey key, Scope& s) {
  bool http = s.type == ScopeType::http;
  switch (key) {
    case ScopeKey::type: break;  // read first, a repeat is declined before this
    case ScopeKey::asgi: return field(read_asgi(in, s));
    case ScopeKey::http_version: return field(read_text(in, s.http_version));
    case ScopeKey::method: return http ? field(read_text(in, s.method)) : Field::unknown;
    case ScopeKey::scheme: return field(read_text(in, s.scheme));
    case ScopeKey::path: return field(read_text(in, s.path));
    case ScopeKey::raw_path: return field(read_bytes(in, s.raw_path));
    case ScopeKey::query_string: return field(read_bytes(in, s.query_string));
    case ScopeKey::root_path: return field(read_text(in, s.root_path));
    case ScopeKey::headers: return field(read_headers(in, s.headers));
    case ScopeKey::client: return field(read_endpoint(in, s.client, false));
    case ScopeKey::server: return field(read_endpoint(in, s.server, true));
    case ScopeKey::subprotocols: return http ? Field::unknown : field(read_texts(in, s.subprotocols));
    case ScopeKey::extensions: return field(read_extensions(in, s.extensions));
  }
  return Field::invalid;
}

// read_scope() of codec.cpp: required path (and method for http), and the
// two defaults that depend on other fields.
bool read_scope(Cursor& in, std::optional<Scope>& out) {
  std::string_view type;
  std::uint32_t rest = 0;
  auto& scope = out.emplace();
  if (!read_typed_map(in, type, rest) || !scope_type(type, scope.type)) return false;
  Seen seen;
  seen.first(static_cast<std::size_t>(ScopeKey::type));
  auto read = [&](std::size_t key) { return read_scope_field(in, static_cast<ScopeKey>(key), scope); };
  if (!read_entries(in, rest, k_scope_keys, seen, read)) return false;
  auto has = [&seen](ScopeKey key) { return seen.has(static_cast<std::size_t>(key)); };
  if (!has(ScopeKey::path) || (scope.type == ScopeType::http && !has(ScopeKey::method))) return false;
  if (!has(ScopeKey::scheme) && scope.type == ScopeType::websocket) scope.scheme = "ws";
  if (!has(ScopeKey::raw_path)) scope.raw_path = scope.path;
  return true;
}

// --- the envelope -------------------------------------------------------------------------

// The keys of every event message first: a key is looked up from the front.
constexpr std::array<std::string_view, 18> k_envelope_keys = {
    "v", "k", "g", "w", "c", "s", "event", "scope", "window", "features", "capacity", "active", "ws_capacity",
    "events", "bytes", "message", "group", "channel"};
enum class EnvelopeKey { v, k, g, w, c, s, event, scope, window, features, capacity, active, ws_capacity,
                         events, bytes, message, group, channel };

bool read_version(Cursor& in, int& version) {
  std::uint64_t number = 0;
  if (!in.uint(number) || number != static_cast<std::uint64_t>(k_protocol_version)) return false;
  version = k_protocol_version;
  return true;
}

bool read_kind(Cursor& in, Kind& kind) {
  std::string_view name;
  if (!in.str(name)) return false;
  auto known = kind_from_name(name);
  if (!known) return false;
  kind = *known;
  return true;
}

bool read_id(Cursor& in, std::string& id) { return read_text(in, id) && !id.empty(); }

// The fields describe_envelope() lists.
Field read_envelope_field(Cursor& in, EnvelopeKey key, Envelope& e) {
  switch (key) {
    case EnvelopeKey::v: return field(read_version(in, e.version));
    case EnvelopeKey::k: return field(read_kind(in, e.kind));
    case EnvelopeKey::g: return field(read_id(in, e.gateway_id));
    case EnvelopeKey::w: return field(read_id(in, e.worker_id));
    case EnvelopeKey::c: return field(read_optional_uint(in, e.conn_id));
    case EnvelopeKey::s: return field(read_optional_uint(in, e.seq));
    case EnvelopeKey::capacity: return field(read_optional_uint(in, e.capacity));
    case EnvelopeKey::active: return field(read_optional_uint(in, e.active));
    case EnvelopeKey::ws_capacity: return field(read_optional_uint(in, e.ws_capacity));
    case EnvelopeKey::window: return field(read_optional_uint(in, e.window));
    case EnvelopeKey::features: return field(in.uint(e.features));
    case EnvelopeKey::events: return field(read_optional_uint(in, e.events));
    case EnvelopeKey::bytes: return field(read_optional_uint(in, e.bytes));
    case EnvelopeKey::message: return field(read_optional_text(in, e.message));
    case EnvelopeKey::group: return field(read_optional_text(in, e.group));
    case EnvelopeKey::channel: return field(read_optional_text(in, e.channel));
    case EnvelopeKey::scope: return field(read_scope(in, e.scope));
    case EnvelopeKey::event: return field(read_event(in, e.event));
  }
  return Field::invalid;
}

// read_envelope(), check_group() and check_publish() of codec.cpp: what each
// kind needs besides its fields.
bool kind_complete(const Envelope& e, const Seen& seen) {
  auto has = [&seen](EnvelopeKey key) { return seen.has(static_cast<std::size_t>(key)); };
  bool carries_send = e.event && std::holds_alternative<WebSocketSend>(*e.event);
  switch (e.kind) {
    case Kind::event: return has(EnvelopeKey::c) && has(EnvelopeKey::s) && has(EnvelopeKey::event);
    case Kind::group: return !e.worker_id.empty() && e.seq && e.group && !e.group->empty() && carries_send;
    case Kind::publish: return e.channel && is_valid_channel(*e.channel) && carries_send;
    default: return true;
  }
}

bool read_envelope(Cursor& in, Envelope& envelope) {
  std::uint32_t count = 0;
  Seen seen;
  auto read = [&](std::size_t key) { return read_envelope_field(in, static_cast<EnvelopeKey>(key), envelope); };
  if (!in.map(count) || !read_entries(in, count, k_envelope_keys, seen, read)) return false;
  bool versioned = seen.has(static_cast<std::size_t>(EnvelopeKey::v)) && seen.has(static_cast<std::size_t>(EnvelopeKey::k));
  return versioned && kind_complete(envelope, seen);
}

}  // namespace

bool fast_decode(std::string_view bytes, Envelope& out) noexcept {
  try {
    Cursor in(bytes);
    return read_envelope(in, out) && in.at_end();  // trailing bytes: the full decoder's error
  } catch (const std::exception&) {
    return false;  // out of memory: the full decoder reports it
  }
}

}  // namespace asgi_bridge::protocol::detail
