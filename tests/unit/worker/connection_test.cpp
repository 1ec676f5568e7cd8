// One connection's receive/send, state machines, credits and byte window, on
// a bare io_context: what the app does runs when the test polls, and what the
// SDK would put on the bus lands in `out`.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "asgi_bridge/worker/app.hpp"
#include "asgi_bridge/worker/events.hpp"
#include "connection.hpp"

namespace asgi_bridge::worker::detail {
namespace {

using boost::asio::awaitable;
using protocol::Envelope;
using protocol::Event;
using protocol::Kind;

class Harness {
 public:
  Harness(protocol::ScopeType type, Event first, std::uint64_t window = protocol::k_default_byte_window,
          std::uint64_t features = 0) {
    protocol::Scope scope;
    scope.type = type;
    scope.path = "/";
    if (type == protocol::ScopeType::http) scope.method = "GET";
    connection = Connection::create(io.get_executor(), std::move(scope), std::move(first),
                                    ConnectionInfo{"gw-1", "wk-1", 7, window, features},
                                    [this](Envelope envelope) { out.push_back(std::move(envelope)); });
  }

  // Starts the app and runs it as far as it goes without the test.
  void start(App app_function) {
    app = std::move(app_function);
    boost::asio::co_spawn(io, connection->run(app), [this](std::exception_ptr) { finished = true; });
    poll();
  }
  void poll() {
    io.restart();
    io.poll();
  }

  // The events the SDK sent, in order.
  std::vector<Event> events() const {
    std::vector<Event> result;
    for (const auto& envelope : out) {
      if (envelope.kind == Kind::event) result.push_back(*envelope.event);
    }
    return result;
  }
  std::vector<std::string> errors() const {
    std::vector<std::string> result;
    for (const auto& envelope : out) {
      if (envelope.kind == Kind::error) result.push_back(envelope.message.value_or(""));
    }
    return result;
  }
  std::vector<std::uint64_t> credits() const {
    std::vector<std::uint64_t> result;
    for (const auto& envelope : out) {
      if (envelope.kind == Kind::credit) result.push_back(envelope.events.value_or(0));
    }
    return result;
  }

  boost::asio::io_context io;
  std::shared_ptr<Connection> connection;
  std::vector<Envelope> out;
  App app;
  bool finished = false;
};

Harness http(std::uint64_t window = protocol::k_default_byte_window, std::uint64_t features = 0) {
  return Harness(protocol::ScopeType::http, protocol::HttpRequest{"", false}, window, features);
}

// A connection whose gateway takes a start with its first body (docs/protocol.md §2.5).
Harness http_offering_start_body(std::uint64_t window = protocol::k_default_byte_window) {
  return http(window, protocol::k_feature_start_body);
}

// Events come from the SDK's builders (asgi_bridge/worker/events.hpp): GCC 12
// mishandles braced temporaries inside co_await expressions.
protocol::HttpResponseStart start_200() { return response_start(200, {{"content-type", "text/plain"}}); }
protocol::HttpResponseBody body(std::string data, bool more = false) { return response_body(std::move(data), more); }
protocol::HttpResponseTrailers trailers() { return response_trailers({{"x-checksum", "1"}}); }
protocol::WebSocketSend text(std::string data) { return websocket_text(std::move(data)); }

template <typename T>
bool is(const Event& event) {
  return std::holds_alternative<T>(event);
}

// Runs `action`, returns what it threw as "Type: what", or "" if nothing.
template <typename Action>
awaitable<std::string> thrown(Action action) {
  try {
    co_await action();
  } catch (const UnexpectedMessage& e) {
    co_return std::string("UnexpectedMessage: ") + e.what();
  } catch (const ClientDisconnected& e) {
    co_return std::string("ClientDisconnected: ") + e.what();
  } catch (const InvalidEvent& e) {
    co_return std::string("InvalidEvent: ") + e.what();
  }
  co_return "";
}

// --- HTTP state machine --------------------------------------------------------

TEST(HttpConnection, BodyBeforeStartRaisesInTheApp) {
  auto h = http();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    error = co_await thrown([&] { return send(body("too early")); });
    co_await send(start_200());
    co_await send(body("ok"));
  });
  EXPECT_EQ(error, "UnexpectedMessage: http.response.body before http.response.start");
  auto events = h.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(is<protocol::HttpResponseStart>(events[0]));
  EXPECT_TRUE(h.errors().empty());
  EXPECT_TRUE(h.finished);
}

TEST(HttpConnection, BodyBeforeStartUncaughtBecomesError) {
  auto h = http();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> { co_await send(body("too early")); });
  EXPECT_TRUE(h.events().empty()) << "a refused event never reaches the bus";
  ASSERT_EQ(h.errors().size(), 1u);
  EXPECT_NE(h.errors()[0].find("UnexpectedMessage: http.response.body before http.response.start"),
            std::string::npos)
      << h.errors()[0];
}

TEST(HttpConnection, SecondStartRaises) {
  auto h = http();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    error = co_await thrown([&] { return send(start_200()); });
    co_await send(body("ok"));
  });
  EXPECT_EQ(error, "UnexpectedMessage: http.response.start sent twice");
  EXPECT_EQ(h.events().size(), 2u);
  EXPECT_TRUE(h.errors().empty());
}

TEST(HttpConnection, SendAfterCompleteRaisesClientDisconnected) {
  auto h = http();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body("done"));
    error = co_await thrown([&] { return send(body("more")); });
  });
  EXPECT_EQ(error, "ClientDisconnected: http.response.body after the response was completed");
  EXPECT_EQ(h.events().size(), 2u);
  EXPECT_TRUE(h.errors().empty());
}

TEST(HttpConnection, SendAfterCompleteUncaughtIsNotAnError) {
  auto h = http();
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body("done"));
    co_await send(body("more"));
  });
  EXPECT_TRUE(h.errors().empty()) << "the client already has its whole answer";
  EXPECT_TRUE(h.finished);
}

TEST(HttpConnection, EventsCarrySequenceAndIds) {
  auto h = http();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body("a", true));
    co_await send(body("b"));
  });
  ASSERT_EQ(h.out.size(), 3u);
  for (std::uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(h.out[i].kind, Kind::event);
    EXPECT_EQ(h.out[i].seq, i);
    EXPECT_EQ(h.out[i].gateway_id, "gw-1");
    EXPECT_EQ(h.out[i].worker_id, "wk-1");
    EXPECT_EQ(h.out[i].conn_id, 7u);
  }
}

TEST(HttpConnection, ReturningWithoutResponseIsAnError) {
  auto h = http();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> { co_await send(start_200()); });
  EXPECT_EQ(h.errors(), std::vector<std::string>{"application returned without completing the response"});
}

TEST(HttpConnection, AppExceptionIsAnErrorNamingIt) {
  auto h = http();
  h.start([](protocol::Scope, Receive, Send) -> awaitable<void> {
    throw std::runtime_error("boom");
    co_return;
  });
  EXPECT_EQ(h.errors(), std::vector<std::string>{"std::runtime_error: boom"});
}

TEST(HttpConnection, InvalidValuesRaiseInvalidEvent) {
  auto h = http();
  std::vector<std::string> errors;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    errors.push_back(co_await thrown([&] { return send(protocol::HttpResponseStart{42, {}, false, std::nullopt, false}); }));
    errors.push_back(
        co_await thrown([&] { return send(protocol::HttpResponseStart{200, {{"bad name", "v"}}, false, std::nullopt, false}); }));
    errors.push_back(
        co_await thrown([&] { return send(protocol::HttpResponseStart{200, {{"x", "a\r\nb"}}, false, std::nullopt, false}); }));
    co_await send(start_200());
    co_await send(body(""));
  });
  ASSERT_EQ(errors.size(), 3u);
  for (const auto& e : errors) EXPECT_EQ(e.rfind("InvalidEvent: ", 0), 0u) << e;
  EXPECT_EQ(h.events().size(), 2u);
}

TEST(HttpConnection, WebSocketEventOnHttpRaises) {
  auto h = http();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    error = co_await thrown([&] { return send(protocol::WebSocketAccept{}); });
    co_await send(start_200());
    co_await send(body(""));
  });
  EXPECT_EQ(error, "UnexpectedMessage: websocket.accept cannot be sent on an HTTP connection");
}

TEST(HttpConnection, TrailersAfterFinalBody) {
  auto h = http();
  std::string early;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(response_start(200, protocol::Headers(), true));
    early = co_await thrown([&] { return send(trailers()); });
    co_await send(body("data"));
    co_await send(trailers());
  });
  EXPECT_NE(early.find("UnexpectedMessage"), std::string::npos) << early;
  EXPECT_EQ(h.events().size(), 3u);
  EXPECT_TRUE(h.errors().empty());
}

TEST(HttpConnection, ReceiveAfterCompleteReturnsDisconnect) {
  auto h = http();
  std::vector<Event> received;
  h.start([&](protocol::Scope, Receive receive, Send send) -> awaitable<void> {
    received.push_back(co_await receive());
    co_await send(start_200());
    co_await send(body("done"));
    received.push_back(co_await receive());
  });
  ASSERT_EQ(received.size(), 2u);
  EXPECT_TRUE(is<protocol::HttpRequest>(received[0]));
  EXPECT_TRUE(is<protocol::HttpDisconnect>(received[1]));
}

TEST(HttpConnection, ClientLeavingWakesReceiveAndFailsSend) {
  Harness h(protocol::ScopeType::http, protocol::HttpRequest{"part", true});
  std::vector<Event> received;
  std::string error;
  h.start([&](protocol::Scope, Receive receive, Send send) -> awaitable<void> {
    received.push_back(co_await receive());
    received.push_back(co_await receive());  // waits: more body promised
    error = co_await thrown([&] { return send(start_200()); });
  });
  EXPECT_EQ(received.size(), 1u);
  EXPECT_FALSE(h.finished);
  EXPECT_TRUE(h.connection->feed(protocol::HttpDisconnect{}));
  h.poll();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_TRUE(is<protocol::HttpDisconnect>(received[1]));
  EXPECT_EQ(error, "ClientDisconnected: client disconnected");
  EXPECT_TRUE(h.errors().empty()) << "nobody is left to answer";
  EXPECT_TRUE(h.finished);
}

TEST(HttpConnection, RefusesEventsOfTheOtherType) {
  auto h = http();
  EXPECT_FALSE(h.connection->feed(protocol::WebSocketDisconnect{}));
  EXPECT_FALSE(h.connection->feed(protocol::HttpResponseStart{}));
  EXPECT_TRUE(h.connection->feed(protocol::HttpRequest{}));
}

// --- WebSocket state machine ---------------------------------------------------

Harness websocket(std::uint64_t window = protocol::k_default_byte_window) {
  return Harness(protocol::ScopeType::websocket, protocol::WebSocketConnect{}, window);
}

TEST(WebSocketConnection, SendBeforeAcceptRaises) {
  auto h = websocket();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    error = co_await thrown([&] { return send(text("hi")); });
    co_await send(websocket_close());
  });
  EXPECT_EQ(error, "UnexpectedMessage: websocket.send before websocket.accept");
  ASSERT_EQ(h.events().size(), 1u);
  EXPECT_TRUE(is<protocol::WebSocketClose>(h.events()[0]));
}

TEST(WebSocketConnection, AcceptTwiceRaises) {
  auto h = websocket();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(websocket_accept());
    error = co_await thrown([&] { return send(protocol::WebSocketAccept{}); });
    co_await send(websocket_close());
  });
  EXPECT_EQ(error, "UnexpectedMessage: websocket.accept sent twice");
  EXPECT_EQ(h.events().size(), 2u);
}

TEST(WebSocketConnection, SendAfterCloseRaisesClientDisconnected) {
  auto h = websocket();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(websocket_accept());
    co_await send(websocket_close(1000, "done"));
    error = co_await thrown([&] { return send(text("late")); });
  });
  EXPECT_EQ(error, "ClientDisconnected: websocket.send after the WebSocket was closed");
  EXPECT_EQ(h.events().size(), 2u);
  EXPECT_TRUE(h.errors().empty());
}

TEST(WebSocketConnection, ReturnAfterAcceptClosesWith1000) {
  auto h = websocket();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(websocket_accept());
    co_await send(text("bye"));
  });
  auto events = h.events();
  ASSERT_EQ(events.size(), 3u);
  ASSERT_TRUE(is<protocol::WebSocketClose>(events[2]));
  EXPECT_EQ(std::get<protocol::WebSocketClose>(events[2]).code, 1000);
  EXPECT_TRUE(h.errors().empty());
}

TEST(WebSocketConnection, ReturnWithoutAcceptIsAnError) {
  auto h = websocket();
  h.start([](protocol::Scope, Receive, Send) -> awaitable<void> { co_return; });
  EXPECT_EQ(h.errors(), std::vector<std::string>{"application returned without accepting or closing the WebSocket"});
}

TEST(WebSocketConnection, CloseBeforeAcceptThenReceiveGetsDisconnect) {
  auto h = websocket();
  std::vector<Event> received;
  h.start([&](protocol::Scope, Receive receive, Send send) -> awaitable<void> {
    received.push_back(co_await receive());  // websocket.connect
    co_await send(websocket_close());
    received.push_back(co_await receive());
  });
  ASSERT_EQ(received.size(), 2u);
  EXPECT_TRUE(is<protocol::WebSocketConnect>(received[0]));
  ASSERT_TRUE(is<protocol::WebSocketDisconnect>(received[1]));
  EXPECT_EQ(std::get<protocol::WebSocketDisconnect>(received[1]).code, 1006);
  EXPECT_TRUE(h.finished);
}

TEST(WebSocketConnection, DenialResponse) {
  auto h = websocket();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(denial_start(401));
    error = co_await thrown([&] { return send(protocol::WebSocketAccept{}); });
    co_await send(denial_body("no"));
  });
  EXPECT_EQ(error, "UnexpectedMessage: websocket.accept after websocket.http.response.start");
  EXPECT_EQ(h.events().size(), 2u);
  EXPECT_TRUE(h.errors().empty());
}

TEST(WebSocketConnection, MessagesBeforeDisconnectStillArriveThenDisconnectRepeats) {
  auto h = websocket();
  std::vector<Event> received;
  h.start([&](protocol::Scope, Receive receive, Send send) -> awaitable<void> {
    co_await receive();
    co_await send(websocket_accept());
    for (int i = 0; i < 4; ++i) received.push_back(co_await receive());
  });
  protocol::WebSocketReceive message;
  message.data = "m";
  message.text = true;
  h.connection->feed(message);
  h.connection->feed(protocol::WebSocketDisconnect{1001, "away"});
  h.poll();
  ASSERT_EQ(received.size(), 4u);
  EXPECT_TRUE(is<protocol::WebSocketReceive>(received[0]));
  for (int i = 1; i < 4; ++i) {
    ASSERT_TRUE(is<protocol::WebSocketDisconnect>(received[i]));
    EXPECT_EQ(std::get<protocol::WebSocketDisconnect>(received[i]).code, 1001);
  }
  EXPECT_TRUE(h.finished);
  EXPECT_EQ(h.events().size(), 1u) << "no close on behalf of an app whose client left";
}

TEST(WebSocketConnection, GatewayLostIsAbnormalClosure) {
  auto h = websocket();
  Event last;
  h.start([&](protocol::Scope, Receive receive, Send send) -> awaitable<void> {
    co_await receive();
    co_await send(websocket_accept());
    last = co_await receive();
  });
  h.connection->gateway_lost();
  h.poll();
  ASSERT_TRUE(is<protocol::WebSocketDisconnect>(last));
  EXPECT_EQ(std::get<protocol::WebSocketDisconnect>(last).code, 1006);
}

TEST(WebSocketConnection, ShutDownClosesWith1012) {
  auto h = websocket();
  Event last;
  h.start([&](protocol::Scope, Receive receive, Send send) -> awaitable<void> {
    co_await receive();
    co_await send(websocket_accept());
    last = co_await receive();
  });
  h.connection->shut_down();
  h.poll();
  auto events = h.events();
  ASSERT_EQ(events.size(), 2u);
  ASSERT_TRUE(is<protocol::WebSocketClose>(events[1]));
  EXPECT_EQ(std::get<protocol::WebSocketClose>(events[1]).code, 1012);
  ASSERT_TRUE(is<protocol::WebSocketDisconnect>(last));
  EXPECT_TRUE(h.finished);
}

TEST(WebSocketConnection, InvalidCloseCodeRaises) {
  auto h = websocket();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(websocket_accept());
    error = co_await thrown([&] { return send(protocol::WebSocketClose{1005, ""}); });
    co_await send(websocket_close());
  });
  EXPECT_EQ(error.rfind("InvalidEvent: websocket.close.code", 0), 0u) << error;
}

TEST(WebSocketConnection, InvalidUtf8TextRaises) {
  auto h = websocket();
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(websocket_accept());
    error = co_await thrown([&] { return send(text("\xff\xfe")); });
    co_await send(websocket_close());
  });
  EXPECT_EQ(error, "InvalidEvent: websocket.send.text: not valid UTF-8");
}

// --- credits and the byte window --------------------------------------------------

TEST(Credits, EveryEightEventsTakenAreAcknowledged) {
  Harness h(protocol::ScopeType::http, protocol::HttpRequest{"0", true});
  for (int i = 1; i < 20; ++i) h.connection->feed(protocol::HttpRequest{std::to_string(i), true});
  int taken = 0;
  h.start([&](protocol::Scope, Receive receive, Send) -> awaitable<void> {
    for (; taken < 17; ++taken) co_await receive();
    co_await receive();  // waits for more than the test gives: only what was taken counts
  });
  EXPECT_EQ(taken, 17);
  EXPECT_EQ(h.credits(), (std::vector<std::uint64_t>{8, 8}));
  for (const auto& envelope : h.out) {
    if (envelope.kind != Kind::credit) continue;
    EXPECT_EQ(envelope.conn_id, 7u);
    EXPECT_EQ(envelope.gateway_id, "gw-1");
    EXPECT_EQ(envelope.worker_id, "wk-1");
    EXPECT_FALSE(envelope.seq.has_value()) << "only events carry a sequence number";
  }
}

TEST(Credits, NoAcknowledgementAfterTheConnectionIsOver) {
  Harness h(protocol::ScopeType::http, protocol::HttpRequest{"0", true});
  for (int i = 1; i < 8; ++i) h.connection->feed(protocol::HttpRequest{"", true});
  h.start([&](protocol::Scope, Receive receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body("done"));
    for (int i = 0; i < 8; ++i) co_await receive();  // http.disconnect now: nothing taken
  });
  EXPECT_TRUE(h.credits().empty());
}

TEST(ByteWindow, PayloadWaitsWhileWindowIsExceeded) {
  auto h = http(10);
  bool done = false;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body("12345678", true));  // 0 unacked: goes, 8
    co_await send(body("12345678", true));  // 8 <= 10: goes, 16
    co_await send(body("12345678", true));  // 16 > 10: waits
    co_await send(body("", false));         // no payload, but after the one waiting
    done = true;
  });
  EXPECT_EQ(h.events().size(), 3u);
  EXPECT_EQ(h.connection->flow().unacknowledged(), 16u);
  h.connection->add_credit(5);  // 11 > 10: still waits
  h.poll();
  EXPECT_EQ(h.events().size(), 3u);
  h.connection->add_credit(1);  // 10: goes
  h.poll();
  EXPECT_EQ(h.events().size(), 5u);
  EXPECT_TRUE(done);
  EXPECT_EQ(h.connection->flow().unacknowledged(), 18u);
}

TEST(ByteWindow, ClientLeavingDuringTheWaitRaises) {
  auto h = http(0);
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body("x", true));
    error = co_await thrown([&] { return send(body("y", true)); });
  });
  EXPECT_TRUE(error.empty());
  h.connection->feed(protocol::HttpDisconnect{});
  h.poll();
  EXPECT_EQ(error, "ClientDisconnected: client disconnected");
  EXPECT_TRUE(h.finished);
}

TEST(ByteWindow, SendsLeaveInCallOrderWhileOneWaits) {
  auto h = websocket(4);
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(websocket_accept());
    co_await send(text("first"));  // 5 > 4 from now on
    // Another coroutine of the same app closes while this one waits for the
    // window: the close must not overtake the message.
    boost::asio::co_spawn(send.executor(), [send]() -> awaitable<void> { co_await send(websocket_close()); },
                          boost::asio::detached);
    co_await send(text("second"));
  });
  EXPECT_EQ(h.events().size(), 2u);
  h.connection->add_credit(5);
  h.poll();
  auto events = h.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(std::get<protocol::WebSocketSend>(events[2]).data, "second");
  EXPECT_TRUE(is<protocol::WebSocketClose>(events[3]));
}


// The gateway refuses a bus message much over its limits: one large send goes
// as several body events, each within the window, that add up to the body.
TEST(LargeBody, SplitIntoPiecesInOrderWithinTheWindow) {
  constexpr std::uint64_t window = 128 * 1024;
  auto h = http(window);
  std::string sent;
  for (std::size_t i = 0; i < 3 * 1024 * 1024; ++i) sent += static_cast<char>('a' + i % 23);
  bool done = false;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body(sent, false));
    done = true;
  });
  // The gateway writes what it gets and gives credit for it (bounded rounds).
  for (int round = 0; round < 1000 && !done; ++round) {
    EXPECT_LE(h.connection->flow().unacknowledged(), window + protocol::k_body_piece);
    h.connection->add_credit(h.connection->flow().unacknowledged());
    h.poll();
  }
  ASSERT_TRUE(done);
  auto events = h.events();
  ASSERT_EQ(events.size(), 1 + (sent.size() + protocol::k_body_piece - 1) / protocol::k_body_piece);
  std::string received;
  for (std::size_t i = 1; i < events.size(); ++i) {
    const auto& piece = std::get<protocol::HttpResponseBody>(events[i]);
    EXPECT_LE(piece.body.size(), protocol::k_body_piece);
    EXPECT_EQ(piece.more_body, i + 1 < events.size()) << i;
    received += piece.body;
  }
  EXPECT_TRUE(received == sent);
  for (std::size_t i = 0; i < h.out.size(); ++i) EXPECT_EQ(h.out[i].seq, std::optional<std::uint64_t>(i));
  EXPECT_TRUE(h.errors().empty());
}

// A gateway that announces large pieces (docs/protocol.md §2.5) takes a quarter
// of the window per body event: a 64 KiB body is one event, a larger one goes
// in pieces of window / 4, within window + a piece.
TEST(LargeBody, AGatewayTakingLargePiecesGetsQuarterWindowPieces) {
  constexpr std::uint64_t window = 1024 * 1024;
  constexpr std::uint64_t piece = window / 4;
  auto h = http(window, protocol::k_feature_large_pieces | protocol::k_feature_start_body);
  std::string whole(64 * 1024, 'w');
  std::string large(3 * piece + 1000, 'l');
  bool done = false;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body(whole, true));
    co_await send(body(large, false));
    done = true;
  });
  for (int round = 0; round < 100 && !done; ++round) {
    EXPECT_LE(h.connection->flow().unacknowledged(), window + piece);
    h.connection->add_credit(h.connection->flow().unacknowledged());
    h.poll();
  }
  ASSERT_TRUE(done);
  auto events = h.events();
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(std::get<protocol::HttpResponseStart>(events[0]).body, std::optional<protocol::Bytes>(whole));
  std::string received;
  for (std::size_t i = 1; i < events.size(); ++i) {
    const auto& sent = std::get<protocol::HttpResponseBody>(events[i]);
    EXPECT_EQ(sent.body.size(), i < 4 ? piece : 1000u) << i;
    EXPECT_EQ(sent.more_body, i < 4) << i;
    received += sent.body;
  }
  EXPECT_TRUE(received == large);
}

// A window too small for a quarter of it to beat the 60 KiB every gateway takes.
TEST(LargeBody, PiecesAreNeverSmallerThanSixtyKiB) {
  EXPECT_EQ(protocol::body_piece(protocol::k_feature_large_pieces, 64 * 1024), protocol::k_body_piece);
  EXPECT_EQ(protocol::body_piece(0, 64 * 1024 * 1024), protocol::k_body_piece);
  EXPECT_EQ(protocol::body_piece(protocol::k_feature_large_pieces, 256 * 1024), protocol::k_body_piece + 4 * 1024);
}

TEST(LargeBody, PiecesWaitForCreditAndLaterSendsWaitForThem) {
  auto h = http(1);
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body(std::string(3 * protocol::k_body_piece, 'x'), true));
    co_await send(body("end", false));
  });
  EXPECT_EQ(h.events().size(), 2u);  // the start and the first piece: then over the window
  h.connection->add_credit(protocol::k_body_piece);
  h.poll();
  EXPECT_EQ(h.events().size(), 3u);
  for (int i = 0; i < 2; ++i) {
    h.connection->add_credit(protocol::k_body_piece);
    h.poll();
  }
  auto events = h.events();
  ASSERT_EQ(events.size(), 5u);
  EXPECT_TRUE(std::get<protocol::HttpResponseBody>(events[3]).more_body);
  EXPECT_EQ(std::get<protocol::HttpResponseBody>(events[4]), body("end", false));
  EXPECT_TRUE(h.finished);
}

TEST(LargeBody, ClientLeavingBetweenPiecesRaises) {
  auto h = http(1);
  std::string error;
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    error = co_await thrown([&] { return send(body(std::string(4 * protocol::k_body_piece, 'x'), false)); });
  });
  EXPECT_EQ(h.events().size(), 2u);
  h.connection->feed(protocol::HttpDisconnect{});
  h.poll();
  EXPECT_EQ(error, "ClientDisconnected: client disconnected");
  EXPECT_EQ(h.events().size(), 2u);
  EXPECT_TRUE(h.finished);
  EXPECT_TRUE(h.errors().empty());
}

// --- a start with its first body (docs/protocol.md §2.5, §4.2) -------------------------

protocol::HttpResponseStart start_with(std::string data, bool more = false, bool with_trailers = false) {
  auto start = response_start(200, {{"content-type", "text/plain"}}, with_trailers);
  start.body = std::move(data);
  start.more_body = more;
  return start;
}

protocol::HttpResponseStart start_announcing_trailers() {
  return response_start(200, {{"content-type", "text/plain"}}, true);
}

TEST(StartWithBody, TheFirstBodyJoinsTheStartWhenOffered) {
  auto h = http_offering_start_body();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    co_await send(body("hello"));
  });
  auto events = h.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<protocol::HttpResponseStart>(events[0]), start_with("hello"));
  EXPECT_EQ(h.out[0].seq, std::optional<std::uint64_t>(0));
  EXPECT_EQ(h.connection->flow().unacknowledged(), 5u);  // the window counts it
  EXPECT_TRUE(h.finished);
  EXPECT_TRUE(h.errors().empty());
}

TEST(StartWithBody, NotOfferedTwoMessagesAsBefore) {
  auto h = http();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_with("whole"));  // an app's own start with its body: split
    co_await send(body("late"));         // after the final body: refused
  });
  auto events = h.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<protocol::HttpResponseStart>(events[0]), start_200());
  EXPECT_EQ(std::get<protocol::HttpResponseBody>(events[1]), body("whole"));
  EXPECT_TRUE(h.errors().empty());  // the late body raised ClientDisconnected: the expected end
}

// The head never waits for what the app awaits after the start (an SSE stream's first event).
TEST(StartWithBody, TheStartGoesOutAloneWhenTheAppWaits) {
  auto h = http_offering_start_body();
  boost::asio::steady_timer timer(h.io, std::chrono::hours(1));
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    boost::system::error_code ignored;
    co_await timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
    co_await send(body("later"));
  });
  auto events = h.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<protocol::HttpResponseStart>(events[0]), start_200());
  timer.cancel();
  h.poll();
  events = h.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<protocol::HttpResponseBody>(events[1]), body("later"));
  EXPECT_TRUE(h.finished);
}

TEST(StartWithBody, AnythingButABodyFlushesTheStartFirst) {
  auto h = http_offering_start_body();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_200());
    throw std::runtime_error("boom");
  });
  ASSERT_EQ(h.out.size(), 2u);
  EXPECT_EQ(std::get<protocol::HttpResponseStart>(*h.out[0].event), start_200());
  EXPECT_EQ(h.out[1].kind, Kind::error);
}

TEST(StartWithBody, TrailersFollowTheJoinedStart) {
  auto h = http_offering_start_body();
  h.start([](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_announcing_trailers());
    co_await send(body("data"));
    co_await send(trailers());
  });
  auto events = h.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<protocol::HttpResponseStart>(events[0]), start_with("data", false, true));
  EXPECT_TRUE(is<protocol::HttpResponseTrailers>(events[1]));
  EXPECT_TRUE(h.finished);
}

// A body over a piece: the start takes the first 60 KiB, the rest follows.
TEST(StartWithBody, ALargeBodyGivesTheStartItsFirstPiece) {
  auto h = http_offering_start_body();
  std::string data(protocol::k_body_piece + 100, 'x');
  h.start([&](protocol::Scope, Receive, Send send) -> awaitable<void> {
    co_await send(start_with(data));  // http_app's form
  });
  auto events = h.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<protocol::HttpResponseStart>(events[0]), start_with(data.substr(0, protocol::k_body_piece), true));
  EXPECT_EQ(std::get<protocol::HttpResponseBody>(events[1]), body(std::string(100, 'x')));
  EXPECT_TRUE(h.finished);
}

}  // namespace
}  // namespace asgi_bridge::worker::detail
