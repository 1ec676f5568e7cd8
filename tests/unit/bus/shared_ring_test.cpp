// Same-host shared memory (docs/protocol.md §1.1): the 0xC1 frames, the ring
// (round trip, wrap, full, a hostile tail), every check of the consumer's
// mapping and references, and the offer/accept exchange of two SameHostRings
// wired back to back in one process (/proc/self/fd/N is a real mapping).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "zmq/ring_frame.hpp"
#include "zmq/same_host_rings.hpp"
#include "zmq/shared_ring.hpp"

namespace asgi_bridge::bus::shm {
namespace {

constexpr std::uint64_t k_capacity = 64 * 1024;

std::string bytes_of(std::size_t size, char seed) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i * 7));
  return s;
}

// --- frames ------------------------------------------------------------------

TEST(RingFrame, ReferenceRoundTrip) {
  RingFrame frame;
  frame.pid = 123456;
  frame.fd = 7;
  for (std::size_t i = 0; i < frame.token.size(); ++i) frame.token[i] = static_cast<unsigned char>(i * 17);
  frame.capacity = 1 << 20;
  frame.position = 0x0102030405060708ULL;
  frame.length = 65536;
  auto bytes = encode_reference(frame);
  ASSERT_EQ(bytes.size(), 46u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0xC1);
  EXPECT_EQ(bytes[1], 'R');
  // pid at 2, fd at 6, token at 10, capacity at 26, position at 34, length at 42; little-endian.
  EXPECT_EQ(static_cast<unsigned char>(bytes[2]), 0x40);  // 123456 = 0x01E240
  EXPECT_EQ(static_cast<unsigned char>(bytes[6]), 7);
  EXPECT_EQ(static_cast<unsigned char>(bytes[11]), 17);
  EXPECT_EQ(static_cast<unsigned char>(bytes[28]), 0x10);  // 1 << 20
  EXPECT_EQ(static_cast<unsigned char>(bytes[34]), 0x08);
  EXPECT_EQ(static_cast<unsigned char>(bytes[41]), 0x01);
  EXPECT_EQ(static_cast<unsigned char>(bytes[44]), 0x01);  // 65536
  auto parsed = parse_frame(view(bytes));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->type, FrameType::reference);
  EXPECT_EQ(parsed->pid, frame.pid);
  EXPECT_EQ(parsed->fd, frame.fd);
  EXPECT_EQ(parsed->token, frame.token);
  EXPECT_EQ(parsed->capacity, frame.capacity);
  EXPECT_EQ(parsed->position, frame.position);
  EXPECT_EQ(parsed->length, frame.length);
}

TEST(RingFrame, AnswersRoundTrip) {
  Token token{};
  token[0] = 1;
  token[15] = 2;
  for (auto type : {FrameType::accept, FrameType::refuse}) {
    auto bytes = encode_answer(type, token);
    ASSERT_EQ(bytes.size(), 18u);
    auto parsed = parse_frame(view(bytes));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->type, type);
    EXPECT_EQ(parsed->token, token);
  }
}

TEST(RingFrame, MalformedFramesAreRefused) {
  Token token{};
  auto accept = encode_answer(FrameType::accept, token);
  auto reference = encode_reference(RingFrame{});
  EXPECT_FALSE(parse_frame(view(accept).substr(0, 17)));
  EXPECT_FALSE(parse_frame(std::string(view(accept)) + "x"));
  EXPECT_FALSE(parse_frame(view(reference).substr(0, 45)));
  EXPECT_FALSE(parse_frame(std::string("\xC1", 1)));
  EXPECT_FALSE(parse_frame(std::string("\xC1Z", 2) + std::string(16, '\0')));
  EXPECT_FALSE(parse_frame(std::string("\x81\xA1", 2) + std::string(16, '\0')));  // msgpack, not ours
}

// --- the ring ------------------------------------------------------------------

// A second mapping of a ring's file, as a hostile peer would have it.
struct Poke {
  explicit Poke(const RingFrame& frame) {
    auto path = "/proc/self/fd/" + std::to_string(frame.fd);
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    size = k_header_size + frame.capacity;
    base = static_cast<unsigned char*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  }
  ~Poke() {
    ::munmap(base, size);
    ::close(fd);
  }
  void set_tail(std::uint64_t tail) { std::memcpy(base + 64, &tail, sizeof tail); }
  int fd;
  std::size_t size;
  unsigned char* base;
};

std::unique_ptr<ConsumerRing> map_ok(const RingFrame& frame) {
  std::string error;
  auto ring = ConsumerRing::map(frame, error);
  EXPECT_TRUE(ring) << error;
  return ring;
}

std::string take_ok(ConsumerRing& ring, const RingFrame& reference, std::uint64_t limit = 1 << 30) {
  std::string error;
  auto message = ring.take(reference, limit, error);
  EXPECT_TRUE(error.empty()) << error;
  return std::string(message);
}

std::string take_error(ConsumerRing& ring, const RingFrame& reference, std::uint64_t limit = 1 << 30) {
  std::string error;
  auto message = ring.take(reference, limit, error);
  EXPECT_TRUE(message.empty());
  return error;
}

TEST(SharedRing, LentMessageKeepsItsRoomUntilGivenBack) {
  ProducerRing producer(k_capacity);
  auto consumer = map_ok(producer.offer());
  ASSERT_TRUE(consumer);
  RingFrame reference;
  auto first = bytes_of(40000, 'a');
  ASSERT_EQ(producer.write(first, reference), ProducerRing::Write::written);
  std::string error;
  auto lent = consumer->lend(reference, 1 << 30, error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(lent, first);
  RingFrame second;
  EXPECT_EQ(producer.write(bytes_of(40000, 'b'), second), ProducerRing::Write::full);
  EXPECT_FALSE(consumer->lend(reference, 1 << 30, error).data()) << "lent once only";
  consumer->give_back();
  ASSERT_EQ(producer.write(bytes_of(40000, 'b'), second), ProducerRing::Write::written);
  EXPECT_EQ(take_ok(*consumer, second), bytes_of(40000, 'b'));
}

// A message in pieces is their concatenation in the ring.
TEST(SharedRing, PiecesAreWrittenAsOneMessage) {
  ProducerRing producer(k_capacity);
  auto consumer = map_ok(producer.offer());
  ASSERT_TRUE(consumer);
  auto head = bytes_of(100, 'h'), body = bytes_of(30000, 'b'), tail = bytes_of(7, 't');
  const std::string_view pieces[] = {head, body, "", tail};
  RingFrame reference;
  ASSERT_EQ(producer.write(pieces, reference), ProducerRing::Write::written);
  EXPECT_EQ(reference.length, head.size() + body.size() + tail.size());
  EXPECT_EQ(take_ok(*consumer, reference), head + body + tail);
}

TEST(SharedRing, RoundTrip) {
  ProducerRing producer(k_capacity);
  auto consumer = map_ok(producer.offer());
  ASSERT_TRUE(consumer);
  for (int i = 0; i < 10; ++i) {
    auto message = bytes_of(20000 + static_cast<std::size_t>(i), static_cast<char>(i));
    RingFrame reference;
    ASSERT_EQ(producer.write(message, reference), ProducerRing::Write::written) << i;
    EXPECT_EQ(reference.length, message.size());
    EXPECT_EQ(take_ok(*consumer, reference), message) << i;
  }
}

TEST(SharedRing, AMessageNeverStraddlesTheEnd) {
  ProducerRing producer(k_capacity);
  auto consumer = map_ok(producer.offer());
  auto first = bytes_of(40000, 'a');
  auto second = bytes_of(40000, 'b');
  RingFrame reference;
  ASSERT_EQ(producer.write(first, reference), ProducerRing::Write::written);
  EXPECT_EQ(reference.position, 0u);
  EXPECT_EQ(take_ok(*consumer, reference), first);
  ASSERT_EQ(producer.write(second, reference), ProducerRing::Write::written);
  EXPECT_EQ(reference.position, k_capacity);  // moved up to the next lap, not split across the end
  EXPECT_EQ(take_ok(*consumer, reference), second);
}

TEST(SharedRing, FullUntilTheConsumerTakes) {
  ProducerRing producer(k_capacity);
  auto consumer = map_ok(producer.offer());
  auto message = bytes_of(30000, 'x');
  RingFrame first, second, third;
  ASSERT_EQ(producer.write(message, first), ProducerRing::Write::written);
  ASSERT_EQ(producer.write(message, second), ProducerRing::Write::written);
  EXPECT_EQ(producer.write(message, third), ProducerRing::Write::full);
  EXPECT_EQ(producer.write(bytes_of(k_capacity + 1, 'y'), third), ProducerRing::Write::full);
  EXPECT_EQ(take_ok(*consumer, first), message);
  ASSERT_EQ(producer.write(message, third), ProducerRing::Write::written);  // room again
  EXPECT_EQ(take_ok(*consumer, second), message);
  EXPECT_EQ(take_ok(*consumer, third), message);
}

TEST(SharedRing, AHostileTailStopsTheRing) {
  {
    ProducerRing producer(k_capacity);
    Poke poke(producer.offer());
    RingFrame reference;
    ASSERT_EQ(producer.write(bytes_of(20000, 'a'), reference), ProducerRing::Write::written);
    poke.set_tail(20001);  // t > h
    EXPECT_EQ(producer.write(bytes_of(20000, 'b'), reference), ProducerRing::Write::broken);
  }
  {
    ProducerRing producer(k_capacity);
    auto consumer = map_ok(producer.offer());
    RingFrame reference;
    for (int i = 0; i < 8; ++i) {  // h: 8 x 30000, several laps
      ASSERT_EQ(producer.write(bytes_of(30000, 'a'), reference), ProducerRing::Write::written);
      take_ok(*consumer, reference);
    }
    Poke poke(producer.offer());
    poke.set_tail(0);  // h - t > capacity
    EXPECT_EQ(producer.write(bytes_of(20000, 'b'), reference), ProducerRing::Write::broken);
  }
}

TEST(SharedRing, TheConsumerChecksEveryReferenceAgainstItsOwnPosition) {
  ProducerRing producer(k_capacity);
  auto consumer = map_ok(producer.offer());
  RingFrame reference;
  ASSERT_EQ(producer.write(bytes_of(20000, 'a'), reference), ProducerRing::Write::written);
  auto taken = reference;
  take_ok(*consumer, taken);  // c = 20000

  auto behind = taken;  // p < c: the same message again
  EXPECT_NE(take_error(*consumer, behind).find("behind"), std::string::npos);
  auto far = taken;  // p - c >= capacity
  far.position = 20000 + k_capacity;
  far.length = 100;
  EXPECT_NE(take_error(*consumer, far).find("ahead"), std::string::npos);
  auto straddling = taken;  // (p mod capacity) + length > capacity
  straddling.position = k_capacity - 10;
  straddling.length = 100;
  EXPECT_NE(take_error(*consumer, straddling).find("end"), std::string::npos);
  auto huge = taken;  // length > the limit
  huge.position = 20000;
  huge.length = 30000;
  EXPECT_NE(take_error(*consumer, huge, 29999).find("limit"), std::string::npos);
  huge.length = 0xFFFFFFFF;
  EXPECT_FALSE(take_error(*consumer, huge).empty());

  // None of them moved our position: the next real message is taken.
  auto message = bytes_of(20000, 'b');
  ASSERT_EQ(producer.write(message, reference), ProducerRing::Write::written);
  EXPECT_EQ(take_ok(*consumer, reference), message);
}

// --- mapping refusals ----------------------------------------------------------

// A file built by hand: `size` bytes, sealed or not, with this header.
struct HandMadeRing {
  HandMadeRing(std::uint64_t size, bool sealed, const char* magic, std::uint64_t capacity) {
    fd = ::memfd_create("test-ring", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    if (sealed) {
      EXPECT_EQ(::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    }
    for (std::size_t i = 0; i < token.size(); ++i) token[i] = static_cast<unsigned char>(i + 1);
    char header[32] = {};
    std::memcpy(header, magic, 8);
    std::memcpy(header + 8, token.data(), token.size());
    std::memcpy(header + 24, &capacity, sizeof capacity);
    EXPECT_EQ(::pwrite(fd, header, sizeof header, 0), static_cast<ssize_t>(sizeof header));
  }
  ~HandMadeRing() { ::close(fd); }
  RingFrame offer(std::uint64_t capacity = k_capacity) const {
    RingFrame frame;
    frame.pid = static_cast<std::uint32_t>(::getpid());
    frame.fd = static_cast<std::uint32_t>(fd);
    frame.token = token;
    frame.capacity = capacity;
    return frame;
  }
  int fd;
  Token token{};
};

std::string map_error(const RingFrame& frame) {
  std::string error;
  auto ring = ConsumerRing::map(frame, error);
  EXPECT_FALSE(ring);
  return error;
}

constexpr const char* k_magic = "ABRING1";  // with its \0, 8 bytes

TEST(SharedRingMapping, AGoodHandMadeRingMaps) {
  HandMadeRing ring(k_header_size + k_capacity, true, k_magic, k_capacity);
  map_ok(ring.offer());
}

TEST(SharedRingMapping, WrongToken) {
  HandMadeRing ring(k_header_size + k_capacity, true, k_magic, k_capacity);
  auto frame = ring.offer();
  frame.token[3] ^= 1;
  EXPECT_NE(map_error(frame).find("token"), std::string::npos);
}

TEST(SharedRingMapping, WrongMagic) {
  HandMadeRing ring(k_header_size + k_capacity, true, "ABRING2", k_capacity);
  EXPECT_NE(map_error(ring.offer()).find("magic"), std::string::npos);
}

TEST(SharedRingMapping, WrongSize) {
  HandMadeRing ring(k_header_size + k_capacity / 2, true, k_magic, k_capacity);
  EXPECT_NE(map_error(ring.offer()).find("bytes"), std::string::npos);
  HandMadeRing header_says_other(k_header_size + k_capacity, true, k_magic, 2 * k_capacity);
  EXPECT_NE(map_error(header_says_other.offer()).find("capacity"), std::string::npos);
}

TEST(SharedRingMapping, Unsealed) {
  HandMadeRing ring(k_header_size + k_capacity, false, k_magic, k_capacity);
  EXPECT_NE(map_error(ring.offer()).find("sealed"), std::string::npos);
}

TEST(SharedRingMapping, CapacityOutOfBounds) {
  for (std::uint64_t capacity : {std::uint64_t{0}, std::uint64_t{32768}, std::uint64_t{65537},
                                 std::uint64_t{128} << 20, ~std::uint64_t{0}}) {
    HandMadeRing ring(4096 + 65536, true, k_magic, capacity);
    EXPECT_NE(map_error(ring.offer(capacity)).find("out of bounds"), std::string::npos) << capacity;
  }
}

TEST(SharedRingMapping, NotARegularFile) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  RingFrame frame;
  frame.pid = static_cast<std::uint32_t>(::getpid());
  frame.fd = static_cast<std::uint32_t>(pipe_fds[0]);
  frame.capacity = k_capacity;
  EXPECT_NE(map_error(frame).find("regular file"), std::string::npos);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(SharedRingMapping, NoSuchProcessOrDescriptor) {
  ProducerRing producer(k_capacity);
  auto frame = producer.offer();
  frame.fd = 1000000;
  EXPECT_NE(map_error(frame).find("cannot open"), std::string::npos);
  frame = producer.offer();
  frame.pid = 0x7FFFFFFF;
  EXPECT_NE(map_error(frame).find("cannot open"), std::string::npos);
}

TEST(SharedRingCapacity, TheOptionsRule) {
  EXPECT_EQ(shared_memory_problem("0"), "");
  EXPECT_EQ(shared_memory_problem("65536"), "");
  EXPECT_EQ(shared_memory_problem("1048576"), "");
  EXPECT_EQ(shared_memory_problem("67108864"), "");
  for (auto bad : {"1", "32768", "65537", "100000", "134217728", "-65536", "1e6", "", "1MiB"}) {
    EXPECT_NE(shared_memory_problem(bad).find("power of two"), std::string::npos) << bad;
  }
}

// --- two sides back to back ------------------------------------------------------

// A worker's and a gateway's rings, each one's frames queued for the other.
struct Pair {
  std::deque<std::string> to_gateway, to_worker;
  SharedMemoryCounters gateway_counters, worker_counters;
  SameHostRings worker{Role::worker, k_capacity, 0, &worker_counters,
                       [this](std::string_view, std::string_view frame) { to_gateway.emplace_back(frame); }};
  SameHostRings gateway;
  explicit Pair(std::uint64_t gateway_capacity = k_capacity)
      : gateway(Role::gateway, gateway_capacity, 100000, &gateway_counters,
                [this](std::string_view peer, std::string_view frame) {
                  EXPECT_EQ(peer, "w1");
                  to_worker.emplace_back(frame);
                }) {}

  // Delivers every queued frame; returns the messages copied out.
  std::vector<std::string> exchange() {
    std::vector<std::string> delivered;
    while (!to_gateway.empty() || !to_worker.empty()) {
      while (!to_gateway.empty()) {
        auto frame = std::move(to_gateway.front());
        to_gateway.pop_front();
        if (auto message = gateway.receive("w1", frame)) delivered.emplace_back(*message);
      }
      while (!to_worker.empty()) {
        auto frame = std::move(to_worker.front());
        to_worker.pop_front();
        if (auto message = worker.receive("", frame)) delivered.emplace_back(*message);
        worker.done_with_message();
      }
    }
    return delivered;
  }
};

TEST(SameHostRings, OfferAcceptThenBothWays) {
  Pair pair;
  auto message = bytes_of(20000, 'm');
  EXPECT_FALSE(pair.worker.reference("", message));  // not accepted yet: over the socket
  pair.worker.offer("");
  EXPECT_TRUE(pair.exchange().empty());  // offer, A + the gateway's offer, A
  auto reference = pair.worker.reference("", message);
  ASSERT_TRUE(reference);
  pair.to_gateway.emplace_back(view(*reference));
  auto delivered = pair.exchange();
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0], message);
  EXPECT_EQ(pair.gateway_counters.received_messages.load(), 1u);
  EXPECT_EQ(pair.gateway_counters.received_bytes.load(), message.size());

  reference = pair.gateway.reference("w1", message);
  ASSERT_TRUE(reference);
  pair.to_worker.emplace_back(view(*reference));
  delivered = pair.exchange();
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0], message);
  EXPECT_EQ(pair.worker_counters.received_messages.load(), 1u);

  pair.gateway.forget("w1");  // the worker's connection closed
  EXPECT_FALSE(pair.gateway.reference("w1", message));
}

// The gateway copies a worker's message out (its room is free at once); a
// worker reads the gateway's in place, and its room stays taken until the
// worker is done with it.
TEST(SameHostRings, WorkerReadsInPlaceGatewayCopiesOut) {
  Pair pair;
  pair.worker.offer("");
  pair.exchange();
  auto big = bytes_of(40000, 'g');  // two do not fit in the ring together
  for (int i = 0; i < 3; ++i) {
    auto reference = pair.worker.reference("", big);
    ASSERT_TRUE(reference) << i;
    auto message = pair.gateway.receive("w1", view(*reference));
    ASSERT_TRUE(message);
    EXPECT_EQ(*message, big);
  }
  auto reference = pair.gateway.reference("w1", big);
  ASSERT_TRUE(reference);
  auto message = pair.worker.receive("", view(*reference));
  ASSERT_TRUE(message);
  EXPECT_EQ(*message, big);
  EXPECT_FALSE(pair.gateway.reference("w1", big)) << "the worker still reads the first";
  pair.worker.done_with_message();
  reference = pair.gateway.reference("w1", big);
  ASSERT_TRUE(reference);
  message = pair.worker.receive("", view(*reference));
  ASSERT_TRUE(message);
  EXPECT_EQ(*message, big);
  pair.worker.done_with_message();
}

TEST(SameHostRings, FullFallsBackToTheSocket) {
  Pair pair;
  pair.worker.offer("");
  pair.exchange();
  auto message = bytes_of(30000, 'f');
  EXPECT_TRUE(pair.worker.reference("", message));
  EXPECT_TRUE(pair.worker.reference("", message));
  EXPECT_FALSE(pair.worker.reference("", message));  // nobody took them yet
}

TEST(SameHostRings, AGatewayWithoutRingStillMapsTheWorkers) {
  Pair pair(0);
  pair.worker.offer("");
  pair.exchange();
  auto message = bytes_of(20000, 'n');
  EXPECT_TRUE(pair.worker.reference("", message));
  EXPECT_FALSE(pair.gateway.reference("w1", message));  // no ring of its own, no offer
}

TEST(SameHostRings, ARefusedRingIsNeverUsed) {
  Pair pair;
  pair.worker.offer("");
  ASSERT_EQ(pair.to_gateway.size(), 1u);
  auto offer = parse_frame(pair.to_gateway.front());
  ASSERT_TRUE(offer);
  pair.to_gateway.clear();
  pair.to_worker.emplace_back(view(encode_answer(FrameType::refuse, offer->token)));
  pair.exchange();
  EXPECT_FALSE(pair.worker.reference("", bytes_of(20000, 'r')));
  pair.to_worker.emplace_back(view(encode_answer(FrameType::accept, offer->token)));  // too late
  pair.exchange();
  EXPECT_FALSE(pair.worker.reference("", bytes_of(20000, 'r')));
}

TEST(SameHostRings, AnUnmappableOfferIsRefusedAndABadReferenceDropped) {
  Pair pair;
  RingFrame bogus;
  bogus.pid = static_cast<std::uint32_t>(::getpid());
  bogus.fd = 1000000;
  bogus.capacity = k_capacity;
  bogus.length = 20000;
  pair.to_gateway.emplace_back(view(encode_reference(bogus)));
  EXPECT_TRUE(pair.exchange().empty());
  // The gateway answered X (consumed by the worker, whose ring it was not).
  pair.worker.offer("");
  pair.exchange();
  auto reference = pair.worker.reference("", bytes_of(20000, 'b'));
  ASSERT_TRUE(reference);
  auto frame = *parse_frame(view(*reference));
  frame.length = 200000;  // over the gateway's limit (100000)
  pair.to_gateway.emplace_back(view(encode_reference(frame)));
  EXPECT_TRUE(pair.exchange().empty());
  pair.to_gateway.emplace_back("\xC1" "R", 2);  // malformed
  EXPECT_TRUE(pair.exchange().empty());
  pair.to_gateway.emplace_back(view(*reference));  // the real one still passes
  EXPECT_EQ(pair.exchange().size(), 1u);
}

}  // namespace
}  // namespace asgi_bridge::bus::shm
