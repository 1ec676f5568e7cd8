#pragma once
// An HTTP/1.x request parser that keeps what Beast's request_parser loses:
// the header fields in their original order (Beast groups repeated names
// together), as the ASGI scope requires. The body is streamed into a buffer
// the caller lends for each read, as with http::buffer_body.
#include <cstring>
#include <string>

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>

#include "asgi_adapter.hpp"
#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::gateway {

class RequestParser final : public boost::beast::http::basic_parser<true> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::empty_body>;
  using string_view = boost::beast::string_view;
  using error_code = boost::beast::error_code;

  Request& request() { return request_; }
  // Lower-cased names, original order, repeats kept.
  protocol::Headers& headers() { return headers_; }

  // The next body bytes go to [data, data + size); body_bytes() tells how many came.
  void lend_body_buffer(char* data, std::size_t size) {
    body_data_ = data;
    body_space_ = size;
    body_used_ = 0;
  }
  std::size_t body_bytes() const { return body_used_; }

 private:
  void on_request_impl(boost::beast::http::verb method, string_view method_string, string_view target, int version,
                       error_code&) override {
    request_.target(target);
    if (method != boost::beast::http::verb::unknown) {
      request_.method(method);
    } else {
      request_.method_string(method_string);
    }
    request_.version(version);
  }
  void on_response_impl(int, string_view, int, error_code& ec) override {
    ec = boost::beast::http::error::bad_version;  // never called for a request parser
  }
  void on_field_impl(boost::beast::http::field name, string_view name_string, string_view value,
                     error_code&) override {
    // Trailer fields of a chunked body (Beast calls this for them too): ASGI
    // has no request trailers, and storing them would grow without bound.
    if (is_header_done()) return;
    insert_field(name, name_string, value);
    // Most requests have a handful of fields: one allocation, not one per doubling.
    if (headers_.capacity() == 0) headers_.reserve(k_usual_fields);
    headers_.push_back({lower(name_string), std::string(value)});
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(string_view body, error_code& ec) override { return take_body(body, ec); }
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) override {
    return take_body(body, ec);
  }
  void on_finish_impl(error_code&) override {}

  std::size_t take_body(string_view body, error_code& ec) {
    std::size_t n = std::min(body.size(), body_space_ - body_used_);
    // Bytes read straight into the lent buffer (HttpSession::read_body_in_place) are already in place.
    if (n > 0 && body.data() != body_data_ + body_used_) std::memcpy(body_data_ + body_used_, body.data(), n);
    body_used_ += n;
    if (n < body.size()) ec = boost::beast::http::error::need_buffer;
    return n;
  }

  // A list field split over several lines means what one line with the
  // values joined by commas means (RFC 9110 §5.3). Beast reads only the first
  // Connection, Upgrade or Sec-WebSocket-Extensions line (keep_alive(),
  // websocket::is_upgrade, the WebSocket handshake and its deflate offer), so
  // those are joined here; the scope's headers keep the lines as they came.
  void insert_field(boost::beast::http::field name, string_view name_string, string_view value) {
    using boost::beast::http::field;
    bool joined = name == field::connection || name == field::upgrade || name == field::sec_websocket_extensions;
    auto it = joined ? request_.find(name) : request_.end();
    if (it == request_.end()) {
      request_.insert(name, name_string, value);
      return;
    }
    std::string list(it->value());
    list.append(", ").append(value.data(), value.size());
    request_.set(name, list);
  }

  static constexpr std::size_t k_usual_fields = 8;

  Request request_;
  protocol::Headers headers_;
  char* body_data_ = nullptr;
  std::size_t body_space_ = 0;
  std::size_t body_used_ = 0;
};

}  // namespace asgi_bridge::gateway
