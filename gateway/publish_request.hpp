#pragma once
// POST /publish on the admin endpoint (docs/broadcast.md): what a request
// asks to publish, or why it cannot. Two forms:
//   JSON   {"channel": "...", "text": "..."} or {"channel": "...", "bytes_b64": "..."}
//   raw    POST /publish?channel=NAME with the message as the body: a text
//          message when Content-Type is text/* (UTF-8), else binary.
#include <string>
#include <string_view>

#include "broadcast.hpp"

namespace asgi_bridge::gateway {

struct PublishParse {
  PublicationPtr publication;  // set when the request is good
  int status = 0;              // else 400 or 413
  std::string error;           // and why, for the caller
};

PublishParse parse_publish(std::string_view target, std::string_view content_type, std::string_view body,
                           std::size_t max_message_size);

// `Authorization: Bearer TOKEN`, compared in constant time.
bool bearer_matches(std::string_view authorization, std::string_view token);

}  // namespace asgi_bridge::gateway
