#pragma once
// Functions that build the events an app sends.
//
// Use them, or build an event in its own statement, rather than writing a
// braced temporary inside a co_await expression:
//
//   co_await send(protocol::HttpResponseBody{"hi"});   // WRONG with GCC 12
//   co_await send(response_body("hi"));                 // fine
//   auto start = response_start(200, {{"content-type", "text/plain"}});
//   co_await send(std::move(start));                    // fine
//
// GCC 12 destroys an aggregate temporary created inside a co_await expression
// twice (memory corruption at run time), and rejects a braced list of headers
// there ("array used as initializer"). The protocol event types are
// aggregates, so the first form compiles and then crashes. Function results
// and named variables are not affected.
#include <optional>
#include <string>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::worker {

protocol::HttpResponseStart response_start(int status, protocol::Headers headers = {}, bool trailers = false);
protocol::HttpResponseBody response_body(std::string body, bool more_body = false);
protocol::HttpResponseTrailers response_trailers(protocol::Headers headers, bool more_trailers = false);

protocol::WebSocketAccept websocket_accept(std::optional<std::string> subprotocol = std::nullopt,
                                           protocol::Headers headers = {});
protocol::WebSocketSend websocket_text(std::string text);
protocol::WebSocketSend websocket_bytes(std::string bytes);
protocol::WebSocketClose websocket_close(int code = 1000, std::string reason = {});
// The denial response: an HTTP response instead of the handshake.
protocol::WebSocketHttpResponseStart denial_start(int status, protocol::Headers headers = {});
protocol::WebSocketHttpResponseBody denial_body(std::string body, bool more_body = false);
// The asgi-bridge.broadcast extension (asgi_bridge/worker/broadcast.hpp).
protocol::BroadcastSubscribe broadcast_subscribe(std::string channel);
protocol::BroadcastUnsubscribe broadcast_unsubscribe(std::string channel);

}  // namespace asgi_bridge::worker
