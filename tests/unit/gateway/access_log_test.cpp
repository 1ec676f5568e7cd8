// The access log's lines (access_log.cpp) and the metrics the same record feeds.
#include "access_log.hpp"

#include <regex>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "metrics.hpp"

namespace asgi_bridge::gateway {
namespace {

using namespace std::chrono_literals;

AccessRecord http_record() {
  AccessRecord record;
  record.client = "203.0.113.7";
  record.client_port = 5123;
  record.method = "GET";
  record.target = "/a?b=1";
  record.referer = "http://r/";
  record.user_agent = "agent \"x\"\n";
  record.status = 200;
  record.bytes_received = 80;
  record.bytes_sent = 187;
  record.duration = 2500us;
  record.worker = "w-1";
  return record;
}

TEST(AccessLog, CombinedHoldsApacheFieldsThenKeyValues) {
  auto line = format_access_line(http_record(), AccessLogFormat::combined);
  std::regex expected(
      R"re(^203\.0\.113\.7 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /a\?b=1 HTTP/1\.1" 200 187 "http://r/" )re"
      R"re("agent \\x22x\\x22\\x0A" rt=0\.002500 worker=w-1 origin=app$)re");
  EXPECT_TRUE(std::regex_match(line, expected)) << line;
}

TEST(AccessLog, GatewayMadeAndClientGone) {
  auto record = http_record();
  record.method = {};
  record.raw_request_line = "GARB\x01";
  record.status = 431;
  record.worker = {};
  record.gateway_reason = GatewayReason::limit;
  auto line = format_access_line(record, AccessLogFormat::combined);
  EXPECT_NE(line.find("\"GARB\\x01\" 431 187"), std::string::npos) << line;
  EXPECT_NE(line.find("worker=- origin=gateway reason=limit"), std::string::npos) << line;
  record.status = 0;
  line = format_access_line(record, AccessLogFormat::combined);
  EXPECT_NE(line.find("\" 499 187 "), std::string::npos) << line;
  EXPECT_NE(line.find("origin=none"), std::string::npos) << line;
  EXPECT_NE(format_access_line(record, AccessLogFormat::daphne).find("\"GARB\\x01\" - -"), std::string::npos);
}

TEST(AccessLog, DaphneLines) {
  auto record = http_record();
  std::regex http(R"re(^203\.0\.113\.7 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\] "GET /a\?b=1" 200 187$)re");
  auto line = format_access_line(record, AccessLogFormat::daphne);
  EXPECT_TRUE(std::regex_match(line, http)) << line;
  record.kind = AccessRecord::Kind::websocket_handshake;
  record.status = 101;
  EXPECT_NE(format_access_line(record, AccessLogFormat::daphne).find("\"WSCONNECT /a?b=1\" - -"), std::string::npos);
  record.status = 403;
  EXPECT_NE(format_access_line(record, AccessLogFormat::daphne).find("\"WSREJECT /a?b=1\" - -"), std::string::npos);
  record.kind = AccessRecord::Kind::websocket_close;
  EXPECT_NE(format_access_line(record, AccessLogFormat::daphne).find("\"WSDISCONNECT /a?b=1\" - -"), std::string::npos);
}

TEST(AccessLog, JsonHasEveryField) {
  auto record = http_record();
  record.kind = AccessRecord::Kind::websocket_close;
  record.status = 1001;
  record.closed_by = Closer::app;
  record.messages_received = 3;
  record.messages_sent = 4;
  auto json = nlohmann::json::parse(format_access_json(record, AccessLogFormat::combined));
  EXPECT_EQ(json["type"], "websocket.close");
  EXPECT_EQ(json["client"], "203.0.113.7");
  EXPECT_EQ(json["client_port"], 5123);
  EXPECT_EQ(json["close_code"], 1001);
  EXPECT_EQ(json["closed_by"], "app");
  EXPECT_EQ(json["messages_received"], 3);
  EXPECT_EQ(json["messages_sent"], 4);
  EXPECT_EQ(json["bytes_sent"], 187);
  EXPECT_DOUBLE_EQ(json["duration"].get<double>(), 0.0025);
  EXPECT_EQ(json["user_agent"], "agent \"x\"\n");
  EXPECT_NE(json["message"].get<std::string>().find("WSDISCONNECT /a?b=1"), std::string::npos);
}

TEST(AccessLog, FormatNames) {
  EXPECT_EQ(parse_access_log_format("daphne"), AccessLogFormat::daphne);
  EXPECT_EQ(parse_access_log_format("combined"), AccessLogFormat::combined);
  EXPECT_THROW(parse_access_log_format("common"), std::invalid_argument);
}

TEST(Metrics, RecordsAreCountedAndSummedOverShards) {
  std::vector<ShardMetrics> shards(2);
  auto record = http_record();
  shards[0].count(record);
  record.status = 503;
  record.gateway_reason = GatewayReason::no_worker;
  shards[1].count(record);
  record.kind = AccessRecord::Kind::websocket_close;
  record.status = 4321;
  shards[1].count(record);
  shards[0].websocket_message_in(10);
  Metrics metrics;
  auto text = metrics.prometheus(3, {&shards[0], &shards[1]});
  auto has = [&text](const std::string& line) { return text.find("\n" + line + "\n") != std::string::npos; };
  EXPECT_TRUE(has(R"(asgi_bridge_responses_total{protocol="http",status="2xx",origin="app"} 1)")) << text;
  EXPECT_TRUE(has(R"(asgi_bridge_responses_total{protocol="http",status="5xx",origin="gateway"} 1)"));
  EXPECT_TRUE(has(R"(asgi_bridge_gateway_responses_total{protocol="http",reason="no_worker"} 1)"));
  EXPECT_TRUE(has(R"(asgi_bridge_received_bytes_total{protocol="http"} 160)"));
  EXPECT_TRUE(has(R"(asgi_bridge_received_bytes_total{protocol="websocket"} 10)"));
  EXPECT_TRUE(has(R"(asgi_bridge_websocket_closes_total{code="other",closed_by="client"} 1)"));
  EXPECT_TRUE(has(R"(asgi_bridge_http_request_duration_seconds_bucket{le="0.0025"} 2)"));
  EXPECT_TRUE(has(R"(asgi_bridge_http_request_duration_seconds_bucket{le="0.001"} 0)"));
  EXPECT_TRUE(has(R"(asgi_bridge_http_request_duration_seconds_count 2)"));
  EXPECT_TRUE(has("asgi_bridge_open_connections 3"));
}

TEST(Metrics, WorkerSeriesAreBounded) {
  Metrics metrics;
  std::vector<Metrics::WorkerGauge> workers;
  for (int i = 0; i < 40; ++i) workers.push_back({"w-" + std::to_string(100 + i), false, 1, 10});
  metrics.set_worker_gauges(workers);
  auto text = metrics.prometheus(0, {});
  std::size_t series = 0;
  for (auto at = text.find("\nasgi_bridge_worker_connections_capacity{"); at != std::string::npos;
       at = text.find("\nasgi_bridge_worker_connections_capacity{", at + 1)) {
    ++series;
  }
  EXPECT_EQ(series, Metrics::k_max_listed_workers + 1);
  EXPECT_NE(text.find(R"(asgi_bridge_worker_connections_capacity{worker="other"} 80)"), std::string::npos);
  EXPECT_NE(text.find(R"(asgi_bridge_worker_connected{worker="other"} 8)"), std::string::npos);
}

}  // namespace
}  // namespace asgi_bridge::gateway
