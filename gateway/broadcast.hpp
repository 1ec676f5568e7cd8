#pragma once
// Gateway-side broadcast (docs/broadcast.md): an app subscribes its own
// WebSocket to channels; a publish to a channel is written by the gateway to
// every subscribed socket, with no per-socket work in any worker.
//
// Each shard keeps the subscriptions of its own sockets, touched only on its
// thread: a publish reaches a shard once (one mailbox push), and the fan-out
// over that shard's subscribers takes no lock. The payload is built once per
// publish and shared, never copied per socket (docs/decisions.md, "Broadcast
// frames").
#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace asgi_bridge::gateway {

// One publish, shared by every socket it is queued to.
struct Publication {
  std::string channel;
  std::string data;
  bool text = true;
};
using PublicationPtr = std::shared_ptr<const Publication>;

// Why a publish cannot be fanned out (a bad channel name, a payload over
// --max-message-size, text that is not UTF-8); empty when it can.
std::string publication_problem(const Publication& publication, std::size_t max_message_size);

// The head of the WebSocket frame carrying a publish (RFC 6455 section 5.2):
// one unfragmented, unmasked text or binary frame. Server frames are never
// masked, so head and payload are the same bytes for every socket: encoded
// once per publish, written as they are.
struct FrameHead {
  std::array<unsigned char, 10> bytes{};
  std::size_t size = 0;
};
FrameHead frame_head(bool text, std::size_t size);
inline FrameHead frame_head(const Publication& publication) { return frame_head(publication.text, publication.data.size()); }

// What a subscribed socket must do with a publish: write it or queue it in
// order, or apply the slow-subscriber policy. Shard thread.
class BroadcastSubscriber {
 public:
  virtual ~BroadcastSubscriber() = default;
  virtual void deliver(const PublicationPtr& publication, const FrameHead& head) = 0;
};

class BroadcastRegistry {
 public:
  // Idempotent; a subscriber unsubscribes from all its channels before it is destroyed.
  void subscribe(const std::string& channel, BroadcastSubscriber* subscriber);
  void unsubscribe(const std::string& channel, BroadcastSubscriber* subscriber);
  // Hands the publish to every subscriber of its channel; returns how many.
  std::size_t fan_out(const PublicationPtr& publication);

 private:
  // A channel's subscribers in one array, walked in order by the fan-out (no
  // node to chase per socket, the next subscriber prefetched while the kernel
  // writes to this one); the index finds one to remove (swapped with the last).
  struct Subscribers {
    std::vector<BroadcastSubscriber*> list;
    std::unordered_map<BroadcastSubscriber*, std::size_t> index;
  };
  std::unordered_map<std::string, Subscribers> channels_;
};

}  // namespace asgi_bridge::gateway
