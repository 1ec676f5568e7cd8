// The codec half of asgi_bridge._native (module.cpp): the Python worker's codec hot
// paths in one pass of C++ (docs/workers-python.md#native-fast-path).
//
// Every function here handles the common, canonical case only and answers None
// for anything else: a message of another kind, a field of an unusual type,
// anything invalid. The caller (asgi_bridge/wire.py) then runs the pure-Python
// codec, which decides, normalises or raises the error naming the field. So the
// native path never accepts what codec.py would refuse, and never has to
// reproduce its error messages: the two give equal results by construction
// (workers/python/tests/test_native.py checks it on the golden vectors).
//
//   decode(data)            a bus message -> the dict of codec.decode, or None
//   canonical_event(event)  an app's send -> codec.canonical_event's dict, or None
//   encode_event(g, w, c, s, event, parts=False)  a canonical event -> envelope bytes
//                           (with parts, a Parts for a large payload), or None
#include "native.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

namespace {

// --- owned references ------------------------------------------------------------

// A strong reference released on scope exit, so that every early "None" return
// frees what was built so far.
class Ref {
 public:
  Ref() = default;
  explicit Ref(PyObject* obj) : obj_(obj) {}
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  ~Ref() { Py_XDECREF(obj_); }
  void reset(PyObject* obj) {
    Py_XDECREF(obj_);
    obj_ = obj;
  }
  PyObject* get() const { return obj_; }
  PyObject* release() {
    PyObject* obj = obj_;
    obj_ = nullptr;
    return obj;
  }
  explicit operator bool() const { return obj_ != nullptr; }

 private:
  PyObject* obj_ = nullptr;
};

// Interned key and value strings, made once at import.
struct Names {
  PyObject *v, *k, *g, *w, *c, *s, *event, *scope, *type, *body, *more_body, *bytes, *text,
      *code, *reason, *status, *headers, *trailers, *subprotocol, *asgi, *version,
      *spec_version, *version_value, *spec_version_value, *http_version, *method, *scheme,
      *path, *raw_path, *query_string, *root_path, *client, *server, *subprotocols,
      *extensions, *http, *websocket, *ws, *one_one, *empty_str, *empty_bytes;
};
Names n;

bool intern(PyObject** slot, const char* text) {
  *slot = PyUnicode_InternFromString(text);
  return *slot != nullptr;
}

// --- RFC 9110 checks (as codec.py's _TOKEN and _BAD_VALUE) --------------------------

bool is_tchar(unsigned char ch) {
  if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
    return true;
  }
  return ch != 0 && std::strchr("!#$%&'*+-.^_`|~", ch) != nullptr;
}

bool is_token(const char* data, Py_ssize_t size) {
  if (size == 0) return false;
  for (Py_ssize_t i = 0; i < size; ++i) {
    if (!is_tchar(static_cast<unsigned char>(data[i]))) return false;
  }
  return true;
}

bool is_safe_value(const char* data, Py_ssize_t size) {
  for (Py_ssize_t i = 0; i < size; ++i) {
    char ch = data[i];
    if (ch == '\r' || ch == '\n' || ch == '\0') return false;
  }
  return true;
}

// --- msgpack reading -----------------------------------------------------------------

// A cursor over one message. Every read_* returns false (or nullptr) for what the
// fast path does not take: the message then goes to the Python codec.
struct Reader {
  const unsigned char* p;
  const unsigned char* end;

  bool has(size_t count) const { return static_cast<size_t>(end - p) >= count; }

  bool be(size_t size, uint64_t* out) {
    if (!has(size)) return false;
    uint64_t value = 0;
    for (size_t i = 0; i < size; ++i) value = (value << 8) | p[i];
    p += size;
    *out = value;
    return true;
  }

  bool peek_nil() const { return p < end && *p == 0xc0; }

  // A map's or an array's entry count: fix (its low 4 bits), or 16 or 32 bits.
  bool count(unsigned char fix, unsigned char tag16, uint64_t* size) {
    if (!has(1)) return false;
    unsigned char tag = *p++;
    if ((tag & 0xf0) == fix) return (*size = tag & 0x0f), true;
    if (tag == tag16) return be(2, size);
    if (tag == tag16 + 1) return be(4, size);
    return false;
  }
  bool map_size(uint64_t* size) { return count(0x80, 0xde, size); }
  bool array_size(uint64_t* size) { return count(0x90, 0xdc, size); }

  // The next `size` bytes; with `width`, the size comes first in that many bytes.
  bool payload(size_t width, uint64_t size, std::string_view* out) {
    if ((width != 0 && !be(width, &size)) || !has(size)) return false;
    *out = std::string_view(reinterpret_cast<const char*>(p), size);
    p += size;
    return true;
  }

  // A str's bytes (not yet checked as UTF-8).
  bool raw_str(std::string_view* out) {
    if (!has(1)) return false;
    unsigned char tag = *p++;
    if ((tag & 0xe0) == 0xa0) return payload(0, tag & 0x1f, out);
    if (tag >= 0xd9 && tag <= 0xdb) return payload(size_t(1) << (tag - 0xd9), 0, out);
    return false;
  }

  bool raw_bin(std::string_view* out) {
    if (!has(1)) return false;
    unsigned char tag = *p++;
    if (tag >= 0xc4 && tag <= 0xc6) return payload(size_t(1) << (tag - 0xc4), 0, out);
    return false;
  }

  // Any msgpack integer; *negative tells whether `value` is an int64.
  bool integer(uint64_t* value, bool* negative) {
    if (!has(1)) return false;
    unsigned char tag = *p++;
    *negative = false;
    if (tag <= 0x7f) return (*value = tag), true;
    if (tag >= 0xe0) return (*negative = true, *value = static_cast<uint64_t>(int64_t(int8_t(tag)))), true;
    size_t size;
    switch (tag) {
      case 0xcc: size = 1; break;
      case 0xcd: size = 2; break;
      case 0xce: size = 4; break;
      case 0xcf: size = 8; break;
      case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        size = size_t(1) << (tag - 0xd0);
        uint64_t raw;
        if (!be(size, &raw)) return false;
        int64_t signed_value = size == 8 ? int64_t(raw)
            : size == 4 ? int64_t(int32_t(uint32_t(raw)))
            : size == 2 ? int64_t(int16_t(uint16_t(raw))) : int64_t(int8_t(uint8_t(raw)));
        *negative = signed_value < 0;
        *value = uint64_t(signed_value);
        return true;
      }
      default: return false;
    }
    return be(size, value);
  }

  // An integer in [low, high] (both within int64).
  bool int_in(int64_t low, int64_t high, int64_t* out) {
    uint64_t value;
    bool negative;
    if (!integer(&value, &negative)) return false;
    if (!negative && value > uint64_t(INT64_MAX)) return false;
    int64_t v = int64_t(value);
    if (v < low || v > high) return false;
    *out = v;
    return true;
  }

  bool boolean(bool* out) {
    if (!has(1)) return false;
    unsigned char tag = *p++;
    if (tag != 0xc2 && tag != 0xc3) return false;
    *out = tag == 0xc3;
    return true;
  }

  // Python objects. nullptr: not taken (an exception set only for MemoryError).
  PyObject* str() {
    std::string_view raw;
    if (!raw_str(&raw)) return nullptr;
    // Strict, as msgpack's raw=False: invalid UTF-8 (surrogates too) is not taken.
    return PyUnicode_DecodeUTF8(raw.data(), Py_ssize_t(raw.size()), nullptr);
  }

  PyObject* bin() {
    std::string_view raw;
    if (!raw_bin(&raw)) return nullptr;
    return PyBytes_FromStringAndSize(raw.data(), Py_ssize_t(raw.size()));
  }

  // A uint envelope field: an int >= 0 of any width, as codec._wire_uint.
  PyObject* uint() {
    uint64_t value;
    bool negative;
    if (!integer(&value, &negative) || negative) return nullptr;
    return PyLong_FromUnsignedLongLong(value);
  }
};

PyObject* none_or_error() {
  // Only a MemoryError propagates; any other failure means "not taken".
  if (PyErr_Occurred()) {
    if (!PyErr_ExceptionMatches(PyExc_MemoryError)) {
      PyErr_Clear();
    } else {
      return nullptr;
    }
  }
  Py_RETURN_NONE;
}

// A key among `names` (at most 32), as its index; -1 if none.
template <size_t N>
int key_index(std::string_view key, const char* const (&names)[N]) {
  for (size_t i = 0; i < N; ++i) {
    if (key == names[i]) return int(i);
  }
  return -1;
}

// Checks a new key against the keys already seen (a duplicate is not taken: the
// Python codec would keep the last value at the first key's place).
bool first_time(int index, uint32_t* seen) {
  if (index < 0 || (*seen & (1u << index))) return false;
  *seen |= 1u << index;
  return true;
}

// --- headers ---------------------------------------------------------------------------

// A msgpack array as a list, each item read by `read_item(r)`.
template <typename ReadItem>
PyObject* read_list(Reader& r, ReadItem read_item) {
  uint64_t count;
  if (!r.array_size(&count) || !r.has(count)) return nullptr;  // (a bound on the list)
  Ref list(PyList_New(Py_ssize_t(count)));
  if (!list) return nullptr;
  for (uint64_t i = 0; i < count; ++i) {
    PyObject* item = read_item(r);
    if (item == nullptr) return nullptr;
    PyList_SET_ITEM(list.get(), Py_ssize_t(i), item);
  }
  return list.release();
}

// [name, value] of bin, the name a token, the value without CR/LF/NUL.
PyObject* read_header(Reader& r) {
  uint64_t two;
  std::string_view name, value;
  if (!r.array_size(&two) || two != 2 || !r.raw_bin(&name) || !r.raw_bin(&value) ||
      !is_token(name.data(), Py_ssize_t(name.size())) ||
      !is_safe_value(value.data(), Py_ssize_t(value.size()))) {
    return nullptr;
  }
  return Py_BuildValue("[y#y#]", name.data(), Py_ssize_t(name.size()), value.data(),
                       Py_ssize_t(value.size()));
}

PyObject* read_headers(Reader& r) { return read_list(r, read_header); }

// --- the scope (§4.1, codec.canonical_scope) ---------------------------------------------

// In canonical order after "type" and "asgi"; which ones a scope type has is below.
enum ScopeField {
  kHttpVersion, kMethod, kScheme, kPath, kRawPath, kQueryString, kRootPath, kHeaders,
  kClient, kServer, kSubprotocols, kExtensions, kScopeFields
};
const char* const kScopeNames[] = {"http_version", "method", "scheme", "path", "raw_path",
                                   "query_string", "root_path", "headers", "client", "server",
                                   "subprotocols", "extensions"};

// The gateway's asgi map: exactly {"version": "3.0", "spec_version": "2.5"}.
bool read_default_asgi(Reader& r) {
  uint64_t count;
  if (!r.map_size(&count) || count != 2) return false;
  bool version = false, spec = false;
  for (int i = 0; i < 2; ++i) {
    std::string_view key, value;
    if (!r.raw_str(&key) || !r.raw_str(&value)) return false;
    if (key == "version" && value == "3.0" && !version) {
      version = true;
    } else if (key == "spec_version" && value == "2.5" && !spec) {
      spec = true;
    } else {
      return false;
    }
  }
  return true;
}

// [host, port] (port 0..65535, or nil for a server's unix socket), or nil.
PyObject* read_endpoint(Reader& r, bool allow_nil_port) {
  if (r.peek_nil()) {
    ++r.p;
    Py_RETURN_NONE;
  }
  uint64_t two;
  if (!r.array_size(&two) || two != 2) return nullptr;
  Ref host(r.str());
  if (!host) return nullptr;
  Ref port;
  if (allow_nil_port && r.peek_nil()) {
    ++r.p;
    port.reset(Py_NewRef(Py_None));
  } else {
    int64_t value;
    if (!r.int_in(0, 65535, &value)) return nullptr;
    port.reset(PyLong_FromLongLong(value));
    if (!port) return nullptr;
  }
  return Py_BuildValue("[OO]", host.get(), port.get());
}

PyObject* read_str_list(Reader& r) {
  return read_list(r, [](Reader& reader) { return reader.str(); });
}

// {name: {}} from a map of names to empty maps (what the gateway sends).
PyObject* read_extensions(Reader& r) {
  uint64_t count;
  if (!r.map_size(&count)) return nullptr;
  Ref dict(PyDict_New());
  if (!dict) return nullptr;
  for (uint64_t i = 0; i < count; ++i) {
    Ref name(r.str());
    uint64_t inner;
    if (!name || !r.map_size(&inner) || inner != 0) return nullptr;
    if (PyDict_Contains(dict.get(), name.get())) return nullptr;  // a duplicate
    Ref empty(PyDict_New());
    if (!empty || PyDict_SetItem(dict.get(), name.get(), empty.get()) < 0) return nullptr;
  }
  return dict.release();
}

PyObject* read_scope_field(Reader& r, int field) {
  switch (field) {
    case kHttpVersion: case kMethod: case kScheme: case kPath: case kRootPath:
      return r.str();
    case kRawPath: case kQueryString:
      return r.bin();
    case kHeaders:
      return read_headers(r);
    case kClient:
      return read_endpoint(r, false);
    case kServer:
      return read_endpoint(r, true);
    case kSubprotocols:
      return read_str_list(r);
    case kExtensions:
      return read_extensions(r);
  }
  return nullptr;
}

// A field's value when the scope has none (codec._scope_fields' defaults).
PyObject* scope_default(int field, bool http, PyObject* path) {
  switch (field) {
    case kHttpVersion: return Py_NewRef(n.one_one);
    case kScheme: return Py_NewRef(http ? n.http : n.ws);
    case kRawPath: return PyUnicode_AsUTF8String(path);
    case kQueryString: return Py_NewRef(n.empty_bytes);
    case kRootPath: return Py_NewRef(n.empty_str);
    case kHeaders: case kSubprotocols: return PyList_New(0);
    case kClient: case kServer: return Py_NewRef(Py_None);
    case kExtensions: return PyDict_New();
  }
  return nullptr;  // method and path are required
}

PyObject* scope_key(int field) {
  PyObject* const keys[] = {n.http_version, n.method, n.scheme, n.path, n.raw_path,
                            n.query_string, n.root_path, n.headers, n.client, n.server,
                            n.subprotocols, n.extensions};
  return keys[field];
}

// The start of a map whose first key is "type", as every sender of ours writes a
// scope and an event: its size, and the type.
bool read_type_first(Reader& r, uint64_t* count, std::string_view* type) {
  std::string_view key;
  return r.map_size(count) && *count != 0 && r.raw_str(&key) && key == "type" &&
         r.raw_str(type);
}

// The scope as the gateway writes it: "type" first, only the fields of its type.
PyObject* read_scope(Reader& r) {
  uint64_t count;
  std::string_view key, type;
  if (!read_type_first(r, &count, &type)) return nullptr;
  bool http = type == "http";
  if (!http && type != "websocket") return nullptr;
  Ref values[kScopeFields];
  bool asgi_seen = false;  // if present, it must be the default (else the Python path)
  uint32_t seen = 0;
  for (uint64_t i = 1; i < count; ++i) {
    if (!r.raw_str(&key)) return nullptr;
    if (key == "asgi") {
      if (asgi_seen || !read_default_asgi(r)) return nullptr;
      asgi_seen = true;
      continue;
    }
    int field = key_index(key, kScopeNames);
    if (field == (http ? kSubprotocols : kMethod) || !first_time(field, &seen)) {
      return nullptr;  // a key the Python codec drops, or an unknown or repeated one
    }
    values[field].reset(read_scope_field(r, field));
    if (!values[field]) return nullptr;
  }
  if (!values[kPath] || (http && !values[kMethod])) return nullptr;

  Ref scope(PyDict_New());
  Ref asgi(Py_BuildValue("{sOsO}", "version", n.version_value, "spec_version",
                         n.spec_version_value));
  if (!scope || !asgi || PyDict_SetItem(scope.get(), n.type, http ? n.http : n.websocket) < 0 ||
      PyDict_SetItem(scope.get(), n.asgi, asgi.get()) < 0) {
    return nullptr;
  }
  for (int field = 0; field < kScopeFields; ++field) {
    if (field == (http ? kSubprotocols : kMethod)) continue;
    if (!values[field]) {
      values[field].reset(scope_default(field, http, values[kPath].get()));
      if (!values[field]) return nullptr;
    }
    if (PyDict_SetItem(scope.get(), scope_key(field), values[field].get()) < 0) return nullptr;
  }
  return scope.release();
}

// --- events from the gateway (§4.2, codec._wire_event) -----------------------------------

enum EventField { kBody, kMoreBody, kBytes, kText, kCode, kReason, kEventFields };
const char* const kEventNames[] = {"body", "more_body", "bytes", "text", "code", "reason"};

enum EventType { kHttpRequest, kHttpDisconnect, kWsConnect, kWsReceive, kWsDisconnect, kWsSend };
const char* const kEventTypes[] = {"http.request", "http.disconnect", "websocket.connect",
                                   "websocket.receive", "websocket.disconnect",
                                   "websocket.send"};

// The fields each type has (a bit per EventField).
constexpr uint32_t kTypeFields[] = {
    (1u << kBody) | (1u << kMoreBody), 0, 0, (1u << kBytes) | (1u << kText),
    (1u << kCode) | (1u << kReason), (1u << kBytes) | (1u << kText)};

PyObject* read_event_field(Reader& r, int field) {
  switch (field) {
    case kBody:
      return r.bin();
    case kMoreBody: {
      bool value;
      if (!r.boolean(&value)) return nullptr;
      return PyBool_FromLong(value);
    }
    case kBytes: case kText:
      if (r.peek_nil()) {  // nil is "absent" for the message's bytes and text
        ++r.p;
        Py_RETURN_NONE;
      }
      return field == kBytes ? r.bin() : r.str();
    case kCode: {
      int64_t code;
      if (!r.int_in(1000, 4999, &code)) return nullptr;
      return PyLong_FromLongLong(code);
    }
    case kReason:
      return r.str();
  }
  return nullptr;
}

bool set_or_default(PyObject* dict, PyObject* key, Ref& value, PyObject* fallback) {
  return PyDict_SetItem(dict, key, value ? value.get() : fallback) == 0;
}

// A gateway's event: "type" first, then only the fields of its type.
PyObject* read_event(Reader& r) {
  uint64_t count;
  std::string_view key, type_name;
  if (!read_type_first(r, &count, &type_name)) return nullptr;
  int type = key_index(type_name, kEventTypes);
  if (type < 0) return nullptr;
  Ref values[kEventFields];
  uint32_t seen = 0;
  for (uint64_t i = 1; i < count; ++i) {
    if (!r.raw_str(&key)) return nullptr;
    int field = key_index(key, kEventNames);
    if (field < 0 || !(kTypeFields[type] & (1u << field)) || !first_time(field, &seen)) {
      return nullptr;
    }
    values[field].reset(read_event_field(r, field));
    if (!values[field]) return nullptr;
  }
  Ref type_str(PyUnicode_FromStringAndSize(type_name.data(), Py_ssize_t(type_name.size())));
  Ref event(PyDict_New());
  if (!type_str || !event || PyDict_SetItem(event.get(), n.type, type_str.get()) < 0) {
    return nullptr;
  }
  PyObject* dict = event.get();
  switch (type) {
    case kHttpRequest:
      if (!set_or_default(dict, n.body, values[kBody], n.empty_bytes) ||
          !set_or_default(dict, n.more_body, values[kMoreBody], Py_False)) {
        return nullptr;
      }
      break;
    case kWsReceive: case kWsSend: {
      bool has_bytes = values[kBytes] && values[kBytes].get() != Py_None;
      bool has_text = values[kText] && values[kText].get() != Py_None;
      if (has_bytes == has_text) return nullptr;  // exactly one of them
      if (has_bytes ? PyDict_SetItem(dict, n.bytes, values[kBytes].get()) < 0
                    : PyDict_SetItem(dict, n.text, values[kText].get()) < 0) {
        return nullptr;
      }
      break;
    }
    case kWsDisconnect: {
      Ref code(values[kCode] ? nullptr : PyLong_FromLong(1005));
      if ((!values[kCode] && !code) ||
          !set_or_default(dict, n.code, values[kCode], code.get()) ||
          !set_or_default(dict, n.reason, values[kReason], n.empty_str)) {
        return nullptr;
      }
      break;
    }
  }
  return event.release();
}

// --- the envelope (§2.1, codec._decode_envelope) ---------------------------------------------

enum EnvelopeKey {
  kV, kK, kG, kW, kC, kS, kCapacity, kActive, kWsCapacity, kWindow, kFeatures, kEvents,
  kBytesKey, kMessage, kGroup, kChannel, kScope, kEvent, kEnvelopeKeys
};
const char* const kEnvelopeNames[] = {"v", "k", "g", "w", "c", "s", "capacity", "active",
                                      "ws_capacity", "window", "features", "events", "bytes",
                                      "message", "group", "channel", "scope", "event"};
// Kinds taken here; group and publish (their own checks) and unknown kinds are not.
const char* const kKinds[] = {"event", "ready", "heartbeat", "credit", "drain", "bye", "error"};

PyObject* read_envelope_value(Reader& r, int key, int* kind) {
  switch (key) {
    case kV: {
      int64_t v;
      if (!r.int_in(1, 1, &v)) return nullptr;
      return PyLong_FromLong(1);
    }
    case kK: {
      std::string_view raw;
      if (!r.raw_str(&raw) || (*kind = key_index(raw, kKinds)) < 0) return nullptr;
      return PyUnicode_FromStringAndSize(raw.data(), Py_ssize_t(raw.size()));
    }
    case kG: case kW: {
      PyObject* id = r.str();
      if (id != nullptr && PyUnicode_GET_LENGTH(id) == 0) Py_CLEAR(id);  // an empty id
      return id;
    }
    case kMessage: case kGroup: case kChannel:
      return r.str();
    case kScope:
      return read_scope(r);
    case kEvent:
      return read_event(r);
    default:
      return r.uint();
  }
}

PyObject* envelope_key(int key) {
  static PyObject* keys[kEnvelopeKeys];
  if (keys[0] == nullptr) {
    for (int i = 0; i < kEnvelopeKeys; ++i) {
      keys[i] = PyUnicode_InternFromString(kEnvelopeNames[i]);
      if (keys[i] == nullptr) return nullptr;
    }
  }
  return keys[key];
}

PyObject* decode_message(Reader& r) {
  uint64_t count;
  if (!r.map_size(&count)) return nullptr;
  Ref msg(PyDict_New());
  if (!msg) return nullptr;
  uint32_t seen = 0;
  int kind = -1;
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view raw;
    if (!r.raw_str(&raw)) return nullptr;
    int key = key_index(raw, kEnvelopeNames);
    if (!first_time(key, &seen)) return nullptr;
    Ref value(read_envelope_value(r, key, &kind));
    PyObject* name = envelope_key(key);
    if (!value || name == nullptr || PyDict_SetItem(msg.get(), name, value.get()) < 0) {
      return nullptr;
    }
  }
  if (r.p != r.end || !(seen & (1u << kV)) || kind < 0) return nullptr;
  constexpr uint32_t event_needs = (1u << kC) | (1u << kS) | (1u << kEvent);
  if (kind == 0 && (seen & event_needs) != event_needs) return nullptr;
  return msg.release();
}

PyObject* decode(PyObject*, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return none_or_error();
  auto* bytes = static_cast<const unsigned char*>(view.buf);
  Reader r{bytes, bytes + view.len};
  PyObject* msg = decode_message(r);
  PyBuffer_Release(&view);
  return msg != nullptr ? msg : none_or_error();
}

// --- an app's send (codec.canonical_event) -----------------------------------------------

// An app's value of a field, or nullptr when absent or None (the default then applies).
PyObject* given(PyObject* event, PyObject* key) {
  PyObject* value = PyDict_GetItemWithError(event, key);
  return value == Py_None ? nullptr : value;
}

// The headers of an app's event: a list or tuple of [name, value] lists or tuples
// of plain bytes; a fresh list of fresh lists, as codec._headers.
PyObject* app_headers(PyObject* value) {
  if (value == nullptr) return PyList_New(0);
  if (!PyList_CheckExact(value) && !PyTuple_CheckExact(value)) return nullptr;
  Ref seq(PySequence_Fast(value, ""));
  if (!seq) return nullptr;
  Py_ssize_t count = PySequence_Fast_GET_SIZE(seq.get());
  Ref out(PyList_New(count));
  if (!out) return nullptr;
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* pair = PySequence_Fast_GET_ITEM(seq.get(), i);
    if (!(PyList_CheckExact(pair) || PyTuple_CheckExact(pair)) || PySequence_Size(pair) != 2) {
      return nullptr;
    }
    PyObject* name = PySequence_Fast_GET_ITEM(pair, 0);  // list or tuple: works on both
    PyObject* val = PySequence_Fast_GET_ITEM(pair, 1);
    if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(val) ||
        !is_token(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)) ||
        !is_safe_value(PyBytes_AS_STRING(val), PyBytes_GET_SIZE(val))) {
      return nullptr;
    }
    PyObject* copy = Py_BuildValue("[OO]", name, val);
    if (copy == nullptr) return nullptr;
    PyList_SET_ITEM(out.get(), i, copy);
  }
  return out.release();
}

bool app_int(PyObject* value, long low, long high, PyObject** out) {
  if (!PyLong_CheckExact(value)) return false;
  int overflow;
  long v = PyLong_AsLongAndOverflow(value, &overflow);
  if (overflow || v < low || v > high) return false;
  *out = value;
  return true;
}

bool is_close_code(long code) {
  return (1000 <= code && code <= 1003) || (1007 <= code && code <= 1014) ||
         (3000 <= code && code <= 4999);
}

// Field by field into `out`; false: not taken.
bool app_fields(PyObject* event, std::string_view type, PyObject* out) {
  if (type == "http.response.body") {
    PyObject* body = given(event, n.body);
    PyObject* more = given(event, n.more_body);
    if ((body && !PyBytes_CheckExact(body)) || (more && !PyBool_Check(more))) return false;
    return PyDict_SetItem(out, n.body, body ? body : n.empty_bytes) == 0 &&
           PyDict_SetItem(out, n.more_body, more ? more : Py_False) == 0;
  }
  if (type == "websocket.send") {
    PyObject* data = given(event, n.bytes);
    PyObject* text = given(event, n.text);
    if ((data == nullptr) == (text == nullptr)) return false;
    if (data) return PyBytes_CheckExact(data) && PyDict_SetItem(out, n.bytes, data) == 0;
    return PyUnicode_CheckExact(text) && PyDict_SetItem(out, n.text, text) == 0;
  }
  if (type == "http.response.start") {
    PyObject* status = given(event, n.status);
    PyObject* trailers = given(event, n.trailers);
    if (status == nullptr || !app_int(status, 100, 599, &status) ||
        (trailers && !PyBool_Check(trailers))) {
      return false;
    }
    Ref headers(app_headers(given(event, n.headers)));
    return headers && PyDict_SetItem(out, n.status, status) == 0 &&
           PyDict_SetItem(out, n.headers, headers.get()) == 0 &&
           PyDict_SetItem(out, n.trailers, trailers ? trailers : Py_False) == 0;
  }
  if (type == "websocket.accept") {
    PyObject* subprotocol = given(event, n.subprotocol);
    if (subprotocol && !PyUnicode_CheckExact(subprotocol)) return false;
    Ref headers(app_headers(given(event, n.headers)));
    return headers && PyDict_SetItem(out, n.subprotocol, subprotocol ? subprotocol : Py_None) == 0 &&
           PyDict_SetItem(out, n.headers, headers.get()) == 0;
  }
  if (type == "websocket.close") {
    PyObject* code = given(event, n.code);
    PyObject* reason = given(event, n.reason);
    if (code && (!app_int(code, 1000, 4999, &code) || !is_close_code(PyLong_AsLong(code)))) {
      return false;
    }
    // ASCII only (no UTF-8 length to work out): at most 123 bytes in a close frame.
    if (reason && (!PyUnicode_CheckExact(reason) || !PyUnicode_IS_ASCII(reason) ||
                   PyUnicode_GET_LENGTH(reason) > 123)) {
      return false;
    }
    Ref default_code(code ? nullptr : PyLong_FromLong(1000));
    return (code || default_code) &&
           PyDict_SetItem(out, n.code, code ? code : default_code.get()) == 0 &&
           PyDict_SetItem(out, n.reason, reason ? reason : n.empty_str) == 0;
  }
  return false;  // the rarer types: the Python codec
}

PyObject* canonical_event(PyObject*, PyObject* event) {
  if (!PyDict_CheckExact(event)) Py_RETURN_NONE;
  PyObject* type = PyDict_GetItemWithError(event, n.type);
  if (type == nullptr || !PyUnicode_CheckExact(type)) return none_or_error();
  Py_ssize_t size;
  const char* text = PyUnicode_AsUTF8AndSize(type, &size);
  if (text == nullptr) return none_or_error();
  Ref out(PyDict_New());
  if (!out || PyDict_SetItem(out.get(), n.type, type) < 0) return nullptr;
  if (!app_fields(event, std::string_view(text, size_t(size)), out.get())) return none_or_error();
  return out.release();
}

// --- msgpack writing (as msgpack-python's Packer(use_bin_type=True)) ------------------------

// Writes straight into a bytes object (grown as needed, shrunk to fit at the end):
// a large body is copied once, from the app's bytes into the message. With a
// split_min, the top-level event's payload (body or bytes) of split_min bytes or
// more is not copied at all: the message becomes a Parts, the bytes written
// before it, the payload's own object, the bytes written after it.
class Writer {
 public:
  explicit Writer(size_t capacity, size_t split_min = SIZE_MAX)
      : buf_(PyBytes_FromStringAndSize(nullptr, Py_ssize_t(capacity))),
        cap_(capacity),
        split_min_(split_min) {}
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer() {
    Py_XDECREF(buf_);
    Py_XDECREF(head_);
    Py_XDECREF(body_);
  }

  // The message (bytes or a Parts); nullptr with MemoryError when an allocation failed.
  PyObject* finish() {
    PyObject* last = finish_bytes();
    if (last == nullptr || head_ == nullptr) return last;
    PyObject* parts = asgi_native::make_parts(head_, body_, last);
    Py_DECREF(last);
    return parts;
  }

  void put(unsigned char byte) {
    if (room(1)) PyBytes_AS_STRING(buf_)[len_++] = char(byte);
  }
  void append(const char* data, size_t size) {
    if (!room(size)) return;
    std::memcpy(PyBytes_AS_STRING(buf_) + len_, data, size);
    len_ += size;
  }
  void be(uint64_t value, int size) {
    for (int shift = (size - 1) * 8; shift >= 0; shift -= 8) put(uint8_t(value >> shift));
  }
  void header(uint64_t size, unsigned char fix, uint64_t fix_limit, unsigned char tag8,
              unsigned char tag16, unsigned char tag32) {
    if (size < fix_limit) {
      put(uint8_t(fix | size));
    } else if (tag8 != 0 && size < 0x100) {
      put(tag8), be(size, 1);
    } else if (size < 0x10000) {
      put(tag16), be(size, 2);
    } else {
      put(tag32), be(size, 4);
    }
  }
  void map(uint64_t size) { header(size, 0x80, 16, 0, 0xde, 0xdf); }
  void array(uint64_t size) { header(size, 0x90, 16, 0, 0xdc, 0xdd); }
  void str(std::string_view s) {
    header(s.size(), 0xa0, 32, 0xd9, 0xda, 0xdb);
    append(s.data(), s.size());
  }
  void bin_header(size_t size) {
    if (size < 0x100) {
      put(0xc4), be(size, 1);
    } else if (size < 0x10000) {
      put(0xc5), be(size, 2);
    } else {
      put(0xc6), be(size, 4);
    }
  }
  void bin(const char* data, size_t size) {
    bin_header(size);
    append(data, size);
  }
  void uint(uint64_t v) {
    if (v < 0x80) {
      put(uint8_t(v));
    } else if (v < 0x100) {
      put(0xcc), be(v, 1);
    } else if (v < 0x10000) {
      put(0xcd), be(v, 2);
    } else if (v < 0x100000000) {
      put(0xce), be(v, 4);
    } else {
      put(0xcf), be(v, 8);
    }
  }
  void sint(int64_t v) {
    if (v >= 0) return uint(uint64_t(v));
    if (v >= -32) {
      put(uint8_t(v));
    } else if (v >= -128) {
      put(0xd0), be(uint64_t(v), 1);
    } else if (v >= -32768) {
      put(0xd1), be(uint64_t(v), 2);
    } else if (v >= INT32_MIN) {
      put(0xd2), be(uint64_t(v), 4);
    } else {
      put(0xd3), be(uint64_t(v), 8);
    }
  }

  // Any value of a canonical event. false: a type this writer does not take.
  bool value(PyObject* obj, int depth = 0) {
    if (depth > 8) return false;
    bool payload = std::exchange(payload_next_, false);  // this value is the event's payload
    if (obj == Py_None) return put(0xc0), true;
    if (obj == Py_True) return put(0xc3), true;
    if (obj == Py_False) return put(0xc2), true;
    if (PyUnicode_CheckExact(obj)) {
      Py_ssize_t size;
      const char* text = PyUnicode_AsUTF8AndSize(obj, &size);
      if (text == nullptr) return false;  // UnicodeEncodeError: the caller's InvalidEvent
      str(std::string_view(text, size_t(size)));
      return true;
    }
    if (PyBytes_CheckExact(obj)) {
      size_t size = size_t(PyBytes_GET_SIZE(obj));
      if (splits(payload, size)) return split_at(obj, size);
      return bin(PyBytes_AS_STRING(obj), size), true;
    }
    if (PyLong_CheckExact(obj)) {
      int overflow;
      long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
      if (overflow) return false;
      sint(v);
      return true;
    }
    if (PyMemoryView_Check(obj)) {  // a piece of a large body (connection._send_pieces)
      // Through the buffer protocol: a released view raises instead of being read.
      Py_buffer view;
      if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) return false;
      // Kept by reference only over bytes, which nobody can change meanwhile.
      PyObject* base = PyMemoryView_GET_BASE(obj);
      bool immutable = base != nullptr && PyBytes_CheckExact(base);
      size_t size = size_t(view.len);
      bool split = immutable && splits(payload, size);
      if (!split) bin(static_cast<const char*>(view.buf), size);
      PyBuffer_Release(&view);
      return split ? split_at(obj, size) : true;
    }
    if (PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
      Py_ssize_t size = PySequence_Fast_GET_SIZE(obj);
      array(uint64_t(size));
      for (Py_ssize_t i = 0; i < size; ++i) {
        if (!value(PySequence_Fast_GET_ITEM(obj, i), depth + 1)) return false;
      }
      return true;
    }
    if (PyDict_CheckExact(obj)) {
      map(uint64_t(PyDict_GET_SIZE(obj)));
      PyObject *key, *item;
      Py_ssize_t pos = 0;
      while (PyDict_Next(obj, &pos, &key, &item)) {
        if (!PyUnicode_CheckExact(key) || !value(key, depth + 1)) return false;
        // (the event is at depth 0; the key is compared only when splitting at all)
        payload_next_ = depth == 0 && split_min_ != SIZE_MAX && is_payload_key(key);
        if (!value(item, depth + 1)) return false;
      }
      return true;
    }
    return false;
  }
 private:
  PyObject* finish_bytes() {
    if (buf_ == nullptr || _PyBytes_Resize(&buf_, Py_ssize_t(len_)) < 0) return nullptr;
    PyObject* done = buf_;
    buf_ = nullptr;
    return done;
  }
  static bool is_payload_key(PyObject* key) {
    return key == n.body || key == n.bytes || PyUnicode_CompareWithASCIIString(key, "body") == 0 ||
           PyUnicode_CompareWithASCIIString(key, "bytes") == 0;
  }
  // The event's payload is split off when large (and only one value is).
  bool splits(bool payload, size_t size) const {
    return payload && size >= split_min_ && head_ == nullptr;
  }
  // The payload's bin header ends the head; `obj` itself is the body; the rest of
  // the message goes into a new buffer, the tail.
  bool split_at(PyObject* obj, size_t size) {
    bin_header(size);
    head_ = finish_bytes();
    if (head_ == nullptr) return false;
    body_ = Py_NewRef(obj);
    cap_ = 64;
    len_ = 0;
    buf_ = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(cap_));
    return buf_ != nullptr;
  }

  bool room(size_t size) {
    if (buf_ == nullptr) return false;
    if (len_ + size <= cap_) return true;
    cap_ = std::max(cap_ * 2, len_ + size);
    return _PyBytes_Resize(&buf_, Py_ssize_t(cap_)) == 0;  // (on failure buf_ is nullptr)
  }

  PyObject* buf_;
  size_t len_ = 0;
  size_t cap_;
  size_t split_min_;
  bool payload_next_ = false;  // the next value() writes the event's payload
  PyObject* head_ = nullptr;  // split: the bytes before the payload
  PyObject* body_ = nullptr;  // split: the payload's object
};

// Bytes of the event's payload (body, bytes or text), to size the message once.
size_t payload_hint(PyObject* event) {
  if (!PyDict_CheckExact(event)) return 0;
  size_t size = 0;
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  while (PyDict_Next(event, &pos, &key, &value)) {
    if (PyBytes_CheckExact(value)) {
      size += size_t(PyBytes_GET_SIZE(value));
    } else if (PyMemoryView_Check(value)) {
      Py_buffer view;
      if (PyObject_GetBuffer(value, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();  // (a released view: value() says so)
        continue;
      }
      size += size_t(view.len);
      PyBuffer_Release(&view);
    } else if (PyUnicode_CheckExact(value)) {
      size += size_t(PyUnicode_GET_LENGTH(value));  // (UTF-8 may be longer: grows then)
    }
  }
  return size;
}

// codec.encode_event: {"v", "k": "event", "g", "w", "c", "s", "event"} in this order.
// A true sixth argument (parts): a payload of 16 KiB or more stays out of the copy, in
// a Parts (parts.cpp) for a bus that copies each piece once (into its ring) anyway.
constexpr size_t k_split_min = 16 * 1024;

PyObject* encode_event(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if ((nargs != 5 && nargs != 6) || !PyUnicode_CheckExact(args[0]) ||
      !PyUnicode_CheckExact(args[1]) || !PyLong_CheckExact(args[2]) ||
      !PyLong_CheckExact(args[3])) {
    Py_RETURN_NONE;
  }
  bool parts = nargs == 6 && PyObject_IsTrue(args[5]) == 1;
  size_t hint = payload_hint(args[4]);
  Writer w(parts && hint >= k_split_min ? 192 : 128 + hint, parts ? k_split_min : SIZE_MAX);
  w.map(7);
  w.str("v"), w.uint(1);
  w.str("k"), w.str("event");
  if (!(w.str("g"), w.value(args[0])) || !(w.str("w"), w.value(args[1])) ||
      !(w.str("c"), w.value(args[2])) || !(w.str("s"), w.value(args[3])) ||
      !(w.str("event"), w.value(args[4]))) {
    return none_or_error();  // e.g. a str with lone surrogates: codec raises for it
  }
  return w.finish();
}

// codec.payload_size of a canonical event: the bytes counted against the window.
// None where codec must decide (a str that is not valid UTF-8: codec raises for it).
PyObject* payload_size(PyObject*, PyObject* event) {
  if (!PyDict_CheckExact(event)) Py_RETURN_NONE;
  PyObject* type = PyDict_GetItemWithError(event, n.type);
  Py_ssize_t size;
  const char* text = type && PyUnicode_CheckExact(type) ? PyUnicode_AsUTF8AndSize(type, &size)
                                                        : nullptr;
  if (text == nullptr) return none_or_error();
  std::string_view kind(text, size_t(size));
  PyObject* payload = nullptr;
  if (kind == "websocket.send") {
    payload = PyDict_GetItemWithError(event, n.bytes);
    if (payload == Py_None) payload = nullptr;
    if (payload == nullptr) {
      PyObject* str = PyDict_GetItemWithError(event, n.text);
      if (str == nullptr || !PyUnicode_CheckExact(str)) return none_or_error();
      if (PyUnicode_IS_ASCII(str)) return PyLong_FromSsize_t(PyUnicode_GET_LENGTH(str));
      return PyUnicode_AsUTF8AndSize(str, &size) ? PyLong_FromSsize_t(size) : none_or_error();
    }
  } else if (kind == "http.response.body" || kind == "websocket.http.response.body") {
    payload = PyDict_GetItemWithError(event, n.body);
  } else {
    return PyLong_FromLong(0);
  }
  if (payload != nullptr && PyBytes_CheckExact(payload)) {
    return PyLong_FromSsize_t(PyBytes_GET_SIZE(payload));
  }
  if (payload != nullptr && PyMemoryView_Check(payload)) {  // a piece of a large body
    Py_buffer view;
    if (PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE) < 0) return none_or_error();
    size = view.len;
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(size);
  }
  return none_or_error();  // anything else: codec's len()
}

bool init_names() {
  struct {
    PyObject** slot;
    const char* text;
  } const table[] = {
      {&n.v, "v"}, {&n.k, "k"}, {&n.g, "g"}, {&n.w, "w"}, {&n.c, "c"}, {&n.s, "s"},
      {&n.event, "event"}, {&n.scope, "scope"}, {&n.type, "type"}, {&n.body, "body"},
      {&n.more_body, "more_body"}, {&n.bytes, "bytes"}, {&n.text, "text"}, {&n.code, "code"},
      {&n.reason, "reason"}, {&n.status, "status"}, {&n.headers, "headers"},
      {&n.trailers, "trailers"}, {&n.subprotocol, "subprotocol"}, {&n.asgi, "asgi"},
      {&n.version, "version"}, {&n.spec_version, "spec_version"}, {&n.version_value, "3.0"},
      {&n.spec_version_value, "2.5"}, {&n.http_version, "http_version"},
      {&n.method, "method"}, {&n.scheme, "scheme"}, {&n.path, "path"},
      {&n.raw_path, "raw_path"}, {&n.query_string, "query_string"},
      {&n.root_path, "root_path"}, {&n.client, "client"}, {&n.server, "server"},
      {&n.subprotocols, "subprotocols"}, {&n.extensions, "extensions"}, {&n.http, "http"},
      {&n.websocket, "websocket"}, {&n.ws, "ws"}, {&n.one_one, "1.1"}, {&n.empty_str, ""}};
  for (const auto& entry : table) {
    if (!intern(entry.slot, entry.text)) return false;
  }
  n.empty_bytes = PyBytes_FromStringAndSize("", 0);
  return n.empty_bytes != nullptr && envelope_key(0) != nullptr;
}

}  // namespace

namespace asgi_native {

bool init_codec() { return init_names(); }
PyObject* decode(PyObject* self, PyObject* data) { return ::decode(self, data); }
PyObject* canonical_event(PyObject* self, PyObject* event) {
  return ::canonical_event(self, event);
}
PyObject* encode_event(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return ::encode_event(self, args, nargs);
}
PyObject* payload_size(PyObject* self, PyObject* event) { return ::payload_size(self, event); }

}  // namespace asgi_native
