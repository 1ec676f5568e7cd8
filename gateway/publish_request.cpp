#include "publish_request.hpp"

#include <optional>

#include <boost/beast/core/detail/base64.hpp>
#include <nlohmann/json.hpp>

namespace asgi_bridge::gateway {
namespace {

using Json = nlohmann::json;

PublishParse refuse(int status, std::string error) { return {nullptr, status, std::move(error)}; }

// The value of `name` in the query string, as sent (channel names need no
// percent-encoding; one with '%' is refused as a bad name); nullopt when absent.
std::optional<std::string> query_value(std::string_view target, std::string_view name) {
  auto question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  auto query = target.substr(question + 1);
  for (;;) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return std::string(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (amp == std::string_view::npos) return std::nullopt;
    query.remove_prefix(amp + 1);
  }
}

// Padded standard base64, nothing else.
bool decode_base64(std::string_view text, std::string& out) {
  namespace base64 = boost::beast::detail::base64;
  if (text.size() % 4 != 0) return false;
  std::size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  out.resize(base64::decoded_size(text.size()));
  auto [written, read] = base64::decode(out.data(), text.data(), text.size());
  if (read != text.size() - padding) return false;
  out.resize(written);
  return true;
}

PublishParse finish(Publication publication, std::size_t max_message_size) {
  auto problem = publication_problem(publication, max_message_size);
  if (!problem.empty()) return refuse(publication.data.size() > max_message_size ? 413 : 400, problem);
  return {std::make_shared<const Publication>(std::move(publication)), 0, {}};
}

PublishParse parse_json(std::string_view body, std::size_t max_message_size) {
  Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return refuse(400, "body must be a JSON object {\"channel\": ..., \"text\" or \"bytes_b64\": ...}, "
                       "or use ?channel=NAME with the message as the body");
  }
  auto channel = json.find("channel");
  if (channel == json.end() || !channel->is_string()) return refuse(400, "\"channel\" (a string) is missing");
  auto text = json.find("text");
  auto bytes = json.find("bytes_b64");
  if ((text == json.end()) == (bytes == json.end())) return refuse(400, "give exactly one of \"text\" and \"bytes_b64\"");
  Publication publication;
  publication.channel = channel->get<std::string>();
  if (text != json.end()) {
    if (!text->is_string()) return refuse(400, "\"text\" must be a string");
    publication.data = text->get<std::string>();
  } else {
    if (!bytes->is_string() || !decode_base64(bytes->get_ref<const std::string&>(), publication.data)) {
      return refuse(400, "\"bytes_b64\" must be a padded base64 string");
    }
    publication.text = false;
  }
  return finish(std::move(publication), max_message_size);
}

}  // namespace

PublishParse parse_publish(std::string_view target, std::string_view content_type, std::string_view body,
                           std::size_t max_message_size) {
  auto channel = query_value(target, "channel");
  if (!channel) return parse_json(body, max_message_size);
  Publication publication;
  publication.channel = std::move(*channel);
  publication.data = std::string(body);
  publication.text = content_type.substr(0, 5) == "text/";
  return finish(std::move(publication), max_message_size);
}

bool bearer_matches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.substr(0, scheme.size()) != scheme) return false;
  auto given = authorization.substr(scheme.size());
  if (given.size() != token.size()) return false;
  unsigned char difference = 0;
  for (std::size_t i = 0; i < token.size(); ++i) {
    difference |= static_cast<unsigned char>(given[i] ^ token[i]);
  }
  return difference == 0;
}

}  // namespace asgi_bridge::gateway
