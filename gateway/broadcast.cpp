#include "broadcast.hpp"

#include <cstdint>

#include <fmt/format.h>

#include "asgi_bridge/protocol/events.hpp"

namespace asgi_bridge::gateway {

std::string publication_problem(const Publication& publication, std::size_t max_message_size) {
  if (!protocol::is_valid_channel(publication.channel)) {
    return "channel must be 1-128 bytes of letters, digits and - _ . : / @";
  }
  if (publication.data.size() > max_message_size) {
    return fmt::format("message of {} bytes is over --max-message-size ({})", publication.data.size(),
                       max_message_size);
  }
  if (publication.text && !protocol::is_valid_text(publication.data)) return "text message is not valid UTF-8";
  return {};
}

FrameHead frame_head(bool text, std::size_t payload_size) {
  FrameHead head;
  auto& b = head.bytes;
  b[0] = 0x80 | (text ? 0x1 : 0x2);  // FIN, opcode
  auto size = static_cast<std::uint64_t>(payload_size);
  if (size < 126) {
    b[1] = static_cast<unsigned char>(size);
    head.size = 2;
  } else if (size <= 0xffff) {
    b[1] = 126;
    b[2] = static_cast<unsigned char>(size >> 8);
    b[3] = static_cast<unsigned char>(size);
    head.size = 4;
  } else {
    b[1] = 127;
    for (int i = 0; i < 8; ++i) b[2 + i] = static_cast<unsigned char>(size >> (56 - 8 * i));
    head.size = 10;
  }
  return head;
}

void BroadcastRegistry::subscribe(const std::string& channel, BroadcastSubscriber* subscriber) {
  auto& subscribers = channels_[channel];
  if (!subscribers.index.emplace(subscriber, subscribers.list.size()).second) return;
  subscribers.list.push_back(subscriber);
}

void BroadcastRegistry::unsubscribe(const std::string& channel, BroadcastSubscriber* subscriber) {
  auto it = channels_.find(channel);
  if (it == channels_.end()) return;
  auto& [list, index] = it->second;
  auto found = index.find(subscriber);
  if (found == index.end()) return;
  auto last = list.back();
  list[found->second] = last;
  index[last] = found->second;
  list.pop_back();
  index.erase(subscriber);
  if (list.empty()) channels_.erase(it);  // a channel with nobody left costs nothing
}

std::size_t BroadcastRegistry::fan_out(const PublicationPtr& publication) {
  auto it = channels_.find(publication->channel);
  if (it == channels_.end()) return 0;
  auto head = frame_head(*publication);
  // deliver() never subscribes nor unsubscribes: the list is stable during the loop.
  const auto& list = it->second.list;
  for (std::size_t i = 0; i < list.size(); ++i) {
    // Each socket's write is microseconds of kernel work: time enough to bring
    // the next subscriber's object into the cache, a miss otherwise.
    if (i + 1 < list.size()) __builtin_prefetch(list[i + 1]);
    list[i]->deliver(publication, head);
  }
  return list.size();
}

}  // namespace asgi_bridge::gateway
