// The worker side of the Redis transport (docs/redis.md) against a real
// redis-server: where messages go, popping the shared queue no further than
// the free capacity, unblocking a pending pop when the worker drains, group
// pub/sub (subscriptions, again after a reconnect), what
// stop() still writes, and coming back after Redis itself went away.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <hiredis/hiredis.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "asgi_bridge/bus/transport.hpp"
#include "redis/redis_transport.hpp"
#include "redis/redis_url.hpp"

extern char** environ;

namespace asgi_bridge::bus {
namespace {

using namespace std::chrono_literals;

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

bool redis_server_installed() { return std::system("command -v redis-server >/dev/null 2>&1") == 0; }

// A private redis-server, and a synchronous client to look at it.
class Redis {
 public:
  explicit Redis(int port) : port_(port) { start(); }
  ~Redis() { kill(); }

  void start() {
    std::vector<std::string> args{"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"};
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    ASSERT_EQ(posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    for (int i = 0; i < 200; ++i) {
      client_.reset(redisConnect("127.0.0.1", port_));
      if (client_ && !client_->err) {
        auto pong = command({"PING"});
        if (pong && pong->type == REDIS_REPLY_STATUS) return;
      }
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "redis-server did not answer on port " << port_;
  }

  void kill() {
    client_.reset();
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  using Reply = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;
  Reply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const auto& arg : args) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    auto* reply = redisCommandArgv(client_.get(), static_cast<int>(args.size()), argv.data(), lengths.data());
    return Reply(static_cast<redisReply*>(reply), freeReplyObject);
  }
  long long integer(const std::vector<std::string>& args) {
    auto reply = command(args);
    return reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1000;
  }
  std::vector<std::string> list(const std::string& key) {
    std::vector<std::string> items;
    auto reply = command({"LRANGE", key, "0", "-1"});
    for (std::size_t i = 0; reply && i < reply->elements; ++i) {
      items.emplace_back(reply->element[i]->str, reply->element[i]->len);
    }
    return items;
  }

  int port() const { return port_; }
  std::string url(int db = 0, const std::string& credentials = "") const {
    return "redis://" + credentials + "127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }

 private:
  int port_;
  pid_t pid_ = -1;
  std::unique_ptr<redisContext, decltype(&redisFree)> client_{nullptr, redisFree};
};

class RedisTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!redis_server_installed()) GTEST_SKIP() << "redis-server is not installed";
    redis_ = std::make_unique<Redis>(free_port());
    log_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
    spdlog::drop("bus");
    auto logger = std::make_shared<spdlog::logger>("bus", log_);
    logger->set_level(spdlog::level::debug);
    spdlog::register_logger(logger);
  }
  void TearDown() override {
    transport_.reset();
    spdlog::drop("bus");
  }

  // A worker-side transport, started, that records what it receives.
  Transport& worker(const std::string& prefix = "asgi", int db = 0, const std::string& credentials = "") {
    TransportOptions options;
    options.role = Role::worker;
    options.identity = "wk-test";
    options.key_prefix = prefix;
    transport_ = std::make_unique<RedisTransport>(io_, parse_redis_url(redis_->url(db, credentials)), options);
    transport_->start([this](std::string_view peer, std::string_view payload) {
      EXPECT_TRUE(peer.empty());
      received_.emplace_back(payload);
      if (on_receive_) on_receive_();
    });
    return *transport_;
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 3s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {  // done() once per round: it may have effects (a send)
      if (done()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      io_.restart();
      io_.run_for(10ms);
    }
  }
  void run_for(std::chrono::milliseconds time) {
    run_until([] { return false; }, time);
  }
  // The shared queue's pop is blocking in Redis.
  bool popping(const std::string& key) {
    return run_until([&] {
      auto clients = redis_->command({"CLIENT", "LIST"});
      return clients && std::string(clients->str, clients->len).find("cmd=blmpop") != std::string::npos &&
             redis_->integer({"LLEN", key}) == 0;
    });
  }
  std::vector<std::string> logged() { return log_->last_formatted(); }

  boost::asio::io_context io_;
  std::unique_ptr<Redis> redis_;
  std::unique_ptr<RedisTransport> transport_;
  std::vector<std::string> received_;
  std::function<void()> on_receive_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log_;
};

TEST_F(RedisTransportTest, SendsToTheGatewayQueuesWithExpiry) {
  auto& transport = worker();
  ASSERT_TRUE(run_until([&] { return transport.send("gw-1", "probe") == SendStatus::sent; }));
  transport.send("gw-1", "second");
  transport.send("gw-2", "other");
  ASSERT_TRUE(run_until([&] { return redis_->integer({"LLEN", "asgi:{gw:gw-2}"}) == 1; }));
  run_for(50ms);
  EXPECT_EQ(redis_->list("asgi:{gw:gw-1}"), (std::vector<std::string>{"probe", "second"}));
  EXPECT_GT(redis_->integer({"PTTL", "asgi:{gw:gw-1}"}), 0);
  EXPECT_GT(redis_->integer({"PTTL", "asgi:{gw:gw-2}"}), 0);
}

TEST_F(RedisTransportTest, ReceivesFromItsOwnQueueUnderItsPrefix) {
  worker("custom");
  redis_->command({"RPUSH", "custom:{wk:wk-test}", "one", "two"});
  redis_->command({"RPUSH", "asgi:{wk:wk-test}", "not ours"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 2; }));
  EXPECT_EQ(received_, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(redis_->integer({"LLEN", "asgi:{wk:wk-test}"}), 1);
}

TEST_F(RedisTransportTest, PopsTheSharedQueueNoFurtherThanTheFreeCapacity) {
  auto& transport = worker();
  // As the worker does: each connection taken lowers the free capacity.
  std::size_t capacity = 0;
  on_receive_ = [&] { transport.set_free_capacity(capacity - std::min(capacity, received_.size())); };
  redis_->command({"RPUSH", "asgi:{new}", "c1", "c2", "c3", "c4", "c5"});
  run_for(300ms);
  EXPECT_TRUE(received_.empty()) << "popped with no free capacity";
  capacity = 2;
  transport.set_free_capacity(2);
  ASSERT_TRUE(run_until([&] { return received_.size() == 2; }));
  run_for(300ms);
  EXPECT_EQ(received_.size(), 2u);
  EXPECT_EQ(redis_->integer({"LLEN", "asgi:{new}"}), 3);
  capacity = 10;
  transport.set_free_capacity(8);
  ASSERT_TRUE(run_until([&] { return received_.size() == 5; }));
  EXPECT_EQ(received_, (std::vector<std::string>{"c1", "c2", "c3", "c4", "c5"}));
}

// HTTP requests wait in P:{new}, WebSockets in P:{new}:ws: a worker whose
// HTTP slots are full still takes WebSockets, and the reverse.
TEST_F(RedisTransportTest, TakesEachKindOfNewConnectionWhileItHasRoomForIt) {
  auto& transport = worker();
  redis_->command({"RPUSH", "asgi:{new}", "h1", "h2"});
  redis_->command({"RPUSH", "asgi:{new}:ws", "w1", "w2"});
  transport.set_free_capacity(0, 5);  // HTTP full
  ASSERT_TRUE(run_until([&] { return received_.size() == 2; }));
  run_for(300ms);
  EXPECT_EQ(received_, (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(redis_->integer({"LLEN", "asgi:{new}"}), 2);
  transport.set_free_capacity(5, 0);  // WebSockets full
  redis_->command({"RPUSH", "asgi:{new}:ws", "w3"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 4; }));
  run_for(300ms);
  EXPECT_EQ(received_, (std::vector<std::string>{"w1", "w2", "h1", "h2"}));
  EXPECT_EQ(redis_->list("asgi:{new}:ws"), std::vector<std::string>{"w3"});
}

TEST_F(RedisTransportTest, DrainingUnblocksThePendingPopOfTheSharedQueue) {
  auto& transport = worker();
  transport.set_free_capacity(3);
  ASSERT_TRUE(popping("asgi:{new}"));
  transport.set_free_capacity(0);  // the worker drains
  run_for(100ms);
  // A BLMPOP still blocking (for up to 1 s) would take this one.
  redis_->command({"RPUSH", "asgi:{new}", "too late"});
  run_for(1500ms);
  EXPECT_TRUE(received_.empty());
  EXPECT_EQ(redis_->list("asgi:{new}"), std::vector<std::string>{"too late"});
}

// The worker begins draining while a pop brings several new connections:
// those beyond its (now zero) free capacity go back to the head, in order.
TEST_F(RedisTransportTest, GivesBackWhatAPopBringsBeyondTheFreeCapacity) {
  auto& transport = worker();
  on_receive_ = [&] { transport.set_free_capacity(0); };
  redis_->command({"RPUSH", "asgi:{new}", "c1", "c2", "c3", "c4"});
  transport.set_free_capacity(3);  // one BLMPOP of c1, c2, c3
  ASSERT_TRUE(run_until([&] { return redis_->integer({"LLEN", "asgi:{new}"}) == 3; }));
  run_for(100ms);
  EXPECT_EQ(received_, std::vector<std::string>{"c1"});
  EXPECT_EQ(redis_->list("asgi:{new}"), (std::vector<std::string>{"c2", "c3", "c4"}));
}

TEST_F(RedisTransportTest, StopWritesWhatWasSentJustBefore) {
  auto& transport = worker();
  ASSERT_TRUE(run_until([&] { return transport.send("gw-1", "hello") == SendStatus::sent; }));
  run_for(50ms);
  transport.send("gw-1", "bye");  // a gateway says bye and stops in the same turn
  transport.stop();
  EXPECT_EQ(redis_->list("asgi:{gw:gw-1}"), (std::vector<std::string>{"hello", "bye"}));
  for (const auto& line : logged()) {
    EXPECT_EQ(line.find("unavailable"), std::string::npos) << line;
    EXPECT_EQ(line.find("lost"), std::string::npos) << line;
  }
  EXPECT_EQ(transport.send("gw-1", "after"), SendStatus::failed);
}

TEST_F(RedisTransportTest, ComesBackAfterRedisRestarts) {
  auto& transport = worker();
  transport.set_free_capacity(5);
  ASSERT_TRUE(popping("asgi:{new}"));
  redis_->kill();
  run_for(300ms);
  EXPECT_EQ(transport.send("gw-1", "while down"), SendStatus::failed);
  redis_->start();
  redis_->command({"RPUSH", "asgi:{new}", "first"});
  redis_->command({"RPUSH", "asgi:{wk:wk-test}", "later"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 2; }, 5s));
  ASSERT_TRUE(run_until([&] { return transport.send("gw-1", "back") == SendStatus::sent; }));
  ASSERT_TRUE(run_until([&] { return redis_->integer({"LLEN", "asgi:{gw:gw-1}"}) == 1; }));
}

// A connection whose AUTH (or SELECT) is refused, here because the password
// changed, used to stay open and never come up; it is retried with backoff.
TEST_F(RedisTransportTest, RetriesWhenTheServerRefusesTheCredentials) {
  redis_->command({"CONFIG", "SET", "requirepass", "old"});  // our client stays authenticated
  auto& transport = worker("asgi", 0, ":new@");
  run_for(300ms);
  EXPECT_EQ(transport.send("gw-1", "refused"), SendStatus::failed);
  redis_->command({"CONFIG", "SET", "requirepass", "new"});
  ASSERT_TRUE(run_until([&] { return transport.send("gw-1", "accepted") == SendStatus::sent; }, 6s));
  ASSERT_TRUE(run_until([&] { return redis_->integer({"LLEN", "asgi:{gw:gw-1}"}) == 1; }));
  auto lines = logged();
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(),
                          [](const std::string& line) { return line.find("AUTH failed") != std::string::npos; }))
      << ::testing::PrintToString(lines);
}

// An error answer to BLMPOP (here WRONGTYPE; in life LOADING, READONLY after
// a failover...) used to stop popping for good; it is retried on a new connection.
TEST_F(RedisTransportTest, KeepsPoppingAfterAnErrorAnswer) {
  redis_->command({"SET", "asgi:{new}", "not a list"});
  auto& transport = worker();
  transport.set_free_capacity(5);
  run_for(300ms);
  redis_->command({"DEL", "asgi:{new}"});
  redis_->command({"RPUSH", "asgi:{new}", "first"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 1; }, 5s));
}

// --- broadcast groups: pub/sub -------------------------------------------------------

// Subscribers of a group's channel, as Redis counts them.
long long subscribers(Redis& redis, const std::string& channel) {
  auto reply = redis.command({"PUBSUB", "NUMSUB", channel});
  return reply && reply->elements == 2 ? reply->element[1]->integer : -1;
}

TEST_F(RedisTransportTest, HearsAGroupOnlyWhileSubscribedToIt) {
  auto& transport = worker("asgi", 3);
  const std::string lobby = "asgi:group:3:{lobby}";  // the db is in the name: pub/sub ignores SELECT
  transport.subscribe("lobby");
  transport.subscribe("games");
  ASSERT_TRUE(run_until([&] { return subscribers(*redis_, lobby) == 1; }));
  ASSERT_TRUE(run_until([&] { return transport.publish("lobby", "ours") == SendStatus::sent; }));
  ASSERT_TRUE(run_until([&] { return received_.size() == 1; }));
  redis_->command({"PUBLISH", lobby, "theirs"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 2; }));
  EXPECT_EQ(received_, (std::vector<std::string>{"ours", "theirs"}));  // our own echo too: the worker drops it
  transport.unsubscribe("lobby");
  ASSERT_TRUE(run_until([&] { return subscribers(*redis_, lobby) == 0; }));
  redis_->command({"PUBLISH", lobby, "missed"});
  redis_->command({"PUBLISH", "asgi:group:3:{games}", "still subscribed"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 3; }));
  EXPECT_EQ(received_.back(), "still subscribed");  // one connection: in publish order
}

// hiredis forgets a channel when Redis confirms its UNSUBSCRIBE, even if it
// was subscribed again meanwhile: leaving and joining in one go must stick.
TEST_F(RedisTransportTest, LeavingAndJoiningAtOnceStaysSubscribed) {
  auto& transport = worker();
  const std::string lobby = "asgi:group:0:{lobby}";
  transport.subscribe("lobby");
  ASSERT_TRUE(run_until([&] { return subscribers(*redis_, lobby) == 1; }));
  transport.unsubscribe("lobby");
  transport.subscribe("lobby");
  run_for(100ms);
  redis_->command({"PUBLISH", lobby, "heard"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 1; }));
  EXPECT_EQ(received_[0], "heard");
}

TEST_F(RedisTransportTest, SubscribesAgainAfterRedisRestarts) {
  auto& transport = worker();
  const std::string lobby = "asgi:group:0:{lobby}";
  transport.subscribe("lobby");
  ASSERT_TRUE(run_until([&] { return subscribers(*redis_, lobby) == 1; }));
  redis_->kill();
  run_for(300ms);
  redis_->start();
  ASSERT_TRUE(run_until([&] { return subscribers(*redis_, lobby) == 1; }, 5s));
  redis_->command({"PUBLISH", lobby, "back"});
  ASSERT_TRUE(run_until([&] { return received_.size() == 1; }));
}

TEST(RedisUrl, MessagesAndLogsNeverShowThePassword) {
  EXPECT_EQ(redact_redis_url("redis://user:s3cret@h:1/2"), "redis://user:***@h:1/2");
  EXPECT_EQ(redact_redis_url("redis://:s3cret@h:1/2"), "redis://:***@h:1/2");
  EXPECT_EQ(redact_redis_url("redis://s3cret@h:1/2"), "redis://***@h:1/2");
  EXPECT_EQ(redact_redis_url("redis://h:1/2"), "redis://h:1/2");
  try {
    parse_redis_url("redis://:s3cret@h:notaport/0");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << e.what();
  }
}

TEST(RedisUrl, RedissMeansTls) {
  auto tls = parse_redis_url("rediss://u:p@redis.example:6380/3");
  EXPECT_TRUE(tls.tls);
  EXPECT_EQ(tls.host, "redis.example");
  EXPECT_EQ(tls.port, 6380);
  EXPECT_EQ(tls.db, 3);
  EXPECT_EQ(tls.password, "p");
  EXPECT_FALSE(parse_redis_url("redis://h:1/0").tls);
  EXPECT_THROW(parse_redis_url("redisss://h:1/0"), std::invalid_argument);
  EXPECT_EQ(redact_redis_url("rediss://user:s3cret@h:1/2"), "rediss://user:***@h:1/2");
}

}  // namespace
}  // namespace asgi_bridge::bus
