#pragma once
// Broadcast groups, in the spirit of Django Channels' groups: a WebSocket is
// added to named groups, and a message sent to a group reaches every member,
// in this worker process and in every other worker that shares a bus with
// it (docs/workers-cpp.md, "Chat rooms, and broadcasting across workers").
//
//   groups().add("lobby", ws);            // in on_connect, say
//   groups().send_text("lobby", "hi");    // from any thread
//
// Delivery is best effort, at most once, and in order per sender; a member's
// own messages reach it too. Members are kept weakly and leave every group
// when their websocket_app connection ends.
#include <memory>
#include <mutex>
#include <string>

#include "asgi_bridge/protocol/events.hpp"
#include "asgi_bridge/worker/websocket.hpp"

namespace asgi_bridge::worker {

namespace detail {
class GroupMembers;
class Worker;

// How groups reach other workers: implemented by the running worker, whose
// bus thread does the work. Called with the groups' lock held, so that
// subscriptions reach the bus in the order membership changed.
class GroupBus {
 public:
  virtual ~GroupBus() = default;
  virtual void publish(const std::string& group, protocol::WebSocketSend message) = 0;
  virtual void subscribe(const std::string& group) = 0;    // its first local member came
  virtual void unsubscribe(const std::string& group) = 0;  // its last local member left
};
}  // namespace detail

// Every method is thread-safe.
class Groups {
 public:
  Groups();
  ~Groups();
  Groups(const Groups&) = delete;
  Groups& operator=(const Groups&) = delete;

  void add(const std::string& group, const WebSocketPtr& member);
  void discard(const std::string& group, const WebSocketPtr& member);
  // Leaves every group (websocket_app does it when the connection ends).
  void discard_all(const WebSocket& member);
  // To every member: local ones at once (post_text/post_bytes), other
  // workers' through the bus.
  void send_text(const std::string& group, std::string text);
  void send_bytes(const std::string& group, std::string bytes);

 private:
  friend class detail::Worker;
  // The running worker connects itself (nullptr: local members only); the
  // groups that have members already are subscribed to.
  void attach(detail::GroupBus* bus);
  // A message from another worker: to the local members only.
  void deliver(const std::string& group, const protocol::WebSocketSend& message);
  void send(const std::string& group, protocol::WebSocketSend message);

  std::mutex mutex_;
  std::unique_ptr<detail::GroupMembers> members_;
  detail::GroupBus* bus_ = nullptr;
};

// The process's groups.
Groups& groups();

}  // namespace asgi_bridge::worker
