#pragma once
// Checks an app's event before it goes on the bus, so that a bad value is an
// InvalidEvent thrown in the app (a 500 the app can see coming) instead of a
// message the gateway rejects as malformed (a 502). Mirrors the value rules
// of docs/protocol.md §4.3 for the worker -> gateway events.
#include <string>
#include <string_view>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::worker::detail {

// Throws InvalidEvent naming the field.
void check_event_values(const protocol::Event& event);

// A broadcast channel name (docs/broadcast.md); InvalidEvent naming `where` if not.
void check_channel(const std::string& channel, const char* where);

bool is_valid_utf8(std::string_view text);

}  // namespace asgi_bridge::worker::detail
