// The Elasticsearch format, answer parsing, backoff and buffer, without a network.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "domain/elasticsearch_bulk.hpp"

namespace es = gameverse::logging::elasticsearch;
using gameverse::logging::LogRecord;

namespace {

constexpr int64_t kSample = 1796023359123456789;  // 2026-11-30T07:22:39.123456789Z

LogRecord full_record() {
  LogRecord record;
  record.time_unix_nano = kSample;
  record.observed_unix_nano = kSample + 1'000'000;
  record.severity_number = 13;
  record.severity_text = "warn";
  record.service = "gameverse";
  record.host = "node-1";
  record.plugin = "inventory";
  record.generation = 3;
  record.request_id = "req-42";
  record.trace_id = "0af7651916cd43dd8448eb211c80319c";
  record.span_id = "b7ad6b7169203331";
  record.body = "item granted";
  record.attributes = {{"http.method", "GET"}, {"player", "p1"}, {"player", "p2"}, {"", "lost"}};
  return record;
}

std::vector<std::string> lines_of(const std::string& body) {
  std::vector<std::string> lines;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

template <typename F>
std::string error_of(F&& call) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(ElasticsearchFormat, TimestampsAreRfc3339InUtcWithNanoseconds) {
  EXPECT_EQ(es::rfc3339_nanos(kSample), "2026-11-30T07:22:39.123456789Z");
  EXPECT_EQ(es::rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(es::rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
  EXPECT_EQ(es::rfc3339_nanos(951'782'400'000'000'000), "2000-02-29T00:00:00.000000000Z");
}

TEST(ElasticsearchFormat, IndexNamesComeFromThePatternAndTheRecordsUtcDate) {
  EXPECT_EQ(es::index_name(es::kDefaultIndexPattern, kSample), "gameverse-logs-2026.11.30");
  EXPECT_EQ(es::index_name("logs-%Y%m%d-100%%", 0), "logs-19700101-100%");
  EXPECT_EQ(es::index_name("fixed", kSample), "fixed");
}

TEST(ElasticsearchFormat, BadIndexPatternsAreRefusedNamingTheKey) {
  EXPECT_NO_THROW(es::validate_index_pattern(es::kDefaultIndexPattern));
  EXPECT_EQ(error_of([] { es::validate_index_pattern(""); }), "elasticsearch_index: empty");
  EXPECT_EQ(error_of([] { es::validate_index_pattern("Logs-%Y"); }),
            "elasticsearch_index: index names must be lowercase");
  EXPECT_EQ(error_of([] { es::validate_index_pattern("logs-%H"); }),
            "elasticsearch_index: unknown placeholder %H (use %Y, %m, %d or %%)");
  EXPECT_EQ(error_of([] { es::validate_index_pattern("logs-%"); }),
            "elasticsearch_index: a lone % at the end (write %% for a literal %)");
  EXPECT_EQ(error_of([] { es::validate_index_pattern("_logs"); }),
            "elasticsearch_index: the index name cannot start with -, _ or +");
  EXPECT_EQ(error_of([] { es::validate_index_pattern("my logs"); }),
            "elasticsearch_index: the index name cannot contain ' '");
  EXPECT_EQ(error_of([] { es::validate_index_pattern(".."); }),
            "elasticsearch_index: the index name cannot be . or ..");
  EXPECT_EQ(error_of([] { es::validate_index_pattern(std::string(300, 'a'), "index"); }),
            "index: the index name is longer than 255 bytes");
}

TEST(ElasticsearchFormat, DocumentsCarryEveryFieldUnderKibanaFriendlyNames) {
  const nlohmann::json doc = es::document(full_record());
  EXPECT_EQ(doc["@timestamp"], "2026-11-30T07:22:39.123456789Z");
  EXPECT_EQ(doc["observed_timestamp"], "2026-11-30T07:22:39.124456789Z");
  EXPECT_EQ(doc["severity_text"], "warn");
  EXPECT_EQ(doc["severity_number"], 13);
  EXPECT_EQ(doc["service"]["name"], "gameverse");
  EXPECT_EQ(doc["host"]["name"], "node-1");
  EXPECT_EQ(doc["gameverse"]["plugin"], "inventory");
  EXPECT_EQ(doc["gameverse"]["generation"], 3);
  EXPECT_EQ(doc["gameverse"]["request_id"], "req-42");
  EXPECT_EQ(doc["trace_id"], "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(doc["span_id"], "b7ad6b7169203331");
  EXPECT_EQ(doc["message"], "item granted");
  // Dotted keys stay one key; a repeated key keeps its last value; an empty key is left out.
  EXPECT_EQ(doc["attributes"], (nlohmann::json{{"http.method", "GET"}, {"player", "p2"}}));
}

TEST(ElasticsearchFormat, EmptyOptionalFieldsAreLeftOutAndSeverityTextFallsBackToTheFamily) {
  LogRecord record;
  record.severity_number = 17;
  record.body = "boom";
  const nlohmann::json doc = es::document(record);
  EXPECT_EQ(doc["severity_text"], "ERROR");
  for (const char* absent : {"service", "host", "trace_id", "span_id", "attributes"}) {
    EXPECT_FALSE(doc.contains(absent)) << absent;
  }
  EXPECT_FALSE(doc["gameverse"].contains("plugin"));
  EXPECT_FALSE(doc["gameverse"].contains("request_id"));
  EXPECT_EQ(doc["gameverse"]["generation"], 0);
}

TEST(ElasticsearchFormat, BulkBodyIsActionAndDocumentLinesEndingInANewline) {
  std::vector<LogRecord> records{full_record(), full_record()};
  records[1].time_unix_nano = 0;
  records[1].body = "second\nline \"quoted\"";
  const std::string body = es::bulk_body(records, es::kDefaultIndexPattern);
  ASSERT_FALSE(body.empty());
  EXPECT_EQ(body.back(), '\n');
  const std::vector<std::string> lines = lines_of(body);
  ASSERT_EQ(lines.size(), 4u);
  for (const std::string& line : lines) EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  EXPECT_EQ(nlohmann::json::parse(lines[0]),
            (nlohmann::json{{"index", {{"_index", "gameverse-logs-2026.11.30"}}}}));
  EXPECT_EQ(nlohmann::json::parse(lines[2]),
            (nlohmann::json{{"index", {{"_index", "gameverse-logs-1970.01.01"}}}}));
  EXPECT_EQ(nlohmann::json::parse(lines[1])["message"], "item granted");
  EXPECT_EQ(nlohmann::json::parse(lines[3])["message"], "second\nline \"quoted\"");
  EXPECT_EQ(es::bulk_body({}, es::kDefaultIndexPattern), "");
}

TEST(ElasticsearchFormat, TextThatIsNotUtf8IsReplacedInsteadOfFailingTheBatch) {
  LogRecord record = full_record();
  record.body = "bad \xff\xfe bytes";
  record.attributes = {{"k\xc3", "v\x80"}};
  std::string body;
  ASSERT_NO_THROW(body = es::bulk_body(std::vector<LogRecord>{record}, es::kDefaultIndexPattern));
  const std::vector<std::string> lines = lines_of(body);
  ASSERT_EQ(lines.size(), 2u);
  ASSERT_TRUE(nlohmann::json::accept(lines[1]));
  EXPECT_EQ(nlohmann::json::parse(lines[1])["message"], "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
}

TEST(ElasticsearchAnswer, StatusesAreStoredRetriedOrRejected) {
  EXPECT_EQ(es::outcome_for_status(200), es::ItemOutcome::kStored);
  EXPECT_EQ(es::outcome_for_status(201), es::ItemOutcome::kStored);
  EXPECT_EQ(es::outcome_for_status(429), es::ItemOutcome::kRetry);
  EXPECT_EQ(es::outcome_for_status(500), es::ItemOutcome::kRetry);
  EXPECT_EQ(es::outcome_for_status(503), es::ItemOutcome::kRetry);
  EXPECT_EQ(es::outcome_for_status(400), es::ItemOutcome::kRejected);
  EXPECT_EQ(es::outcome_for_status(409), es::ItemOutcome::kRejected);
  EXPECT_EQ(es::outcome_for_status(0), es::ItemOutcome::kRejected);
}

TEST(ElasticsearchAnswer, PerItemOutcomesAndReasonsAreReadInOrder) {
  const std::string answer = R"({
    "took": 30, "errors": true,
    "items": [
      {"index": {"_index": "gameverse-logs-2026.11.30", "_id": "a", "status": 201, "result": "created"}},
      {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
      {"index": {"status": 400, "error": {"type": "mapper_parsing_exception",
                                          "reason": "failed to parse field [severity_number]"}}},
      {"create": {"status": 503}}
    ]})";
  const es::BulkResult result = es::parse_bulk_response(answer, 4);
  EXPECT_TRUE(result.errors);
  ASSERT_EQ(result.items.size(), 4u);
  EXPECT_EQ(result.items[0].outcome, es::ItemOutcome::kStored);
  EXPECT_EQ(result.items[0].reason, "");
  EXPECT_EQ(result.items[1].outcome, es::ItemOutcome::kRetry);
  EXPECT_EQ(result.items[1].reason, "es_rejected_execution_exception: queue full");
  EXPECT_EQ(result.items[2].outcome, es::ItemOutcome::kRejected);
  EXPECT_EQ(result.items[2].status, 400);
  EXPECT_EQ(result.items[2].reason, "mapper_parsing_exception: failed to parse field [severity_number]");
  EXPECT_EQ(result.items[3].outcome, es::ItemOutcome::kRetry);
  EXPECT_EQ(result.items[3].reason, "status 503");

  const es::BulkResult clean =
      es::parse_bulk_response(R"({"errors":false,"items":[{"index":{"status":201}}]})", 1);
  EXPECT_FALSE(clean.errors);
  EXPECT_EQ(clean.items.at(0).outcome, es::ItemOutcome::kStored);
}

TEST(ElasticsearchAnswer, AnswersThatAreNotBulkResponsesAreRefusedSayingWhy) {
  EXPECT_EQ(error_of([] { es::parse_bulk_response("<html>bad gateway</html>", 1); }),
            "the _bulk response is not JSON");
  EXPECT_EQ(error_of([] { es::parse_bulk_response("[]", 1); }), "the _bulk response is not a JSON object");
  EXPECT_EQ(error_of([] { es::parse_bulk_response(R"({"errors":false})", 1); }),
            "items is missing or not an array");
  EXPECT_EQ(error_of([] { es::parse_bulk_response(R"({"errors":"no","items":[]})", 0); }),
            "errors is not a boolean");
  EXPECT_EQ(
      error_of([] { es::parse_bulk_response(R"({"errors":false,"items":[{"index":{"status":201}}]})", 2); }),
      "items has 1 entries for 2 sent");
  EXPECT_EQ(error_of([] {
              es::parse_bulk_response(R"({"items":[{"index":{"status":201}},{"index":{"status":"ok"}}]})", 2);
            }),
            "items[1].status is missing or not a number");
  EXPECT_EQ(error_of([] { es::parse_bulk_response(R"({"items":[42]})", 1); }),
            "items[0] is not an object holding one action");
}

TEST(ElasticsearchBackoff, WaitsGrowExponentiallyWithJitterUpToTheCap) {
  es::Backoff backoff(
      {.initial = std::chrono::milliseconds{100}, .max = std::chrono::milliseconds{1000}, .multiplier = 2.0},
      42);
  const int64_t expected_ceiling[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (const int64_t ceiling : expected_ceiling) {
    const int64_t wait = backoff.next_delay().count();
    EXPECT_GE(wait, ceiling / 2);
    EXPECT_LE(wait, ceiling);
  }
  EXPECT_EQ(backoff.failures(), 7u);
  for (int i = 0; i < 200; ++i) EXPECT_LE(backoff.next_delay().count(), 1000);  // no overflow past the cap
  backoff.reset();
  EXPECT_EQ(backoff.failures(), 0u);
  const int64_t first = backoff.next_delay().count();
  EXPECT_GE(first, 50);
  EXPECT_LE(first, 100);
}

TEST(ElasticsearchBackoff, JitterSpreadsTheWaits) {
  // Two hosts failing together should not retry in step: different seeds, different waits.
  std::vector<int64_t> firsts;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    es::Backoff backoff({.initial = std::chrono::milliseconds{10'000}}, seed);
    firsts.push_back(backoff.next_delay().count());
  }
  std::sort(firsts.begin(), firsts.end());
  EXPECT_LT(firsts.front(), firsts.back());
}

TEST(ElasticsearchBackoff, BadPoliciesAreRefused) {
  EXPECT_THROW(es::Backoff({.initial = std::chrono::milliseconds{-1}}), std::invalid_argument);
  EXPECT_THROW(es::Backoff({.initial = std::chrono::milliseconds{10}, .max = std::chrono::milliseconds{5}}),
               std::invalid_argument);
  EXPECT_THROW(es::Backoff({.multiplier = 0.5}), std::invalid_argument);
  es::Backoff none({.initial = std::chrono::milliseconds{0}, .max = std::chrono::milliseconds{0}});
  EXPECT_EQ(none.next_delay().count(), 0);
}

TEST(ElasticsearchBuffer, AFullBufferDropsTheNewestAndCountsThem) {
  es::RecordBuffer buffer(3, 1 << 20);
  std::vector<LogRecord> records(5);
  for (size_t i = 0; i < records.size(); ++i) records[i].body = "r" + std::to_string(i);
  EXPECT_EQ(buffer.offer(records), 3u);
  EXPECT_EQ(buffer.dropped(), 2u);
  EXPECT_EQ(buffer.offer(records), 0u);
  EXPECT_EQ(buffer.dropped(), 7u);
  const std::vector<LogRecord> kept = buffer.take(10);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].body, "r0");
  EXPECT_EQ(kept[2].body, "r2");
}

TEST(ElasticsearchBuffer, TakenRecordsHoldTheirPlaceUntilReleasedAndComeBackFirst) {
  es::RecordBuffer buffer(4, 1 << 20);
  std::vector<LogRecord> records(4);
  for (size_t i = 0; i < records.size(); ++i) records[i].body = "r" + std::to_string(i);
  ASSERT_EQ(buffer.offer(records), 4u);
  std::vector<LogRecord> batch = buffer.take(2);
  EXPECT_EQ(buffer.size(), 2u);
  EXPECT_EQ(buffer.held(), 4u);
  EXPECT_EQ(buffer.offer(records), 0u);  // in flight still counts: giving it back must fit
  buffer.give_back(std::move(batch));
  EXPECT_EQ(buffer.size(), 4u);
  std::vector<LogRecord> again = buffer.take(4);
  ASSERT_EQ(again.size(), 4u);
  EXPECT_EQ(again[0].body, "r0");
  EXPECT_EQ(again[1].body, "r1");
  EXPECT_EQ(again[3].body, "r3");
  buffer.release(again);
  EXPECT_EQ(buffer.held(), 0u);
  EXPECT_EQ(buffer.offer(records), 4u);
}

TEST(ElasticsearchBuffer, TheByteLimitBoundsBigRecords) {
  LogRecord big;
  big.body.assign(1000, 'x');
  const size_t one = es::RecordBuffer::estimated_bytes(big);
  es::RecordBuffer buffer(100, 2 * one + one / 2);
  std::vector<LogRecord> records(5, big);
  EXPECT_EQ(buffer.offer(records), 2u);
  EXPECT_EQ(buffer.dropped(), 3u);
  buffer.release(buffer.take(1));
  EXPECT_EQ(buffer.offer(records), 1u);
  EXPECT_THROW(es::RecordBuffer(0, 1), std::invalid_argument);
  EXPECT_THROW(es::RecordBuffer(1, 0), std::invalid_argument);
}

// The template in config/ maps every field a document can carry, with the types Kibana needs.
TEST(ElasticsearchTemplate, MapsEveryFieldTheDocumentsUse) {
  std::ifstream file(GV_ES_TEMPLATE);
  ASSERT_TRUE(file) << GV_ES_TEMPLATE;
  const nlohmann::json index_template = nlohmann::json::parse(file);
  ASSERT_TRUE(index_template["index_patterns"].is_array());
  const std::string pattern = index_template["index_patterns"].at(0);
  ASSERT_EQ(pattern, "gameverse-logs-*");
  EXPECT_TRUE(
      es::index_name(es::kDefaultIndexPattern, kSample).starts_with(pattern.substr(0, pattern.size() - 1)));
  const nlohmann::json& properties = index_template["template"]["mappings"]["properties"];
  ASSERT_TRUE(properties.is_object());

  // Walk a full document: every leaf must reach a mapped field (a flattened field takes its
  // whole subtree).
  std::vector<std::string> unmapped;
  std::function<void(const nlohmann::json&, const nlohmann::json&, const std::string&)> walk =
      [&](const nlohmann::json& value, const nlohmann::json& mapped, const std::string& path) {
        for (const auto& [key, child] : value.items()) {
          const std::string here = path.empty() ? key : path + "." + key;
          if (!mapped.contains(key)) {
            unmapped.push_back(here);
            continue;
          }
          const nlohmann::json& field = mapped[key];
          if (child.is_object() && field.value("type", "") != "flattened") {
            walk(child, field.value("properties", nlohmann::json::object()), here);
          }
        }
      };
  walk(es::document(full_record()), properties, "");
  EXPECT_TRUE(unmapped.empty()) << nlohmann::json(unmapped).dump();

  const auto type_of = [&](const nlohmann::json& field) { return field.value("type", std::string()); };
  EXPECT_TRUE(type_of(properties["@timestamp"]).starts_with("date"));
  EXPECT_TRUE(type_of(properties["observed_timestamp"]).starts_with("date"));
  EXPECT_EQ(type_of(properties["severity_text"]), "keyword");
  EXPECT_EQ(type_of(properties["service"]["properties"]["name"]), "keyword");
  EXPECT_EQ(type_of(properties["host"]["properties"]["name"]), "keyword");
  EXPECT_EQ(type_of(properties["gameverse"]["properties"]["plugin"]), "keyword");
  EXPECT_EQ(type_of(properties["gameverse"]["properties"]["request_id"]), "keyword");
  EXPECT_EQ(type_of(properties["trace_id"]), "keyword");
  EXPECT_EQ(type_of(properties["span_id"]), "keyword");
  EXPECT_EQ(type_of(properties["message"]), "text");
  EXPECT_EQ(type_of(properties["message"]["fields"]["keyword"]), "keyword");
  EXPECT_EQ(type_of(properties["attributes"]), "flattened");
}
