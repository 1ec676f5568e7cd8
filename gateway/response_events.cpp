#include "response_events.hpp"

#include "response_check.hpp"

namespace asgi_bridge::gateway {

namespace {

ResponseStep broken(const char* rule) { return {ResponseStep::Kind::violation, rule}; }

// An event in sequence: is it the one the response's phase allows?
ResponseStep classify_event(const protocol::Event& event, ResponsePhase phase) {
  using Kind = ResponseStep::Kind;
  if (std::holds_alternative<protocol::HttpResponseStart>(event)) {
    return phase == ResponsePhase::awaiting_start ? ResponseStep{Kind::start} : broken("a second http.response.start");
  }
  if (std::holds_alternative<protocol::HttpResponseBody>(event)) {
    return phase == ResponsePhase::started ? ResponseStep{Kind::body}
                                           : broken("http.response.body before http.response.start");
  }
  if (const auto* trailers = std::get_if<protocol::HttpResponseTrailers>(&event)) {
    if (phase != ResponsePhase::awaiting_trailers) return broken("http.response.trailers not announced or too early");
    if (!check_response_headers(trailers->headers).ok()) {
      return broken("http.response.trailers with a forbidden header name or value");
    }
    return {Kind::trailers};
  }
  return broken("an event that is not part of an HTTP response");
}

}  // namespace

ResponseStep classify_response_message(const WorkerMessage& reply, BusLink& link, ResponsePhase phase) {
  using protocol::Kind;
  if (reply.kind == Kind::credit) {
    return link.on_credit(reply.events) ? ResponseStep{ResponseStep::Kind::credit}
                                        : broken("a credit for events never sent");
  }
  if (reply.kind == Kind::error) return {ResponseStep::Kind::app_error};
  if (reply.kind != Kind::event || !reply.event) return {};
  if (!link.accept_sequence(reply)) return broken("event out of sequence");
  return classify_event(*reply.event, phase);
}

}  // namespace asgi_bridge::gateway
