#include "asgi_bridge/worker/events.hpp"

namespace asgi_bridge::worker {

protocol::HttpResponseStart response_start(int status, protocol::Headers headers, bool trailers) {
  return {status, std::move(headers), trailers, std::nullopt, false};
}

protocol::HttpResponseBody response_body(std::string body, bool more_body) { return {std::move(body), more_body}; }

protocol::HttpResponseTrailers response_trailers(protocol::Headers headers, bool more_trailers) {
  return {std::move(headers), more_trailers};
}

protocol::WebSocketAccept websocket_accept(std::optional<std::string> subprotocol, protocol::Headers headers) {
  return {std::move(subprotocol), std::move(headers)};
}

protocol::WebSocketSend websocket_text(std::string text) {
  protocol::WebSocketSend send;
  send.data = std::move(text);
  send.text = true;
  return send;
}

protocol::WebSocketSend websocket_bytes(std::string bytes) {
  protocol::WebSocketSend send;
  send.data = std::move(bytes);
  send.text = false;
  return send;
}

protocol::WebSocketClose websocket_close(int code, std::string reason) { return {code, std::move(reason)}; }

protocol::WebSocketHttpResponseStart denial_start(int status, protocol::Headers headers) {
  return {status, std::move(headers)};
}

protocol::WebSocketHttpResponseBody denial_body(std::string body, bool more_body) {
  return {std::move(body), more_body};
}

protocol::BroadcastSubscribe broadcast_subscribe(std::string channel) { return {std::move(channel)}; }

protocol::BroadcastUnsubscribe broadcast_unsubscribe(std::string channel) { return {std::move(channel)}; }

}  // namespace asgi_bridge::worker
