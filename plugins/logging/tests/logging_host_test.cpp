// The logging plugin in the real host, through real gRPC clients, on SQLite and on PostgreSQL (the
// server `tools/gv test` starts): OTLP export and queries, the host's own lines shipped with plugin,
// generation and request id, live tails from a cursor, game clients' Write, the per-sender rate,
// retention by size, and a reload under ingest that loses nothing acknowledged.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <set>
#include <thread>

#include "bulk_receiver.hpp"
#include "eventually.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "gameverse/logging/v1/logging.grpc.pb.h"
#include "host_process.hpp"
#include "opentelemetry/proto/collector/logs/v1/logs_service.grpc.pb.h"
#include "run_command.hpp"
#include "sign_up.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::logging::v1;
namespace otlp = opentelemetry::proto;
using otlp::collector::logs::v1::ExportLogsServiceRequest;
using otlp::collector::logs::v1::ExportLogsServiceResponse;
using otlp::collector::logs::v1::LogsService;

constexpr const char* kOperatorToken = "logging-test-operator-token-0123";

int64_t now_unix_nano() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class LoggingThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`";
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + std::string(url) + "\"\n";
    }
    // Each test's records carry a service name of their own: the PostgreSQL store is shared.
    service_ = "test-service-" + std::to_string(std::random_device()());
    start();
  }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
  }
  void start(const std::string& logging_config = "", const std::string& host_config = "") {
    host_ = std::make_unique<HostProcess>(
        "[host]\nwatch = false\ndata_dir = \"" + data_.path().string() + "\"\n" + host_config + store_ +
        "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\ntoken = \"" + kOperatorToken +
        "\"\n[[plugin]]\nname = \"logging\"\npath = \"" GV_PLUGIN_DIR "/logging.so\"\n[plugin.config]\n" +
        logging_config +
        "[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
        "/echo.so\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
        "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n");
    logs_ = LogsService::NewStub(host_->channel());
    logging_ = pb::Logging::NewStub(host_->channel());
  }

  static void as_operator(grpc::ClientContext& context) {
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
  }

  ExportLogsServiceRequest request_of(const std::vector<std::pair<int, std::string>>& lines,
                                      int64_t time = 0) {
    ExportLogsServiceRequest request;
    auto* resource = request.add_resource_logs();
    auto* service = resource->mutable_resource()->add_attributes();
    service->set_key("service.name");
    service->mutable_value()->set_string_value(service_);
    auto* scope = resource->add_scope_logs();
    scope->mutable_scope()->set_name("test-scope");
    for (const auto& [severity, body] : lines) {
      auto* record = scope->add_log_records();
      record->set_time_unix_nano(static_cast<uint64_t>(time != 0 ? time : now_unix_nano()));
      record->set_severity_number(static_cast<otlp::logs::v1::SeverityNumber>(severity));
      record->mutable_body()->set_string_value(body);
    }
    return request;
  }

  grpc::Status send(const ExportLogsServiceRequest& request, ExportLogsServiceResponse* response = nullptr) {
    grpc::ClientContext context;
    as_operator(context);
    ExportLogsServiceResponse ignored;
    return logs_->Export(&context, request, response != nullptr ? response : &ignored);
  }

  std::vector<pb::LogEntry> query(pb::LogFilter filter, pb::Order order = pb::ORDER_OLDEST_FIRST) {
    std::vector<pb::LogEntry> out;
    std::string cursor;
    do {
      grpc::ClientContext context;
      as_operator(context);
      pb::QueryRequest request;
      *request.mutable_filter() = filter;
      request.set_order(order);
      request.set_page_size(50);
      request.set_cursor(cursor);
      pb::QueryResponse response;
      const grpc::Status status = logging_->Query(&context, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      out.insert(out.end(), response.entries().begin(), response.entries().end());
      cursor = response.next_cursor();
    } while (!cursor.empty());
    return out;
  }

  pb::LogFilter mine() const {
    pb::LogFilter filter;
    filter.add_services(service_);
    return filter;
  }

  TempDir data_;
  std::string store_;
  std::string service_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<LogsService::Stub> logs_;
  std::unique_ptr<pb::Logging::Stub> logging_;
};

TEST_P(LoggingThroughTheHost, OtlpRecordsComeBackThroughQueryWithEveryField) {
  ExportLogsServiceRequest request = request_of({{9, "player joined"}, {17, "match crashed"}});
  auto* record = request.mutable_resource_logs(0)->mutable_scope_logs(0)->mutable_log_records(1);
  record->set_trace_id(std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10", 16));
  auto* attribute = record->add_attributes();
  attribute->set_key("match.id");
  attribute->mutable_value()->set_int_value(42);
  auto* request_id = record->add_attributes();
  request_id->set_key("gameverse.request_id");
  request_id->mutable_value()->set_string_value("req-" + service_);  // the PostgreSQL store is shared
  // One record from far in the future: refused, and the answer says so as OTLP's partial success.
  auto* ahead = request.mutable_resource_logs(0)->mutable_scope_logs(0)->add_log_records();
  ahead->set_time_unix_nano(static_cast<uint64_t>(now_unix_nano() + 3'600'000'000'000));
  ExportLogsServiceResponse response;
  const grpc::Status status = send(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.partial_success().rejected_log_records(), 1);
  EXPECT_NE(response.partial_success().error_message().find("ahead"), std::string::npos);

  const std::vector<pb::LogEntry> newest = query(mine(), pb::ORDER_NEWEST_FIRST);
  ASSERT_EQ(newest.size(), 2u);
  std::set<std::string> bodies{newest[0].body(), newest[1].body()};
  EXPECT_EQ(bodies, (std::set<std::string>{"player joined", "match crashed"}));

  pb::LogFilter errors = mine();
  errors.set_min_severity(17);
  const std::vector<pb::LogEntry> crashed = query(errors);
  ASSERT_EQ(crashed.size(), 1u);
  EXPECT_EQ(crashed[0].body(), "match crashed");
  EXPECT_EQ(crashed[0].service(), service_);
  EXPECT_EQ(crashed[0].trace_id(), "0102030405060708090a0b0c0d0e0f10");
  EXPECT_EQ(crashed[0].request_id(), "req-" + service_);
  bool has_match_id = false;
  for (const auto& a : crashed[0].attributes()) has_match_id |= a.key() == "match.id" && a.value() == "42";
  EXPECT_TRUE(has_match_id);

  pb::LogFilter by_request;
  by_request.set_request_id("req-" + service_);
  EXPECT_EQ(query(by_request).size(), 1u);
  pb::LogFilter by_text = mine();
  by_text.set_text("JOINED");
  EXPECT_EQ(query(by_text).size(), 1u);
}

TEST_P(LoggingThroughTheHost, ExportNeedsTheTelemetryRoleAndQueryTheLogsRole) {
  grpc::ClientContext export_context;
  ExportLogsServiceResponse response;
  EXPECT_EQ(logs_->Export(&export_context, request_of({{9, "anonymous"}}), &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext query_context;
  pb::QueryResponse page;
  EXPECT_EQ(logging_->Query(&query_context, pb::QueryRequest(), &page).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(query(mine()).empty());
}

TEST_P(LoggingThroughTheHost, BadCursorsAndFiltersAreRefusedNamingWhatIsWrong) {
  grpc::ClientContext context;
  as_operator(context);
  pb::QueryRequest request;
  request.set_cursor("c1.not-a-cursor");
  pb::QueryResponse response;
  grpc::Status status = logging_->Query(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("cursor"), std::string::npos) << status.error_message();
  grpc::ClientContext context2;
  as_operator(context2);
  pb::QueryRequest backwards;
  backwards.mutable_filter()->set_from_unix_nano(10);
  backwards.mutable_filter()->set_to_unix_nano(5);
  status = logging_->Query(&context2, backwards, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("to_unix_nano"), std::string::npos) << status.error_message();
}

TEST_P(LoggingThroughTheHost, ThePluginsAndTheHostsOwnLinesAreShippedWithPluginGenerationAndRequestId) {
  auto echo = gameverse::echo::v1::Echo::NewStub(host_->channel());
  grpc::ClientContext context;
  gameverse::echo::v1::RequestIdReply reply;
  ASSERT_TRUE(echo->RequestId(&context, gameverse::echo::v1::RequestIdRequest(), &reply).ok());
  ASSERT_FALSE(reply.request_id().empty());
  pb::LogFilter filter;
  filter.set_request_id(reply.request_id());
  std::vector<pb::LogEntry> found;
  ASSERT_TRUE(eventually([&] {
    found = query(filter);
    return !found.empty();
  })) << "the echo plugin's line for request "
      << reply.request_id() << " never arrived";
  EXPECT_EQ(found[0].plugin(), "echo");
  EXPECT_EQ(found[0].generation(), 1);
  EXPECT_EQ(found[0].service(), "gameverse");
  EXPECT_NE(found[0].body().find(reply.request_id()), std::string::npos);
  EXPECT_EQ(found[0].severity_text(), "INFO");
  // The host's own start-up lines, written before the logging plugin served, are there too.
  pb::LogFilter host_lines;
  host_lines.add_services("gameverse");
  host_lines.set_text("serving");
  host_lines.set_min_severity(9);
  EXPECT_TRUE(eventually([&] {
    for (const pb::LogEntry& e : query(host_lines)) {
      if (e.plugin().empty() && e.body().find("methods of") != std::string::npos) return true;
    }
    return false;
  }));
}

TEST_P(LoggingThroughTheHost, ATailReplaysAfterItsCursorThenDeliversLiveWithNoRepeat) {
  ASSERT_TRUE(send(request_of({{9, "one"}, {9, "two"}})).ok());
  const std::vector<pb::LogEntry> stored = query(mine());
  ASSERT_EQ(stored.size(), 2u);
  const std::string after_one = stored[0].body() == "one" ? stored[0].cursor() : stored[1].cursor();

  grpc::ClientContext context;
  as_operator(context);
  pb::TailRequest request;
  *request.mutable_filter() = mine();
  request.set_cursor(after_one);
  auto reader = logging_->Tail(&context, request);
  pb::LogEntry entry;
  ASSERT_TRUE(reader->Read(&entry));
  EXPECT_EQ(entry.body(), "two");
  ASSERT_TRUE(send(request_of({{13, "three"}})).ok());
  ASSERT_TRUE(reader->Read(&entry));
  EXPECT_EQ(entry.body(), "three");
  ASSERT_TRUE(send(request_of({{9, "four"}})).ok());
  ASSERT_TRUE(reader->Read(&entry));
  EXPECT_EQ(entry.body(), "four");
  context.TryCancel();
}

TEST_P(LoggingThroughTheHost, GameClientsWriteTheirOwnLinesWithinAPerPlayerLimit) {
  ASSERT_NO_FATAL_FAILURE(host_->stop());
  start("client_lines_per_player_per_minute = 3\n");
  auto auth = gameverse::auth::v1::Auth::NewStub(host_->channel());
  const gameverse::auth::v1::Session session =
      sign_up(*auth, "p" + std::to_string(std::random_device()() % 1000000));
  ASSERT_FALSE(session.access_token().empty());
  auto write = [&](int n, pb::WriteResponse* response) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + session.access_token());
    pb::WriteRequest request;
    for (int i = 0; i < n; ++i) {
      pb::ClientLogEntry* e = request.add_entries();
      e->set_severity_number(13);
      e->set_body("client line " + std::to_string(i));
      pb::Attribute* a = e->add_attributes();
      a->set_key("gameverse.plugin");  // not the client's to say: left out
      a->set_value("auth");
    }
    return logging_->Write(&context, request, response);
  };
  pb::WriteResponse response;
  ASSERT_TRUE(write(3, &response).ok());
  EXPECT_EQ(response.accepted(), 3u);
  const grpc::Status over = write(1, &response);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(over.error_message().find("client_lines_per_player_per_minute"), std::string::npos);

  pb::LogFilter filter;
  filter.add_services("game-client");
  pb::Attribute* player = filter.add_attributes();
  player->set_key("player");
  player->set_value(session.account().id());
  const std::vector<pb::LogEntry> lines = query(filter);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(lines[0].plugin().empty());
  grpc::ClientContext anonymous;
  EXPECT_EQ(logging_->Write(&anonymous, pb::WriteRequest(), &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_P(LoggingThroughTheHost, ASenderOverItsRateIsToldToRetryAndNothingIsStored) {
  ASSERT_NO_FATAL_FAILURE(host_->stop());
  start("max_records_per_client_per_s = 5\n");
  std::vector<std::pair<int, std::string>> lines(6, {9, "flood"});
  const grpc::Status status = send(request_of(lines));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("max_records_per_client_per_s"), std::string::npos);
  EXPECT_TRUE(query(mine()).empty());
}

TEST_P(LoggingThroughTheHost, OverTheSizeBoundRetentionDropsTheLeastSevereFirst) {
  ASSERT_NO_FATAL_FAILURE(host_->stop());
  start("max_stored_mb = 1\nretention_interval_s = 1\n");
  // An hour ago: the hour records are written to now is never dropped.
  const int64_t hour_ago = now_unix_nano() - 3'600'000'000'000;
  ASSERT_TRUE(send(request_of({{17, "an error to keep"}}, hour_ago)).ok());
  const std::string filler(8000, 'd');
  for (int batch = 0; batch < 3; ++batch) {
    ASSERT_TRUE(send(request_of(std::vector<std::pair<int, std::string>>(60, {5, filler}), hour_ago)).ok());
  }
  EXPECT_TRUE(eventually([&] {
    for (const pb::LogEntry& e : query(mine())) {
      if (e.severity_number() < 9) return false;
    }
    return true;
  })) << "the debug records were never dropped";
  const std::vector<pb::LogEntry> left = query(mine());
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].body(), "an error to keep");
}

TEST_P(LoggingThroughTheHost, AReloadUnderIngestLosesNothingAcknowledged) {
  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged{0};
  std::set<std::string> sent;
  std::mutex mu;
  std::thread sender([&] {
    for (int i = 0; !stop; ++i) {
      const std::string body = "line " + std::to_string(i);
      if (send(request_of({{9, body}})).ok()) {
        std::lock_guard lock(mu);
        sent.insert(body);
        ++acknowledged;
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return acknowledged > 20; }));
  {
    auto admin = gameverse::host::v1::PluginAdmin::NewStub(host_->channel());
    grpc::ClientContext context;
    as_operator(context);
    gameverse::host::v1::ReloadPluginRequest request;
    request.set_name("logging");
    request.set_force(true);
    gameverse::host::v1::OperationResult result;
    const grpc::Status status = admin->ReloadPlugin(&context, request, &result);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(result.generation(), 2u);
  }
  const int at_reload = acknowledged;
  ASSERT_TRUE(eventually([&] { return acknowledged > at_reload + 20; }));
  stop = true;
  sender.join();
  std::set<std::string> stored;
  for (const pb::LogEntry& e : query(mine())) stored.insert(e.body());
  std::lock_guard lock(mu);
  for (const std::string& body : sent)
    EXPECT_TRUE(stored.contains(body)) << body << " was acknowledged but is gone";
}

TEST_P(LoggingThroughTheHost, ALiveTailMovesThroughAReloadOfThePluginWithNoGapAndNoRepeat) {
  // Stored before the tail opened: never the tail's to get, before or after a reload.
  ASSERT_TRUE(send(request_of({{9, "old 1"}, {9, "old 2"}, {9, "old 3"}})).ok());
  grpc::ClientContext context;
  as_operator(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  pb::TailRequest request;
  *request.mutable_filter() = mine();
  auto reader = logging_->Tail(&context, request);
  // The tail is open once it delivers: send until the first line comes back.
  ASSERT_TRUE(send(request_of({{9, "before"}})).ok());
  pb::LogEntry entry;
  ASSERT_TRUE(reader->Read(&entry));
  EXPECT_EQ(entry.body(), "before");

  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged{0};
  std::vector<std::string> sent, failed;
  std::thread sender([&] {
    for (int i = 0; !stop && i < 100000; ++i) {
      const std::string body = "during " + std::to_string(i);
      const grpc::Status status = send(request_of({{9, body}}));
      (status.ok() ? sent : failed).push_back(body + ": " + status.error_message());
      if (status.ok()) ++acknowledged;
    }
  });
  ASSERT_TRUE(eventually([&] { return acknowledged > 10; }));
  auto admin = gameverse::host::v1::PluginAdmin::NewStub(host_->channel());
  for (int reload = 0; reload < 2; ++reload) {
    grpc::ClientContext admin_context;
    as_operator(admin_context);
    gameverse::host::v1::ReloadPluginRequest reload_request;
    reload_request.set_name("logging");
    reload_request.set_force(true);
    gameverse::host::v1::OperationResult result;
    const grpc::Status status = admin->ReloadPlugin(&admin_context, reload_request, &result);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const int at_reload = acknowledged;
  ASSERT_TRUE(eventually([&] { return acknowledged > at_reload + 10; }));
  stop = true;
  sender.join();
  ASSERT_TRUE(send(request_of({{9, "last"}})).ok());

  std::set<std::string> seen;
  for (;;) {
    ASSERT_TRUE(reader->Read(&entry)) << "the tail ended after " << seen.size() << " of " << sent.size()
                                      << " lines: " << reader->Finish().error_message();
    EXPECT_TRUE(seen.insert(entry.body()).second) << entry.body() << " came twice (" << entry.cursor() << ")";
    EXPECT_FALSE(entry.body().starts_with("old")) << entry.body() << " was stored before the tail opened";
    if (entry.body() == "last") break;
  }
  // Every acknowledged line came, whichever generation stored it; no export failed.
  for (const std::string& body : sent) {
    EXPECT_TRUE(seen.contains(body.substr(0, body.find(':')))) << body;
  }
  EXPECT_TRUE(failed.empty()) << failed.size() << " exports failed, the first: " << failed.front();
  context.TryCancel();
}

TEST_P(LoggingThroughTheHost, StoredRecordsReachElasticsearchInTheBulkFormatAfterARetry) {
  bulk::BulkReceiver elasticsearch([](const bulk::Received& request, size_t index) {
    return index == 0 ? bulk::Reply{503, "{}"} : bulk::all_stored(request);
  });
  ASSERT_NO_FATAL_FAILURE(host_->stop());
  start("elasticsearch_url = \"" + elasticsearch.url() +
        "\"\nelasticsearch_flush_interval_ms = 20\nelasticsearch_retry_initial_ms = 10\n"
        "elasticsearch_authorization = \"ApiKey c2VjcmV0\"\n");
  ASSERT_TRUE(send(request_of({{9, "to the search engine"}, {17, "an error for Kibana"}})).ok());
  std::vector<std::string> messages;
  ASSERT_TRUE(eventually([&] {
    messages.clear();
    const auto requests = elasticsearch.requests();
    if (requests.size() < 2) return false;
    for (const bulk::Received& request : requests) {
      EXPECT_EQ(request.method, "POST");
      EXPECT_TRUE(request.target.starts_with("/_bulk")) << request.target;
      EXPECT_EQ(request.content_type, "application/x-ndjson");
      EXPECT_EQ(request.authorization, "ApiKey c2VjcmV0");
    }
    // What the 503 refused came again; the host's own lines may be there too.
    for (const std::string& line : bulk::lines_of(requests.back().body)) {
      const auto document = nlohmann::json::parse(line);
      if (document.contains("message") &&
          document.value("service", nlohmann::json::object()).value("name", "") == service_) {
        messages.push_back(document["message"]);
      }
    }
    return messages.size() == 2;
  })) << elasticsearch.requests().size()
      << " requests";
  std::sort(messages.begin(), messages.end());
  EXPECT_EQ(messages, (std::vector<std::string>{"an error for Kibana", "to the search engine"}));
}

TEST_P(LoggingThroughTheHost, ResourceAttributesThatWouldBeCopiedIntoEveryRecordAreBounded) {
  ExportLogsServiceRequest request = request_of({{9, "a"}, {9, "b"}, {9, "c"}});
  auto* big = request.mutable_resource_logs(0)->mutable_resource()->add_attributes();
  big->set_key("k8s.pod.annotations");
  big->mutable_value()->set_string_value(std::string(20000, 'x'));
  ExportLogsServiceResponse response;
  const grpc::Status status = send(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.partial_success().rejected_log_records(), 3);
  EXPECT_NE(response.partial_success().error_message().find("at most 16384 bytes"), std::string::npos)
      << response.partial_success().error_message();
  EXPECT_TRUE(query(mine()).empty());
}

TEST_P(LoggingThroughTheHost, AGameClientCannotFileItsLinesUnderARequestIdItNames) {
  auto auth = gameverse::auth::v1::Auth::NewStub(host_->channel());
  const gameverse::auth::v1::Session session =
      sign_up(*auth, "q" + std::to_string(std::random_device()() % 1000000));
  ASSERT_FALSE(session.access_token().empty());
  const std::string forged = "admin-req-" + std::to_string(std::random_device()());
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + session.access_token());
  context.AddMetadata("x-request-id", forged);
  pb::WriteRequest request;
  request.add_entries()->set_body("payment service: refund approved");
  pb::WriteResponse response;
  ASSERT_TRUE(logging_->Write(&context, request, &response).ok());
  EXPECT_EQ(response.accepted(), 1u);
  pb::LogFilter by_request;
  by_request.set_request_id(forged);
  EXPECT_TRUE(query(by_request).empty());
}

// Every call writes a line and the queue holds a hundred: calls go on, all of them answered, and
// what the logging plugin could not be sent is counted on /metrics.
TEST_P(LoggingThroughTheHost, AFloodOfLogLinesNeverFailsACallAndItsDropsAreCounted) {
  ASSERT_NO_FATAL_FAILURE(host_->stop());
  start("", "ship_queue_lines = 100\n");
  auto echo = gameverse::echo::v1::Echo::NewStub(host_->channel());
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < 3000; ++i) {
        grpc::ClientContext context;
        gameverse::echo::v1::RequestIdReply reply;
        if (!echo->RequestId(&context, gameverse::echo::v1::RequestIdRequest(), &reply).ok()) ++failed;
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(failed, 0);
  const CommandRun scrape = run_command(
      "curl -sS --max-time 30 http://127.0.0.1:" + std::to_string(host_->http_port()) + "/metrics");
  ASSERT_EQ(scrape.exit_code, 0) << scrape.output;
  const std::string shipped = "gameverse_log_lines_shipped_total{plugin=\"gameverse\"} ";
  const std::string dropped =
      "gameverse_log_lines_dropped_total{plugin=\"gameverse\",reason=\"queue_full\"} ";
  ASSERT_NE(scrape.output.find(shipped), std::string::npos) << scrape.output.substr(0, 4000);
  ASSERT_NE(scrape.output.find(dropped), std::string::npos) << scrape.output.substr(0, 4000);
  const auto value = [&](const std::string& series) {
    const size_t at = scrape.output.find(series) + series.size();
    return std::stod(scrape.output.substr(at, scrape.output.find('\n', at) - at));
  };
  EXPECT_GT(value(shipped), 0);
  EXPECT_GT(value(dropped), 0) << "12000 lines through a queue of 100 with none dropped";
}

INSTANTIATE_TEST_SUITE_P(Backends, LoggingThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
