#include "names.hpp"

#include <algorithm>
#include <array>

#include "asgi_bridge/protocol/envelope.hpp"
#include "validate.hpp"

namespace asgi_bridge::protocol {
namespace {

// Indexed by Kind.
constexpr std::array<std::string_view, 9> k_kind_names = {
    "event", "ready", "heartbeat", "credit", "drain", "bye", "error", "group", "publish",
};
static_assert(k_kind_names.size() == static_cast<std::size_t>(Kind::publish) + 1,
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

bool is_valid_channel(std::string_view channel) {
  if (channel.empty() || channel.size() > k_max_channel_length) return false;
  return std::all_of(channel.begin(), channel.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-_.:/@").find(c) != std::string_view::npos;
  });
}

bool is_valid_text(std::string_view text) { return detail::is_valid_utf8(text); }

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
