#include "names.hpp"

#include <array>

#include "asgi_bridge/protocol/envelope.hpp"

namespace asgi_bridge::protocol {
namespace {

// Indexed by Kind.
constexpr std::array<std::string_view, 8> k_kind_names = {
    "event", "ready", "heartbeat", "credit", "drain", "bye", "error", "group",
};
static_assert(k_kind_names.size() == static_cast<std::size_t>(Kind::group) + 1,
              "k_kind_names must name every Kind, in declaration order");

}  // namespace

std::string_view kind_name(Kind kind) {
  auto index = static_cast<std::size_t>(kind);
  return index < k_kind_names.size() ? k_kind_names[index] : std::string_view{};
}

std::optional<Kind> kind_from_name(std::string_view name) {
  for (std::size_t i = 0; i < k_kind_names.size(); ++i) {
    if (k_kind_names[i] == name) return static_cast<Kind>(i);
  }
  return std::nullopt;
}

std::string_view event_type(const Event& event) {
  return detail::k_event_types[event.index()];
}

std::optional<std::size_t> detail::event_index(std::string_view type) {
  for (std::size_t i = 0; i < k_event_types.size(); ++i) {
    if (k_event_types[i] == type) return i;
  }
  return std::nullopt;
}

}  // namespace asgi_bridge::protocol
