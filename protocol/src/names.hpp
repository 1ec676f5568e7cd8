#pragma once
// Wire names of kinds and event types, shared by the codec and the public
// kind_name()/event_type() functions.
#include <array>
#include <cstddef>
#include <optional>
#include <string_view>
#include <utility>
#include <variant>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::protocol::detail {

// The ASGI "type" of each event struct. A new alternative of Event without a
// name here does not compile.
template <typename T>
inline constexpr std::string_view type_name = T::no_type_name_for_this_event;
template <> inline constexpr std::string_view type_name<HttpRequest> = "http.request";
template <> inline constexpr std::string_view type_name<HttpResponseStart> = "http.response.start";
template <> inline constexpr std::string_view type_name<HttpResponseBody> = "http.response.body";
template <> inline constexpr std::string_view type_name<HttpResponseTrailers> = "http.response.trailers";
template <> inline constexpr std::string_view type_name<HttpDisconnect> = "http.disconnect";
template <> inline constexpr std::string_view type_name<WebSocketConnect> = "websocket.connect";
template <> inline constexpr std::string_view type_name<WebSocketAccept> = "websocket.accept";
template <> inline constexpr std::string_view type_name<WebSocketReceive> = "websocket.receive";
template <> inline constexpr std::string_view type_name<WebSocketSend> = "websocket.send";
template <> inline constexpr std::string_view type_name<WebSocketClose> = "websocket.close";
template <> inline constexpr std::string_view type_name<WebSocketDisconnect> = "websocket.disconnect";
template <> inline constexpr std::string_view type_name<WebSocketHttpResponseStart> =
    "websocket.http.response.start";
template <> inline constexpr std::string_view type_name<WebSocketHttpResponseBody> =
    "websocket.http.response.body";
template <> inline constexpr std::string_view type_name<BroadcastSubscribe> = "asgi-bridge.subscribe";
template <> inline constexpr std::string_view type_name<BroadcastUnsubscribe> = "asgi-bridge.unsubscribe";

inline constexpr std::size_t k_event_count = std::variant_size_v<Event>;

// type_name of each alternative of Event, indexed like the variant.
template <std::size_t... I>
constexpr auto make_event_types(std::index_sequence<I...>) {
  return std::array<std::string_view, sizeof...(I)>{
      type_name<std::variant_alternative_t<I, Event>>...};
}
inline constexpr auto k_event_types = make_event_types(std::make_index_sequence<k_event_count>{});

// The variant index of the event whose ASGI type is `type`.
std::optional<std::size_t> event_index(std::string_view type);

}  // namespace asgi_bridge::protocol::detail
