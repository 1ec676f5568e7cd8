// The msgpack codec of docs/protocol.md.
//
// Every message part (envelope, scope, each event) is described once, by a
// describe_*() template that lists its fields in canonical order, one call per
// field naming the field's wire type. The same description drives three
// visitors: Writer in counting mode (a msgpack map states its size first),
// Writer in writing mode, and MapReader, which finds each field in a decoded
// map, checks it and stores it.
#include "asgi_bridge/protocol/codec.hpp"
#include "asgi_bridge/protocol/http_grammar.hpp"

#include <msgpack.hpp>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <variant>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "fast_decode.hpp"
#include "names.hpp"
#include "validate.hpp"

namespace asgi_bridge::protocol {
namespace {

// --- common -----------------------------------------------------------------

// Whether a reader insists on a field or falls back on the struct's default.
enum class Presence { defaulted, required };

// Whether an endpoint may have a nil port: a server's unix socket.
enum class NilPort { rejected, allowed };

template <typename T, typename... Ts>
inline constexpr bool is_one_of = (std::is_same_v<T, Ts> || ...);

// Checks a decoded value beyond its type; throw Malformed (via fail) to reject.
class Path;
using UintCheck = void (*)(std::uint64_t value, const Path& path);
using TextCheck = void (*)(std::string_view value, const Path& path);

// --- encoding -----------------------------------------------------------------

// Appends msgpack to a std::string: the subset of msgpack::packer's calls
// that Writer makes, each value in msgpack-c's shortest form (codec_test's
// golden vectors hold the bytes). msgpack-c's packer hands every type tag and
// key to its stream on its own (a scope is ≈ 150 writes, each an append with
// its length checks); here the string is grown ahead by k_room bytes and a
// tag is stored into that room. A body that does not fit is appended, so a
// large payload is not zero-filled first. finish() cuts the string to what
// was written.
class Packer {
 public:
  // Room for a typical scope whole (and within malloc's per-thread cache).
  static constexpr std::size_t k_room = 1000;

  Packer(std::string& out, std::size_t room) : out_(out) { grow(out.size(), room); }
  void finish() { out_.resize(static_cast<std::size_t>(at_ - out_.data())); }
  // The str or bin whose bytes start at `data` is left out (its header is
  // written): split() then says where in the output its bytes belong.
  void detach(const char* data) { detach_ = data; }
  std::size_t split() const { return split_; }

  void pack_nil() { tag(0xc0); }
  void pack(bool value) { tag(value ? 0xc3 : 0xc2); }
  void pack_uint64(std::uint64_t value) {
    if (value < 128) return tag(value);
    if (value < 256) return tag(0xcc, value, 1);
    if (value < 65536) return tag(0xcd, value, 2);
    if (value <= 0xffffffffu) return tag(0xce, value, 4);
    tag(0xcf, value, 8);
  }
  void pack_int64(std::int64_t value) {
    if (value >= 0) return pack_uint64(static_cast<std::uint64_t>(value));
    auto bits = static_cast<std::uint64_t>(value);
    if (value >= -32) return tag(bits);
    if (value >= -128) return tag(0xd0, bits, 1);
    if (value >= -32768) return tag(0xd1, bits, 2);
    if (value >= -2147483648LL) return tag(0xd2, bits, 4);
    tag(0xd3, bits, 8);
  }
  void pack_map(std::uint32_t size) { sized(size, 0x80, 16, 0xde); }
  void pack_array(std::uint32_t size) { sized(size, 0x90, 16, 0xdc); }
  void pack_str(std::uint32_t size) {
    if (size < 32) return tag(0xa0 | size);
    if (size < 256) return tag(0xd9, size, 1);
    sized(size, 0, 0, 0xda);
  }
  void pack_bin(std::uint32_t size) {
    if (size < 256) return tag(0xc4, size, 1);
    sized(size, 0, 0, 0xc5);
  }
  void pack_str_body(const char* data, std::uint32_t size) { body(data, size); }
  void pack_bin_body(const char* data, std::uint32_t size) { body(data, size); }

 private:
  // A one-byte value, or `marker` and `value`'s low `bytes` bytes big-endian.
  void tag(std::uint64_t value) {
    room(1);
    *at_++ = static_cast<char>(value);
  }
  void tag(unsigned char marker, std::uint64_t value, int bytes) {
    room(9);
    *at_++ = static_cast<char>(marker);
    for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) *at_++ = static_cast<char>(value >> shift);
  }
  // fix | size below `fix_limit` (a fixmap, fixarray), else the 16-bit form
  // `marker` or the 32-bit one after it.
  void sized(std::uint32_t size, unsigned char fix, std::uint32_t fix_limit, unsigned char marker) {
    if (size < fix_limit) return tag(fix | size);
    if (size < 65536) return tag(marker, size, 2);
    tag(marker + 1, size, 4);
  }
  void room(std::size_t size) {
    if (static_cast<std::size_t>(end_ - at_) < size) grow(used(), k_room);
  }
  void body(const char* data, std::size_t size) {
    if (data == detach_ && data != nullptr) {
      split_ = used();
      return;
    }
    if (size <= static_cast<std::size_t>(end_ - at_)) {
      std::memcpy(at_, data, size);
      at_ += size;
      return;
    }
    finish();
    out_.append(data, size);
    // The rest of the reserve, however little: asking for more here would
    // reallocate and copy the body we just appended (room() grows later if
    // the tags after it do not fit).
    grow(out_.size(), out_.capacity() - out_.size());
  }
  std::size_t used() const { return static_cast<std::size_t>(at_ - out_.data()); }
  void grow(std::size_t used, std::size_t room) {
    out_.resize(used + room);
    at_ = out_.data() + used;
    end_ = out_.data() + out_.size();
  }

  std::string& out_;
  char* at_ = nullptr;
  char* end_ = nullptr;
  const char* detach_ = nullptr;
  std::size_t split_ = std::string::npos;
};

[[noreturn, gnu::cold, gnu::noinline]] void throw_over_4_gib() {
  throw std::length_error("asgi_bridge::protocol::encode: a field is over 4 GiB");
}

// Inlined into every str, bin and array of an encode; the throw kept out of line.
inline std::uint32_t wire_length(std::size_t size) {
  if (size > std::numeric_limits<std::uint32_t>::max()) throw_over_4_gib();
  return static_cast<std::uint32_t>(size);
}

// Writes the fields a describe_*() function lists; with no packer it only
// counts them.
class Writer {
 public:
  explicit Writer(Packer* packer = nullptr) : packer_(packer) {}
  std::uint32_t count() const { return count_; }

  // Envelope fields.
  void version(std::string_view key, int version) {
    if (entry(key)) packer_->pack_int64(version);
  }
  void kind(std::string_view key, Kind kind) {
    if (entry(key)) str(kind_name(kind));
  }
  void id(std::string_view key, const std::string& id) {
    if (!id.empty() && entry(key)) str(id);
  }
  template <typename T>
  void maybe_uint(std::string_view key, const std::optional<T>& value) {
    if (value && entry(key)) packer_->pack_uint64(*value);
  }
  void nonzero_uint(std::string_view key, std::uint64_t value) {
    if (value != 0 && entry(key)) packer_->pack_uint64(value);
  }
  void maybe_text(std::string_view key, const std::optional<Text>& value) {
    if (value && entry(key)) str(*value);
  }
  void maybe_scope(std::string_view key, const std::optional<Scope>& scope);
  void maybe_event(std::string_view key, const std::optional<Event>& event);

  // Scope and event fields.
  void text(std::string_view key, std::string_view value, TextCheck = nullptr, Presence = Presence::defaulted) {
    if (entry(key)) str(value);
  }
  void required_text(std::string_view key, std::string_view value) { text(key, value); }
  void nullable_text(std::string_view key, const std::optional<Text>& value) {
    if (!entry(key)) return;
    if (value) {
      str(*value);
    } else {
      packer_->pack_nil();
    }
  }
  void bytes(std::string_view key, const Bytes& value) {
    if (entry(key)) bin(value);
  }
  void flag(std::string_view key, bool value) {
    if (entry(key)) packer_->pack(value);
  }
  // A start's first body: both keys with a body, neither without.
  void start_body(const std::optional<Bytes>& body, bool more_body) {
    if (!body) return;
    bytes("body", *body);
    flag("more_body", more_body);
  }
  void integer(std::string_view key, int value, UintCheck, Presence = Presence::defaulted) {
    if (entry(key)) packer_->pack_int64(value);
  }
  void headers(std::string_view key, const Headers& headers) {
    if (!entry(key)) return;
    packer_->pack_array(wire_length(headers.size()));
    for (const auto& header : headers) {
      packer_->pack_array(2);
      bin(header.name);
      bin(header.value);
    }
  }
  void message(const WebSocketMessage& message) {
    if (!entry(message.text ? "text" : "bytes")) return;
    if (message.text) {
      str(message.data);
    } else {
      bin(message.data);
    }
  }
  void scope_type(std::string_view key, ScopeType type) {
    if (entry(key)) str(type == ScopeType::http ? "http" : "websocket");
  }
  void asgi(std::string_view key, const Text& version, const Text& spec_version) {
    if (!entry(key)) return;
    packer_->pack_map(2);
    str("version");
    str(version);
    str("spec_version");
    str(spec_version);
  }
  void endpoint(std::string_view key, const std::optional<Endpoint>& endpoint, NilPort) {
    if (!entry(key)) return;
    if (!endpoint) {
      packer_->pack_nil();
      return;
    }
    packer_->pack_array(2);
    str(endpoint->host);
    if (endpoint->port) {
      packer_->pack_int64(*endpoint->port);
    } else {
      packer_->pack_nil();
    }
  }
  void texts(std::string_view key, const std::vector<Text>& values) {
    if (!entry(key)) return;
    packer_->pack_array(wire_length(values.size()));
    for (const auto& value : values) str(value);
  }
  void extensions(std::string_view key, const std::vector<Text>& names) {
    if (!entry(key)) return;
    packer_->pack_map(wire_length(names.size()));
    for (const auto& name : names) {
      str(name);
      packer_->pack_map(0);
    }
  }

 private:
  // Counts the field; true when its value is to be written after its key.
  bool entry(std::string_view key) {
    ++count_;
    if (packer_ == nullptr) return false;
    str(key);
    return true;
  }
  void str(std::string_view value) {
    auto size = wire_length(value.size());
    packer_->pack_str(size);
    packer_->pack_str_body(value.data(), size);
  }
  void bin(std::string_view value) {
    auto size = wire_length(value.size());
    packer_->pack_bin(size);
    packer_->pack_bin_body(value.data(), size);
  }

  Packer* packer_;
  std::uint32_t count_ = 0;
};

// Writes `value` as a map of the fields describe(visitor, value) lists,
// preceded by `extra` entries the caller writes first with `before`.
template <typename T, typename Describe, typename Before>
void write_map(Packer& packer, const T& value, Describe describe, std::uint32_t extra,
               Before before) {
  Writer counter;
  describe(counter, value);
  packer.pack_map(counter.count() + extra);
  Writer writer(&packer);
  before(writer);
  describe(writer, value);
}
template <typename T, typename Describe>
void write_map(Packer& packer, const T& value, Describe describe) {
  write_map(packer, value, describe, 0, [](Writer&) {});
}

// --- decoding: failures and paths -----------------------------------------------

// Where a value sits in the message, for error messages: "scope.headers[2]".
// Built only when something fails.
class Path {
 public:
  Path() = default;  // the whole message
  Path(const Path& parent, std::string_view key) : parent_(&parent), key_(key) {}
  Path(const Path& parent, std::size_t index) : parent_(&parent), index_(index) {}

  std::string str() const {
    if (parent_ == nullptr) return {};
    std::string out = parent_->str();
    if (index_ != k_no_index) return out + '[' + std::to_string(index_) + ']';
    if (!out.empty()) out += '.';
    return out.append(key_);
  }

 private:
  static constexpr std::size_t k_no_index = static_cast<std::size_t>(-1);
  const Path* parent_ = nullptr;
  std::string_view key_;
  std::size_t index_ = k_no_index;
};

// Thrown inside the decoder, turned into a DecodeError by decode().
struct Malformed {
  std::string message;
  bool unknown_kind = false;
};

[[noreturn]] void fail(const Path& path, std::string_view what, bool unknown_kind = false) {
  std::string where = path.str();
  std::string message = where.empty() ? std::string(what) : where + ": " + std::string(what);
  throw Malformed{std::move(message), unknown_kind};
}

// A value for an error message: quoted, cut at 40 bytes, control and
// non-ASCII bytes escaped.
std::string quoted(std::string_view value) {
  constexpr std::size_t k_max = 40;
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : value.substr(0, k_max)) {
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += k_hex[c >> 4];
      out += k_hex[c & 0xF];
    }
  }
  out += value.size() > k_max ? "\"..." : "\"";
  return out;
}

std::string_view type_label(const msgpack::object& object) {
  switch (object.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER: return "uint";
    case msgpack::type::NEGATIVE_INTEGER: return "negative int";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "unknown type";
}

// The type of a value, with the length of an array: "array of 3".
std::string shape_of(const msgpack::object& object) {
  std::string label(type_label(object));
  if (object.type == msgpack::type::ARRAY) label += " of " + std::to_string(object.via.array.size);
  return label;
}

void expect_type(const msgpack::object& object, msgpack::type::object_type type,
                 std::string_view expected, const Path& path) {
  if (object.type != type) {
    fail(path, "expected " + std::string(expected) + ", got " + std::string(type_label(object)));
  }
}

// --- decoding: one reader per msgpack type --------------------------------------

bool is_nil(const msgpack::object& object) { return object.type == msgpack::type::NIL; }

std::uint64_t read_uint(const msgpack::object& object, const Path& path) {
  expect_type(object, msgpack::type::POSITIVE_INTEGER, "uint", path);
  return object.via.u64;
}

std::uint64_t read_uint_in(const msgpack::object& object, std::uint64_t low, std::uint64_t high,
                           const Path& path) {
  auto value = read_uint(object, path);
  if (value < low || value > high) {
    fail(path, std::to_string(value) + " out of range " + std::to_string(low) + ".." +
                   std::to_string(high));
  }
  return value;
}

bool read_bool(const msgpack::object& object, const Path& path) {
  expect_type(object, msgpack::type::BOOLEAN, "bool", path);
  return object.via.boolean;
}

// The views point into the decoded buffer (str and bin are referenced, not copied).
std::string_view read_bin(const msgpack::object& object, const Path& path) {
  expect_type(object, msgpack::type::BIN, "bin", path);
  return {object.via.bin.ptr, object.via.bin.size};
}

std::string_view read_str(const msgpack::object& object, const Path& path) {
  expect_type(object, msgpack::type::STR, "str", path);
  std::string_view text(object.via.str.ptr, object.via.str.size);
  if (!detail::is_valid_utf8(text)) fail(path, "invalid UTF-8");
  return text;
}

const msgpack::object_array& read_array(const msgpack::object& object, const Path& path) {
  expect_type(object, msgpack::type::ARRAY, "array", path);
  return object.via.array;
}

// A map whose keys are all str.
const msgpack::object_map& read_map(const msgpack::object& object, const Path& path) {
  expect_type(object, msgpack::type::MAP, "map", path);
  const auto& map = object.via.map;
  for (std::uint32_t i = 0; i < map.size; ++i) {
    if (map.ptr[i].key.type != msgpack::type::STR) {
      fail(path, "a key is " + std::string(type_label(map.ptr[i].key)) + ", not str");
    }
  }
  return map;
}

// --- decoding: compound values ---------------------------------------------------

Header read_header(const msgpack::object& object, const Path& path) {
  if (object.type != msgpack::type::ARRAY || object.via.array.size != 2) {
    fail(path, "expected a [name, value] array of two bin, got " + shape_of(object));
  }
  std::string_view name = read_bin(object.via.array.ptr[0], Path(path, "name"));
  std::string_view value = read_bin(object.via.array.ptr[1], Path(path, "value"));
  if (name.empty()) fail(path, "empty header name");
  if (!http::is_token(name)) fail(path, "header name " + quoted(name) + " is not a token");
  if (!http::is_safe_field_value(value)) {
    fail(path, "header " + quoted(name) + " value contains CR, LF or NUL");
  }
  return Header{Bytes(name), Bytes(value)};
}

Endpoint read_endpoint(const msgpack::object& object, NilPort nil_port, const Path& path) {
  if (object.type != msgpack::type::ARRAY || object.via.array.size != 2) {
    fail(path, "expected nil or a [host, port] array, got " + shape_of(object));
  }
  const auto* items = object.via.array.ptr;
  Endpoint endpoint{Text(read_str(items[0], Path(path, "host"))), std::nullopt};
  Path port(path, "port");
  if (!is_nil(items[1])) {
    endpoint.port = static_cast<int>(read_uint_in(items[1], 0, 65535, port));
  } else if (nil_port == NilPort::rejected) {
    fail(port, "nil (only a server's unix socket has no port)");
  }
  return endpoint;
}

// The fields of one decoded map, read as a describe_*() function lists them.
// A missing field keeps the value the struct was constructed with (its
// default), unless the field is required.
class MapReader {
 public:
  MapReader(const msgpack::object& object, const Path& path)
      : map_(read_map(object, path)), path_(path) {}

  // The value of `key`, or nullptr; the last one wins if a key repeats.
  const msgpack::object* find(std::string_view key) const {
    for (std::uint32_t i = map_.size; i-- > 0;) {
      const auto& entry = map_.ptr[i];
      if (std::string_view(entry.key.via.str.ptr, entry.key.via.str.size) == key) {
        return &entry.val;
      }
    }
    return nullptr;
  }
  const Path& path() const { return path_; }

  // Envelope fields.
  void version(std::string_view key, int& version) {
    if (const auto* value = lookup(key, Presence::required)) {
      Path path(path_, key);
      auto number = read_uint(*value, path);
      if (number != static_cast<std::uint64_t>(k_protocol_version)) {
        fail(path, std::to_string(number) + " is not protocol version " +
                       std::to_string(k_protocol_version));
      }
      version = k_protocol_version;
    }
  }
  void kind(std::string_view key, Kind& kind) {
    if (const auto* value = lookup(key, Presence::required)) {
      Path path(path_, key);
      auto name = read_str(*value, path);
      auto known = kind_from_name(name);
      if (!known) fail(path, "unknown kind " + quoted(name), /*unknown_kind=*/true);
      kind = *known;
    }
  }
  void id(std::string_view key, std::string& id) {
    if (const auto* value = lookup(key)) {
      Path path(path_, key);
      auto text = read_str(*value, path);
      if (text.empty()) fail(path, "empty id");
      id = text;
    }
  }
  template <typename T>
  void maybe_uint(std::string_view key, std::optional<T>& field) {
    if (const auto* value = lookup(key)) {
      field = static_cast<T>(
          read_uint_in(*value, 0, std::numeric_limits<T>::max(), Path(path_, key)));
    }
  }
  void maybe_text(std::string_view key, std::optional<Text>& field) {
    if (const auto* value = lookup(key)) field = Text(read_str(*value, Path(path_, key)));
  }
  void nonzero_uint(std::string_view key, std::uint64_t& field) {
    if (const auto* value = lookup(key)) field = read_uint(*value, Path(path_, key));
  }
  void maybe_scope(std::string_view key, std::optional<Scope>& scope);
  void maybe_event(std::string_view key, std::optional<Event>& event);

  // Scope and event fields.
  void text(std::string_view key, Text& field, TextCheck check = nullptr,
            Presence presence = Presence::defaulted) {
    if (const auto* value = lookup(key, presence)) {
      Path path(path_, key);
      auto text = read_str(*value, path);
      if (check != nullptr) check(text, path);
      field = text;
    }
  }
  void required_text(std::string_view key, Text& field) {
    text(key, field, nullptr, Presence::required);
  }
  void nullable_text(std::string_view key, std::optional<Text>& field) {
    if (const auto* value = lookup(key); value != nullptr && !is_nil(*value)) {
      field = Text(read_str(*value, Path(path_, key)));
    }
  }
  void bytes(std::string_view key, Bytes& field) {
    if (const auto* value = lookup(key)) field = read_bin(*value, Path(path_, key));
  }
  void flag(std::string_view key, bool& field) {
    if (const auto* value = lookup(key)) field = read_bool(*value, Path(path_, key));
  }
  // more_body is checked even without a body, but then dropped.
  void start_body(std::optional<Bytes>& body, bool& more_body) {
    if (const auto* value = lookup("body")) body = Bytes(read_bin(*value, Path(path_, "body")));
    flag("more_body", more_body);
    if (!body) more_body = false;
  }
  // Integer fields are all small non-negative ints (status, codes).
  void integer(std::string_view key, int& field, UintCheck check,
               Presence presence = Presence::defaulted) {
    if (const auto* value = lookup(key, presence)) {
      Path path(path_, key);
      auto number = read_uint(*value, path);
      check(number, path);
      field = static_cast<int>(number);
    }
  }
  void headers(std::string_view key, Headers& field) {
    const auto* value = lookup(key);
    if (value == nullptr) return;
    Path path(path_, key);
    const auto& items = read_array(*value, path);
    field.clear();
    field.reserve(items.size);
    for (std::uint32_t i = 0; i < items.size; ++i) {
      field.push_back(read_header(items.ptr[i], Path(path, std::size_t{i})));
    }
  }
  // websocket.receive/send: exactly one of bytes (bin) and text (str); the
  // other may be present as nil.
  void message(WebSocketMessage& message) {
    const auto* bytes = find("bytes");
    const auto* text = find("text");
    if (bytes != nullptr && is_nil(*bytes)) bytes = nullptr;
    if (text != nullptr && is_nil(*text)) text = nullptr;
    if (bytes != nullptr && text != nullptr) fail(path_, "both bytes and text");
    if (bytes == nullptr && text == nullptr) fail(path_, "neither bytes nor text");
    message.text = text != nullptr;
    message.data = text != nullptr ? read_str(*text, Path(path_, "text"))
                                   : read_bin(*bytes, Path(path_, "bytes"));
  }
  void scope_type(std::string_view key, ScopeType& type) {
    if (const auto* value = lookup(key, Presence::required)) {
      Path path(path_, key);
      auto name = read_str(*value, path);
      if (name == "http") {
        type = ScopeType::http;
      } else if (name == "websocket") {
        type = ScopeType::websocket;
      } else {
        fail(path, quoted(name) + " is not http or websocket");
      }
    }
  }
  void asgi(std::string_view key, Text& version, Text& spec_version) {
    if (const auto* value = lookup(key)) {
      Path path(path_, key);
      MapReader asgi(*value, path);
      asgi.text("version", version);
      asgi.text("spec_version", spec_version);
    }
  }
  void endpoint(std::string_view key, std::optional<Endpoint>& field, NilPort nil_port) {
    if (const auto* value = lookup(key)) {
      if (is_nil(*value)) {
        field.reset();
      } else {
        field = read_endpoint(*value, nil_port, Path(path_, key));
      }
    }
  }
  void texts(std::string_view key, std::vector<Text>& field) {
    const auto* value = lookup(key);
    if (value == nullptr) return;
    Path path(path_, key);
    const auto& items = read_array(*value, path);
    field.clear();
    field.reserve(items.size);
    for (std::uint32_t i = 0; i < items.size; ++i) {
      field.emplace_back(read_str(items.ptr[i], Path(path, std::size_t{i})));
    }
  }
  // A map of extension name -> map (whose contents this version ignores).
  void extensions(std::string_view key, std::vector<Text>& field) {
    const auto* value = lookup(key);
    if (value == nullptr) return;
    Path path(path_, key);
    const auto& map = read_map(*value, path);
    field.clear();
    field.reserve(map.size);
    for (std::uint32_t i = 0; i < map.size; ++i) {
      auto name = read_str(map.ptr[i].key, path);
      read_map(map.ptr[i].val, Path(path, name));
      field.emplace_back(name);
    }
  }

 private:
  // The value of `key`; nullptr when it is missing and may be.
  const msgpack::object* lookup(std::string_view key,
                                Presence presence = Presence::defaulted) const {
    const auto* value = find(key);
    if (value == nullptr && presence == Presence::required) {
      fail(Path(path_, key), "missing");
    }
    return value;
  }

  const msgpack::object_map& map_;
  const Path& path_;
};

// --- value checks -----------------------------------------------------------------

void check_status(std::uint64_t status, const Path& path) {
  if (status < 100 || status > 599) {
    fail(path, std::to_string(status) + " out of range 100..599");
  }
}

void check_close_code(std::uint64_t code, const Path& path) {
  if (!detail::is_valid_close_code(code)) {
    fail(path, std::to_string(code) + " is not a close code an application may send "
                                      "(1000-1003, 1007-1014, 3000-4999)");
  }
}

void check_disconnect_code(std::uint64_t code, const Path& path) {
  if (code < 1000 || code > 4999) fail(path, std::to_string(code) + " out of range 1000..4999");
}

void check_close_reason(std::string_view reason, const Path& path) {
  constexpr std::size_t k_max_reason = 123;  // a close frame's payload is 125 bytes, 2 for the code
  if (reason.size() > k_max_reason) {
    fail(path, std::to_string(reason.size()) + " bytes, over the 123-byte limit");
  }
}

void check_channel(std::string_view channel, const Path& path) {
  if (!is_valid_channel(channel)) {
    fail(path, quoted(channel) + " is not a channel name (1-128 bytes of letters, digits, - _ . : / @)");
  }
}

// --- the descriptions -------------------------------------------------------------
// fast_decode.cpp reads the same fields with the same checks, straight from the
// bytes: keep the two in step (its parity tests catch a difference).

// The fields of each event after "type", in canonical order (docs/protocol.md §4.2).
template <typename V, typename E>
void describe_event(V& v, E& e) {
  using T = std::remove_const_t<E>;
  if constexpr (is_one_of<T, HttpRequest, HttpResponseBody, WebSocketHttpResponseBody>) {
    v.bytes("body", e.body);
    v.flag("more_body", e.more_body);
  } else if constexpr (std::is_same_v<T, HttpResponseStart>) {
    v.integer("status", e.status, check_status, Presence::required);
    v.headers("headers", e.headers);
    v.flag("trailers", e.trailers);
    v.start_body(e.body, e.more_body);
  } else if constexpr (std::is_same_v<T, HttpResponseTrailers>) {
    v.headers("headers", e.headers);
    v.flag("more_trailers", e.more_trailers);
  } else if constexpr (is_one_of<T, HttpDisconnect, WebSocketConnect>) {
    // no fields
  } else if constexpr (std::is_same_v<T, WebSocketAccept>) {
    v.nullable_text("subprotocol", e.subprotocol);
    v.headers("headers", e.headers);
  } else if constexpr (is_one_of<T, WebSocketReceive, WebSocketSend>) {
    v.message(e);
  } else if constexpr (std::is_same_v<T, WebSocketClose>) {
    v.integer("code", e.code, check_close_code);
    v.text("reason", e.reason, check_close_reason);
  } else if constexpr (std::is_same_v<T, WebSocketDisconnect>) {
    v.integer("code", e.code, check_disconnect_code);
    v.text("reason", e.reason);
  } else if constexpr (std::is_same_v<T, WebSocketHttpResponseStart>) {
    v.integer("status", e.status, check_status, Presence::required);
    v.headers("headers", e.headers);
  } else if constexpr (is_one_of<T, BroadcastSubscribe, BroadcastUnsubscribe>) {
    v.text("channel", e.channel, check_channel, Presence::required);
  } else {
    static_assert(sizeof(T) == 0, "describe_event: describe the fields of the new event");
  }
}

// docs/protocol.md §4.1. `method` exists for http only, `subprotocols` for
// websocket only; a reader has read `type` before it looks at them. Two
// defaults depend on other fields: see read_scope().
template <typename V, typename S>
void describe_scope(V& v, S& s) {
  v.scope_type("type", s.type);
  v.asgi("asgi", s.asgi_version, s.spec_version);
  v.text("http_version", s.http_version);
  if (s.type == ScopeType::http) v.required_text("method", s.method);
  v.text("scheme", s.scheme);
  v.required_text("path", s.path);
  v.bytes("raw_path", s.raw_path);
  v.bytes("query_string", s.query_string);
  v.text("root_path", s.root_path);
  v.headers("headers", s.headers);
  v.endpoint("client", s.client, NilPort::rejected);
  v.endpoint("server", s.server, NilPort::allowed);
  if (s.type == ScopeType::websocket) v.texts("subprotocols", s.subprotocols);
  v.extensions("extensions", s.extensions);
}

// docs/protocol.md §2.1.
template <typename V, typename E>
void describe_envelope(V& v, E& e) {
  v.version("v", e.version);
  v.kind("k", e.kind);
  v.id("g", e.gateway_id);
  v.id("w", e.worker_id);
  v.maybe_uint("c", e.conn_id);
  v.maybe_uint("s", e.seq);
  v.maybe_uint("capacity", e.capacity);
  v.maybe_uint("active", e.active);
  v.maybe_uint("ws_capacity", e.ws_capacity);
  v.maybe_uint("window", e.window);
  v.nonzero_uint("features", e.features);
  v.maybe_uint("events", e.events);
  v.maybe_uint("bytes", e.bytes);
  v.maybe_text("message", e.message);
  v.maybe_text("group", e.group);
  v.maybe_text("channel", e.channel);
  v.maybe_scope("scope", e.scope);
  v.maybe_event("event", e.event);
}

// --- nested maps ----------------------------------------------------------------------

void write_event(Packer& packer, const Event& event) {
  std::visit(
      [&packer](const auto& alternative) {
        using T = std::decay_t<decltype(alternative)>;
        auto describe = [](auto& v, const T& e) { describe_event(v, e); };
        write_map(packer, alternative, describe, 1,
                  [](Writer& writer) { writer.text("type", detail::type_name<T>); });
      },
      event);
}

void Writer::maybe_scope(std::string_view key, const std::optional<Scope>& scope) {
  if (!scope || !entry(key)) return;
  write_map(*packer_, *scope, [](auto& v, const Scope& s) { describe_scope(v, s); });
}

void Writer::maybe_event(std::string_view key, const std::optional<Event>& event) {
  if (event && entry(key)) write_event(*packer_, *event);
}

template <std::size_t I>
Event read_alternative(MapReader& reader) {
  std::variant_alternative_t<I, Event> event;
  describe_event(reader, event);
  return Event(std::in_place_index<I>, std::move(event));
}

// The reader of each alternative of Event, indexed like the variant.
using AlternativeReader = Event (*)(MapReader&);
template <std::size_t... I>
constexpr auto make_alternative_readers(std::index_sequence<I...>) {
  return std::array<AlternativeReader, sizeof...(I)>{&read_alternative<I>...};
}
constexpr auto k_alternative_readers =
    make_alternative_readers(std::make_index_sequence<detail::k_event_count>{});

Event read_event(const msgpack::object& object, const Path& path) {
  MapReader reader(object, path);
  Path type_path(path, "type");
  const auto* type_value = reader.find("type");
  if (type_value == nullptr) fail(type_path, "missing");
  auto type = read_str(*type_value, type_path);
  auto index = detail::event_index(type);
  if (!index) fail(type_path, "unknown event type " + quoted(type));
  return k_alternative_readers[*index](reader);
}

Scope read_scope(const msgpack::object& object, const Path& path) {
  MapReader reader(object, path);
  Scope scope;
  describe_scope(reader, scope);
  if (reader.find("scheme") == nullptr && scope.type == ScopeType::websocket) scope.scheme = "ws";
  if (reader.find("raw_path") == nullptr) scope.raw_path = scope.path;
  return scope;
}

void MapReader::maybe_scope(std::string_view key, std::optional<Scope>& scope) {
  if (const auto* value = lookup(key)) scope = read_scope(*value, Path(path_, key));
}

void MapReader::maybe_event(std::string_view key, std::optional<Event>& event) {
  if (const auto* value = lookup(key)) event = read_event(*value, Path(path_, key));
}

// --- the envelope ----------------------------------------------------------------------

// A group message names its origin, its place in the origin's sequence, the
// group, and carries one websocket.send.
void check_group(const Envelope& envelope, const Path& root) {
  if (envelope.worker_id.empty()) fail(Path(root, "w"), "missing on a group message");
  if (!envelope.seq) fail(Path(root, "s"), "missing on a group message");
  if (!envelope.group || envelope.group->empty()) fail(Path(root, "group"), "missing on a group message");
  if (!envelope.event || !std::holds_alternative<WebSocketSend>(*envelope.event)) {
    fail(Path(root, "event"), "a group message carries one websocket.send");
  }
}

// A publish names a valid channel and carries one websocket.send.
void check_publish(const Envelope& envelope, const Path& root) {
  if (!envelope.channel) fail(Path(root, "channel"), "missing on a publish message");
  check_channel(*envelope.channel, Path(root, "channel"));
  if (!envelope.event || !std::holds_alternative<WebSocketSend>(*envelope.event)) {
    fail(Path(root, "event"), "a publish message carries one websocket.send");
  }
}

void read_envelope(const msgpack::object& object, Envelope& envelope) {
  Path root;
  if (object.type != msgpack::type::MAP) {
    fail(root, "expected a map, got " + std::string(type_label(object)));
  }
  MapReader reader(object, root);
  describe_envelope(reader, envelope);
  if (envelope.kind == Kind::event) {
    if (!envelope.conn_id) fail(Path(root, "c"), "missing on an event");
    if (!envelope.seq) fail(Path(root, "s"), "missing on an event");
    if (!envelope.event) fail(Path(root, "event"), "missing on an event");
  }
  if (envelope.kind == Kind::group) check_group(envelope, root);
  if (envelope.kind == Kind::publish) check_publish(envelope, root);
}

// msgpack-c allocates an array's or map's elements when it reads the header,
// before it knows whether they are there: bound the counts so a few bytes
// cannot claim gigabytes, and the nesting so claims cannot pile up.
constexpr std::size_t k_max_depth = 16;
constexpr std::size_t k_max_elements = 65536;

msgpack::unpack_limit limits_for(std::size_t size) {
  auto elements = std::min(size, k_max_elements);  // every element takes a byte at least
  return msgpack::unpack_limit(/*array=*/elements, /*map=*/elements / 2, /*str=*/size,
                               /*bin=*/size, /*ext=*/size, /*depth=*/k_max_depth);
}

// Let str and bin objects point into the caller's buffer instead of copying.
bool reference_all(msgpack::type::object_type, std::size_t, void*) { return true; }

// The parsed object tree lives only until read_envelope() has copied what it
// needs, so every decode on a thread reuses one zone: a fresh one per message
// was two allocations, one of them 8 KiB (past malloc's fast caches), on the
// path of every event a gateway or worker receives.
class ScratchZone {
 public:
  ScratchZone() : zone_(storage()) {}
  ~ScratchZone() { zone_.clear(); }
  ScratchZone(const ScratchZone&) = delete;
  ScratchZone& operator=(const ScratchZone&) = delete;
  msgpack::zone& get() { return zone_; }

 private:
  static msgpack::zone& storage() {
    thread_local msgpack::zone zone;
    return zone;
  }
  msgpack::zone& zone_;
};

}  // namespace

namespace {

// For sizing the output once: grown by doubling from a small guess, a 64 KiB
// body would be copied seven times over.
std::size_t payload_size(const Envelope& envelope) {
  return envelope.event ? protocol::payload_size(*envelope.event) : 0;
}

}  // namespace

namespace {

// The bytes of the payload left out of an encoding (Packer::detach), and
// where they belong in it.
struct Detached {
  const char* data = nullptr;  // none
  std::size_t size = 0;
  std::size_t split = std::string::npos;
};

std::optional<std::string> encode_event_envelope(const Envelope& envelope, Detached& detached);

std::string full_encode(const Envelope& envelope, Detached& detached) {
  std::string out;
  // The room for the envelope and its scope, the payload (appended into the
  // reserve, unless detached), and the keys after the payload.
  out.reserve(2 * Packer::k_room + payload_size(envelope) - detached.size);
  Packer packer(out, Packer::k_room);
  packer.detach(detached.data);
  write_map(packer, envelope, [](auto& v, const Envelope& e) { describe_envelope(v, e); });
  packer.finish();
  detached.split = packer.split();
  return out;
}

std::string encode(const Envelope& envelope, Detached& detached) {
  if (auto fast = encode_event_envelope(envelope, detached)) return std::move(*fast);
  return full_encode(envelope, detached);
}

}  // namespace

std::string encode(const Envelope& envelope) {
  Detached none;
  return encode(envelope, none);
}

std::string detail::full_encode(const Envelope& envelope) {
  Detached none;
  return full_encode(envelope, none);
}

SplitEncoding encode_split(Envelope&& envelope) {
  Bytes* payload = envelope.event ? payload_of(*envelope.event) : nullptr;
  if (payload == nullptr || payload->size() < k_split_min) return {encode(envelope), {}, {}};
  Detached detached{payload->data(), payload->size()};
  auto bytes = encode(envelope, detached);
  assert(detached.split <= bytes.size());
  SplitEncoding out;
  out.tail.assign(bytes, detached.split);
  bytes.resize(detached.split);
  out.head = std::move(bytes);
  out.body = std::move(*payload);
  return out;
}

namespace {

// encode_websocket_receive()'s output, written byte by byte into a string
// sized once: msgpack-c's packer appends every header and key on its own.
class ReceiveWriter {
 public:
  explicit ReceiveWriter(char* at) : at_(at) {}
  char* end() const { return at_; }

  // A msgpack str or bin header for `size` bytes, in its shortest form.
  static std::size_t header_size(std::size_t size, bool bin) {
    if (size < 32 && !bin) return 1;
    return size < 256 ? 2 : size < 65536 ? 3 : 5;
  }
  void raw(std::string_view bytes) {
    std::memcpy(at_, bytes.data(), bytes.size());
    at_ += bytes.size();
  }
  void str(std::string_view value) {
    header(value.size(), 0xa0, 0xd9);
    raw(value);
  }
  void bin(std::string_view value) {
    header(value.size(), 0, 0xc4);
    raw(value);
  }
  // The header of a str (or bin) of `size` bytes that the caller appends.
  void payload_header(std::size_t size, bool bin) { bin ? header(size, 0, 0xc4) : header(size, 0xa0, 0xd9); }
  // As msgpack-c's pack_uint64: the shortest of positive fixint, uint 8/16/32/64.
  void uint(std::uint64_t value) {
    if (value < 128) return byte(value);
    if (value < 256) return big_endian(0xcc, value, 1);
    if (value < 65536) return big_endian(0xcd, value, 2);
    if (value <= 0xffffffffu) return big_endian(0xce, value, 4);
    big_endian(0xcf, value, 8);
  }
  static std::size_t uint_size(std::uint64_t value) {
    return value < 128 ? 1 : value < 256 ? 2 : value < 65536 ? 3 : value <= 0xffffffffu ? 5 : 9;
  }

 private:
  void byte(std::uint64_t value) { *at_++ = static_cast<char>(value); }
  void big_endian(unsigned char marker, std::uint64_t value, int bytes) {
    byte(marker);
    for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) byte(value >> shift);
  }
  // fix: fixstr's marker (0: bin has none); first: the 8-bit form's marker, then 16 and 32 follow it.
  void header(std::size_t size, unsigned char fix, unsigned char first) {
    if (fix != 0 && size < 32) return byte(fix | size);
    if (size < 256) return big_endian(first, size, 1);
    if (size < 65536) return big_endian(first + 1, size, 2);
    big_endian(first + 2, wire_length(size), 4);
  }

  char* at_;
};

// An event envelope with nothing but its ids and numbers (every event an
// app sends, most a gateway sends) in one pass: the head written byte by
// byte into a string sized once, a body or WebSocket message likewise, any
// other event by write_event(). The same bytes as full_encode() (codec_test).
std::optional<std::string> encode_event_envelope(const Envelope& e, Detached& detached) {
  if (e.kind != Kind::event || e.version != k_protocol_version || !e.conn_id || !e.seq || !e.event || e.capacity ||
      e.active || e.ws_capacity || e.window || e.features || e.events || e.bytes || e.message || e.group || e.channel || e.scope) {
    return std::nullopt;
  }
  using W = ReceiveWriter;
  auto id_size = [](const std::string& id) { return id.empty() ? 0 : 2 + W::header_size(id.size(), false) + id.size(); };
  constexpr std::string_view version_kind = "\xa1v\x01\xa1k\xa5" "event";
  constexpr std::string_view event_key = "\xa5" "event";
  constexpr std::string_view send_head = "\x82\xa4type\xae" "websocket.send";
  constexpr std::string_view body_head = "\x83\xa4type\xb2" "http.response.body" "\xa4" "body";
  static_assert(detail::type_name<WebSocketSend> == "websocket.send");
  static_assert(detail::type_name<HttpResponseBody> == "http.response.body");
  const auto* send = std::get_if<WebSocketSend>(&*e.event);
  const auto* body = std::get_if<HttpResponseBody>(&*e.event);
  std::string_view data_key = send && send->text ? "\xa4text" : "\xa5" "bytes";
  constexpr std::string_view more_body = "\xa9" "more_body";
  std::string_view payload = send ? std::string_view(send->data) : body ? std::string_view(body->body) : "";
  // The head is sized exactly and written in place; the payload is appended
  // after it (no zero fill of a 60 KiB body before it is copied in).
  std::size_t head = 1 + version_kind.size() + id_size(e.gateway_id) + id_size(e.worker_id) + 2 +
                     W::uint_size(*e.conn_id) + 2 + W::uint_size(*e.seq) + event_key.size();
  if (send) {
    head += send_head.size() + data_key.size() + W::header_size(payload.size(), !send->text);
  } else if (body) {
    head += body_head.size() + W::header_size(payload.size(), true);
  }
  std::string out;
  // Any other event goes through a Packer, which appends a body (a start's
  // first body, a request's) past its room and then wants k_room more.
  std::size_t other_body = send || body ? 0 : protocol::payload_size(*e.event) - detached.size;
  std::size_t tail = other_body == 0 ? 256 : 256 + other_body + Packer::k_room;
  bool detach = detached.data != nullptr && payload.data() == detached.data;
  out.reserve(head + (detach ? 0 : payload.size()) + (body ? more_body.size() + 1 : send ? 0 : tail));
  out.resize(head);
  out[0] = static_cast<char>(0x80 | (5 + !e.gateway_id.empty() + !e.worker_id.empty()));  // fixmap
  W writer(out.data() + 1);
  writer.raw(version_kind);
  for (auto [key, id] : {std::pair{"\xa1g", &e.gateway_id}, std::pair{"\xa1w", &e.worker_id}}) {
    if (id->empty()) continue;
    writer.raw(key);
    writer.str(*id);
  }
  writer.raw("\xa1" "c");
  writer.uint(*e.conn_id);
  writer.raw("\xa1" "s");
  writer.uint(*e.seq);
  writer.raw(event_key);
  if (send) {
    writer.raw(send_head);
    writer.raw(data_key);
    writer.payload_header(payload.size(), !send->text);
  } else if (body) {
    writer.raw(body_head);
    writer.payload_header(payload.size(), true);
  }
  assert(writer.end() == out.data() + out.size());
  if (detach) {
    detached.split = out.size();
  } else {
    out.append(payload);
  }
  if (body) {
    out.append(more_body);
    out.push_back(body->more_body ? '\xc3' : '\xc2');
  } else if (!send) {
    Packer packer(out, 256);
    packer.detach(detached.data);
    write_event(packer, *e.event);
    packer.finish();
    if (packer.split() != std::string::npos) detached.split = packer.split();
  }
  return out;
}

}  // namespace

std::string encode_websocket_receive(const std::string& gateway_id, std::uint64_t conn_id, std::uint64_t seq,
                                     bool text, std::string_view data) {
  // The six fields of describe_envelope() an event from the gateway has, in
  // its order; the event's two as write_event() writes them.
  constexpr std::string_view version_kind = "\x86\xa1v\x01\xa1k\xa5" "event" "\xa1g";
  constexpr std::string_view event_type = "\xa5" "event" "\x82\xa4type\xb1" "websocket.receive";
  static_assert(detail::type_name<WebSocketReceive> == "websocket.receive");
  std::string_view data_key = text ? "\xa4text" : "\xa5" "bytes";
  std::string out;
  out.resize(version_kind.size() + ReceiveWriter::header_size(gateway_id.size(), false) + gateway_id.size() + 2 +
             ReceiveWriter::uint_size(conn_id) + 2 + ReceiveWriter::uint_size(seq) + event_type.size() +
             data_key.size() + ReceiveWriter::header_size(data.size(), !text) + data.size());
  ReceiveWriter writer(out.data());
  writer.raw(version_kind);
  writer.str(gateway_id);
  writer.raw("\xa1" "c");
  writer.uint(conn_id);
  writer.raw("\xa1" "s");
  writer.uint(seq);
  writer.raw(event_type);
  writer.raw(data_key);
  if (text) {
    writer.str(data);
  } else {
    writer.bin(data);
  }
  assert(writer.end() == out.data() + out.size());
  return out;
}

Result<Envelope> decode(std::string_view bytes) {
  // Decoded in place and returned without a move (the scope's dozen strings).
  Result<Envelope> result(std::in_place_index<0>);
  if (detail::fast_decode(bytes, std::get<0>(result))) return result;
  return detail::full_decode(bytes);
}

Result<Envelope> detail::full_decode(std::string_view bytes) {
  Envelope envelope;
  auto error = [&envelope](std::string message, bool unknown_kind = false) {
    return DecodeError{std::move(message), unknown_kind, envelope.conn_id};
  };
  if (bytes.empty()) return error("empty message");
  try {
    ScratchZone zone;
    std::size_t offset = 0;
    auto root = msgpack::unpack(zone.get(), bytes.data(), bytes.size(), offset, reference_all, nullptr,
                                limits_for(bytes.size()));
    if (offset != bytes.size()) {
      return error(std::to_string(bytes.size() - offset) + " trailing bytes after the message");
    }
    read_envelope(root, envelope);
    return envelope;
  } catch (const Malformed& malformed) {
    return error(malformed.message, malformed.unknown_kind);
  } catch (const msgpack::insufficient_bytes&) {
    return error("truncated msgpack data");
  } catch (const msgpack::depth_size_overflow&) {
    return error("nested deeper than " + std::to_string(k_max_depth) + " levels");
  } catch (const msgpack::array_size_overflow&) {
    return error("an array claims more elements than the message can hold");
  } catch (const msgpack::map_size_overflow&) {
    return error("a map claims more entries than the message can hold");
  } catch (const msgpack::size_overflow&) {
    return error("a str, bin or ext claims more bytes than the message holds");
  } catch (const msgpack::unpack_error&) {
    return error("invalid msgpack data");
  } catch (const std::bad_alloc&) {
    return error("out of memory while decoding");
  } catch (const std::exception& exception) {
    return error(std::string("cannot decode: ") + exception.what());
  }
}

}  // namespace asgi_bridge::protocol
