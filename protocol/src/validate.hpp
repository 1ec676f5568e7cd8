#pragma once
// Value checks of docs/protocol.md §4.3 that do not depend on msgpack.
#include <cstdint>
#include <string_view>

namespace asgi_bridge::protocol::detail {

// Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF
// (the same set Python's bytes.decode("utf-8") accepts).
bool is_valid_utf8(std::string_view text);

// A code an application may send in websocket.close: 1000-1003, 1007-1014, 3000-4999.
bool is_valid_close_code(std::uint64_t code);

}  // namespace asgi_bridge::protocol::detail
