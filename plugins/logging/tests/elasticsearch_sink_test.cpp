// The Elasticsearch sink against a real HTTP receiver on loopback (Boost.Beast, on a thread of the
// test), which checks nothing itself but records every request and answers from a script: the
// tests check the format and inject 429s, 503s, per-item errors, silence and overflow.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bulk_receiver.hpp"
#include "infrastructure/elasticsearch_sink.hpp"
#include "loopback.hpp"
#include "run_command.hpp"
#include "temp_dir.hpp"

namespace es = gameverse::logging::elasticsearch;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using gameverse::logging::LogRecord;
using tcp = asio::ip::tcp;
using namespace gameverse::testing::bulk;

namespace {
// Time for the sink's backoff, moved by hand: no test waits for a wait.
struct ManualClock {
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
};

es::SinkOptions options_for(const std::string& url, ManualClock& clock) {
  es::SinkOptions options;
  options.url = url;
  options.timeout = std::chrono::milliseconds{5'000};
  options.backoff = {.initial = std::chrono::hours{1}, .max = std::chrono::hours{2}};
  options.clock = [&clock] { return clock.now; };
  return options;
}

std::vector<LogRecord> records(size_t count, const std::string& prefix = "record ") {
  std::vector<LogRecord> out(count);
  for (size_t i = 0; i < count; ++i) {
    out[i].time_unix_nano = 1796023359123456789 + static_cast<int64_t>(i);
    out[i].observed_unix_nano = out[i].time_unix_nano;
    out[i].severity_number = 9;
    out[i].service = "gameverse";
    out[i].plugin = "chat";
    out[i].generation = 2;
    out[i].body = prefix + std::to_string(i);
    out[i].attributes = {{"room", "lobby"}};
  }
  return out;
}

// The messages of a request's documents, in order.
std::vector<std::string> messages_of(const Received& request) {
  std::vector<std::string> messages;
  const std::vector<std::string> lines = lines_of(request.body);
  for (size_t i = 1; i < lines.size(); i += 2) {
    messages.push_back(nlohmann::json::parse(lines[i], nullptr, false).value("message", "?"));
  }
  return messages;
}

std::vector<std::string> messages_of(const std::vector<Received>& requests) {
  std::vector<std::string> messages;
  for (const Received& request : requests) {
    for (std::string& message : messages_of(request)) messages.push_back(std::move(message));
  }
  return messages;
}

// What Elasticsearch's _bulk endpoint requires of a request.
void expect_bulk_format(const Received& request, const std::string& path = "/_bulk") {
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target.substr(0, request.target.find('?')), path);
  EXPECT_EQ(request.content_type, "application/x-ndjson");
  ASSERT_FALSE(request.body.empty());
  EXPECT_EQ(request.body.back(), '\n') << "the body must end in a newline";
  const std::vector<std::string> lines = lines_of(request.body);
  ASSERT_EQ(lines.size() % 2, 0u) << "action and document lines come in pairs";
  for (size_t i = 0; i < lines.size(); ++i) {
    const nlohmann::json line = nlohmann::json::parse(lines[i], nullptr, false);
    ASSERT_FALSE(line.is_discarded()) << "line " << i << " is not JSON: " << lines[i];
    ASSERT_TRUE(line.is_object()) << lines[i];
    if (i % 2 == 0) {
      ASSERT_TRUE(line.contains("index")) << "line " << i << " is not an action: " << lines[i];
      EXPECT_EQ(line["index"]["_index"], "gameverse-logs-2026.11.30");
    } else {
      EXPECT_FALSE(line.contains("index")) << "line " << i << " should be a document";
      EXPECT_TRUE(line.contains("@timestamp"));
      EXPECT_TRUE(line.contains("message"));
    }
  }
}

std::vector<std::string> expected_messages(size_t count, const std::string& prefix = "record ") {
  std::vector<std::string> messages;
  for (size_t i = 0; i < count; ++i) messages.push_back(prefix + std::to_string(i));
  return messages;
}

}  // namespace

TEST(ElasticsearchSink, ShipsBatchesInTheBulkFormatOnOneConnection) {
  BulkReceiver receiver([](const Received& request, size_t) { return all_stored(request); });
  ManualClock clock;
  es::SinkOptions options = options_for(receiver.url() + "/es/", clock);
  options.batch_records = 10;
  options.authorization = "ApiKey c2VjcmV0";
  es::ElasticsearchSink sink(std::move(options));

  EXPECT_EQ(sink.offer(records(25)), 25u);
  EXPECT_EQ(sink.buffered(), 25u);
  const es::FlushReport report = sink.flush();

  EXPECT_EQ(report.requests, 3u);
  EXPECT_EQ(report.stored, 25u);
  EXPECT_EQ(report.error, "");
  EXPECT_EQ(sink.shipped(), 25u);
  EXPECT_EQ(sink.buffered(), 0u);
  EXPECT_EQ(sink.failed_requests(), 0u);
  const std::vector<Received> requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u);
  for (const Received& request : requests) {
    expect_bulk_format(request, "/es/_bulk");
    EXPECT_EQ(request.authorization, "ApiKey c2VjcmV0");
    EXPECT_EQ(request.connection, 1) << "the batches of one flush share a kept-alive connection";
  }
  EXPECT_EQ(messages_of(requests[0]).size(), 10u);
  EXPECT_EQ(messages_of(requests[2]).size(), 5u);
  EXPECT_EQ(messages_of(requests), expected_messages(25));

  // Nothing waiting: no request.
  EXPECT_EQ(sink.flush().requests, 0u);
  EXPECT_EQ(receiver.requests().size(), 3u);
}

TEST(ElasticsearchSink, A429IsRetriedAfterTheBackoffAndNothingIsLost) {
  BulkReceiver receiver([](const Received& request, size_t index) {
    if (index == 0) return Reply{429, R"({"error":{"type":"es_rejected_execution_exception"},"status":429})"};
    return all_stored(request);
  });
  ManualClock clock;
  es::ElasticsearchSink sink(options_for(receiver.url(), clock));
  sink.offer(records(5));

  const es::FlushReport refused = sink.flush();
  EXPECT_EQ(refused.requests, 1u);
  EXPECT_EQ(refused.stored, 0u);
  EXPECT_EQ(refused.retrying, 5u);
  EXPECT_NE(refused.error.find("HTTP 429"), std::string::npos) << refused.error;
  EXPECT_EQ(sink.failed_requests(), 1u);
  EXPECT_EQ(sink.buffered(), 5u);

  // The backoff (at least half an hour here) is not over: nothing goes out.
  const es::FlushReport waiting = sink.flush();
  EXPECT_TRUE(waiting.backing_off);
  EXPECT_EQ(waiting.requests, 0u);
  EXPECT_EQ(receiver.requests().size(), 1u);

  clock.now += std::chrono::hours{3};
  const es::FlushReport retried = sink.flush();
  EXPECT_EQ(retried.stored, 5u);
  EXPECT_EQ(sink.shipped(), 5u);
  EXPECT_EQ(sink.retried(), 5u);
  EXPECT_EQ(sink.buffered(), 0u);
  const std::vector<Received> requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u);
  expect_bulk_format(requests[1]);
  EXPECT_EQ(messages_of(requests[1]), expected_messages(5));
}

TEST(ElasticsearchSink, A503AndOtherFailedRequestsKeepTheRecords) {
  BulkReceiver receiver([](const Received& request, size_t index) {
    if (index == 0) return Reply{503, "{\"error\":\"unavailable\"}\n"};
    if (index == 1) return Reply{401, "missing authentication credentials"};
    if (index == 2) return Reply{200, "<html>a proxy's page</html>"};
    return all_stored(request);
  });
  ManualClock clock;
  es::ElasticsearchSink sink(options_for(receiver.url(), clock));
  sink.offer(records(3));

  const es::FlushReport unavailable = sink.flush();
  EXPECT_NE(unavailable.error.find("HTTP 503"), std::string::npos) << unavailable.error;
  clock.now += std::chrono::hours{3};
  const es::FlushReport unauthorised = sink.flush();
  EXPECT_EQ(unauthorised.error, "HTTP 401: missing authentication credentials");
  clock.now += std::chrono::hours{3};
  const es::FlushReport unreadable = sink.flush();
  EXPECT_EQ(unreadable.error, "unreadable _bulk answer: the _bulk response is not JSON");
  EXPECT_EQ(sink.failed_requests(), 3u);
  EXPECT_EQ(sink.shipped(), 0u);
  EXPECT_EQ(sink.buffered(), 3u);

  clock.now += std::chrono::hours{3};
  EXPECT_EQ(sink.flush().stored, 3u);
  EXPECT_EQ(sink.shipped(), 3u);
  EXPECT_EQ(sink.rejected(), 0u);
  EXPECT_EQ(messages_of(receiver.requests().back()), expected_messages(3));
}

TEST(ElasticsearchSink, PerItemErrorsRetryBusyItemsAndRejectMappingErrors) {
  // Items 1 and 4: 429; item 2: a mapping error; item 3: 503; the rest stored.
  BulkReceiver receiver([](const Received& request, size_t index) {
    if (index > 0) return all_stored(request);
    return bulk_answer(request, [](size_t i) {
      switch (i) {
        case 1:
        case 4: return 429;
        case 2: return 400;
        case 3: return 503;
        default: return 201;
      }
    });
  });
  ManualClock clock;
  es::ElasticsearchSink sink(options_for(receiver.url(), clock));
  sink.offer(records(6));

  const es::FlushReport first = sink.flush();
  EXPECT_EQ(first.requests, 1u);
  EXPECT_EQ(first.stored, 2u);
  EXPECT_EQ(first.retrying, 3u);
  EXPECT_EQ(first.rejected, 1u);
  EXPECT_EQ(first.error, "") << "the request itself went well";
  ASSERT_EQ(first.rejections.size(), 1u);
  EXPECT_EQ(first.rejections[0], "mapper_parsing_exception: failed to parse field [gameverse.generation]");
  EXPECT_EQ(sink.shipped(), 2u);
  EXPECT_EQ(sink.rejected(), 1u);
  EXPECT_EQ(sink.failed_requests(), 0u);
  EXPECT_EQ(sink.buffered(), 3u);

  EXPECT_TRUE(sink.flush().backing_off);
  clock.now += std::chrono::hours{3};
  const es::FlushReport second = sink.flush();
  EXPECT_EQ(second.stored, 3u);
  const std::vector<Received> requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u);
  expect_bulk_format(requests[1]);
  // Only the busy items went again, in their order; the rejected one did not.
  EXPECT_EQ(messages_of(requests[1]), (std::vector<std::string>{"record 1", "record 3", "record 4"}));
  EXPECT_EQ(sink.shipped(), 5u);
  EXPECT_EQ(sink.rejected(), 1u);
  EXPECT_EQ(sink.retried(), 3u);
  EXPECT_EQ(sink.buffered(), 0u);
}

TEST(ElasticsearchSink, AReceiverThatNeverAnswersTimesOutAndTheRecordsWait) {
  std::atomic<bool> silent{true};
  BulkReceiver receiver([&silent](const Received& request, size_t) {
    if (silent) return Reply{.status = 200, .body = "", .never_answer = true};
    return all_stored(request);
  });
  ManualClock clock;
  es::SinkOptions options = options_for(receiver.url(), clock);
  options.timeout = std::chrono::milliseconds{300};
  es::ElasticsearchSink sink(std::move(options));
  sink.offer(records(4));

  const es::FlushReport timed_out = sink.flush();  // returns: the test would hang otherwise
  EXPECT_EQ(timed_out.error, "no answer within 300 ms");
  EXPECT_EQ(timed_out.retrying, 4u);
  EXPECT_EQ(sink.failed_requests(), 1u);
  EXPECT_EQ(sink.buffered(), 4u);
  ASSERT_EQ(receiver.requests().size(), 1u);
  expect_bulk_format(receiver.requests()[0]);

  silent = false;
  clock.now += std::chrono::hours{3};
  EXPECT_EQ(sink.flush().stored, 4u);
  const std::vector<Received> requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_NE(requests[1].connection, requests[0].connection) << "a timed-out connection is not reused";
  EXPECT_EQ(messages_of(requests[1]), expected_messages(4));
}

TEST(ElasticsearchSink, NoReceiverAtAllIsAFailedRequest) {
  ManualClock clock;
  const int port = gameverse::testing::free_port();
  es::ElasticsearchSink sink(options_for("http://127.0.0.1:" + std::to_string(port), clock));
  sink.offer(records(2));
  const es::FlushReport report = sink.flush();
  EXPECT_EQ(report.error.rfind("cannot connect to 127.0.0.1:" + std::to_string(port), 0), 0u) << report.error;
  EXPECT_EQ(sink.failed_requests(), 1u);
  EXPECT_EQ(sink.buffered(), 2u);
}

TEST(ElasticsearchSink, AFullBufferDropsTheNewestRecordsAndCountsThem) {
  BulkReceiver receiver([](const Received& request, size_t) { return all_stored(request); });
  ManualClock clock;
  es::SinkOptions options = options_for(receiver.url(), clock);
  options.buffer_records = 10;
  options.batch_records = 4;
  es::ElasticsearchSink sink(std::move(options));

  EXPECT_EQ(sink.offer(records(25)), 10u);
  EXPECT_EQ(sink.dropped(), 15u);
  EXPECT_EQ(sink.offer(records(1, "late ")), 0u);
  EXPECT_EQ(sink.dropped(), 16u);
  EXPECT_EQ(sink.buffered(), 10u);

  const es::FlushReport report = sink.flush();
  EXPECT_EQ(report.requests, 3u);
  EXPECT_EQ(sink.shipped(), 10u);
  EXPECT_EQ(messages_of(receiver.requests()), expected_messages(10));  // the oldest were kept
  EXPECT_EQ(sink.offer(records(1, "room again ")), 1u);
  EXPECT_EQ(sink.dropped(), 16u);
}

TEST(ElasticsearchSink, RecordsOfferedDuringAFlushWaitForTheNextOne) {
  // The receiver offers more records, and flushes, while it holds the first request: offer() does
  // not wait for the flush, a second flush does not wait for the first, and the first does not
  // chase what arrived after it started.
  ManualClock clock;
  std::unique_ptr<es::ElasticsearchSink> sink;
  size_t offered_during_flush = 0;
  es::FlushReport second_flush;
  second_flush.requests = 99;
  BulkReceiver receiver([&](const Received& request, size_t index) {
    if (index == 0) {
      offered_during_flush = sink->offer(records(3, "later "));
      second_flush = sink->flush();  // another timer firing meanwhile: returns at once
    }
    return all_stored(request);
  });
  sink = std::make_unique<es::ElasticsearchSink>(options_for(receiver.url(), clock));
  sink->offer(records(2));
  EXPECT_EQ(sink->flush().stored, 2u);
  EXPECT_EQ(offered_during_flush, 3u);
  EXPECT_EQ(second_flush.requests, 0u);
  EXPECT_EQ(second_flush.stored, 0u);
  EXPECT_EQ(sink->buffered(), 3u);
  EXPECT_EQ(sink->flush().stored, 3u);
  EXPECT_EQ(messages_of(receiver.requests()[1]), expected_messages(3, "later "));
}

TEST(ElasticsearchSink, BadOptionsAreRefusedNamingTheKey) {
  ManualClock clock;
  const auto error_for = [&](const std::function<void(es::SinkOptions&)>& change) -> std::string {
    es::SinkOptions options = options_for("http://127.0.0.1:9200", clock);
    change(options);
    try {
      es::ElasticsearchSink sink(std::move(options));
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_EQ(error_for([](auto&) {}), "(accepted)");
  EXPECT_EQ(error_for([](auto& o) { o.url = "ftp://es:9200"; }),
            "elasticsearch_url: must start with http:// or https://");
  EXPECT_EQ(error_for([](auto& o) { o.url = "es:9200"; }),
            "elasticsearch_url: must start with http:// or https://");
  EXPECT_EQ(error_for([](auto& o) { o.ca_file = "/etc/ssl/certs/ca-certificates.crt"; }),
            "elasticsearch_ca_file: only for https:// URLs");
  EXPECT_EQ(error_for([](auto& o) {
              o.url = "https://es:9200";
              o.ca_file = "/nonexistent/ca.pem";
            }).rfind("elasticsearch_ca_file: cannot load /nonexistent/ca.pem: ", 0),
            0u);
  EXPECT_EQ(error_for([](auto& o) { o.url = "http://elastic:changeme@es:9200"; }),
            "elasticsearch_url: no user:password@ in the URL; set elasticsearch_authorization");
  EXPECT_EQ(error_for([](auto& o) { o.url = "http://es:92000"; }),
            "elasticsearch_url: the port is not in 1..65535");
  EXPECT_EQ(error_for([](auto& o) { o.url = "http://es:port"; }),
            "elasticsearch_url: the port is not a number");
  EXPECT_EQ(error_for([](auto& o) { o.url = "http://es:9200/_bulk?refresh=true"; }),
            "elasticsearch_url: a query or fragment is not allowed");
  EXPECT_EQ(error_for([](auto& o) { o.url = "http://:9200"; }), "elasticsearch_url: no host");
  EXPECT_EQ(error_for([](auto& o) { o.index_pattern = "Logs"; }),
            "elasticsearch_index: index names must be lowercase");
  EXPECT_EQ(error_for([](auto& o) { o.authorization = "ApiKey x\r\nX-Evil: 1"; }),
            "elasticsearch_authorization: contains control characters or line breaks");
  EXPECT_EQ(error_for([](auto& o) { o.batch_records = 0; }),
            "elasticsearch_batch_records: must be at least 1");
  EXPECT_EQ(error_for([](auto& o) { o.buffer_records = 0; }),
            "elasticsearch_buffer_records: must be at least 1");
  EXPECT_EQ(error_for([](auto& o) { o.timeout = std::chrono::milliseconds{0}; }),
            "elasticsearch_timeout_ms: must be positive");
}

TEST(ElasticsearchSink, UrlsGiveHostPortAndPrefix) {
  const es::Endpoint plain = es::parse_endpoint("http://es.internal:9200");
  EXPECT_EQ(plain.host, "es.internal");
  EXPECT_EQ(plain.port, 9200);
  EXPECT_EQ(plain.bulk_target(), "/_bulk");
  EXPECT_FALSE(plain.tls);
  const es::Endpoint prefixed = es::parse_endpoint("HTTP://[::1]/search//");
  EXPECT_EQ(prefixed.host, "::1");
  EXPECT_EQ(prefixed.port, 80);
  const es::Endpoint secure = es::parse_endpoint("https://es.example");
  EXPECT_TRUE(secure.tls);
  EXPECT_EQ(secure.port, 443);
  EXPECT_EQ(prefixed.bulk_target(), "/search/_bulk");
}

TEST(ElasticsearchSink, WholeRequestsRefusedAsTooLargeAreSplitUntilTheyFit) {
  // More than two documents is "too large".
  BulkReceiver receiver([](const Received& request, size_t) {
    if (lines_of(request.body).size() > 4) return Reply{413, "request entity too large"};
    return all_stored(request);
  });
  ManualClock clock;
  es::ElasticsearchSink sink(options_for(receiver.url(), clock));
  sink.offer(records(5));

  const es::FlushReport report = sink.flush();
  EXPECT_EQ(report.stored, 5u);
  EXPECT_EQ(report.rejected, 0u);
  EXPECT_EQ(report.error, "HTTP 413: request entity too large");
  EXPECT_EQ(sink.shipped(), 5u);
  EXPECT_EQ(sink.failed_requests(), 1u);
  EXPECT_EQ(sink.buffered(), 0u);
  const std::vector<Received> requests = receiver.requests();
  ASSERT_EQ(requests.size(), 4u);  // 5 refused, then 2 + 2 + 1
  EXPECT_EQ(messages_of(requests[1]).size(), 2u);
  std::vector<Received> stored(requests.begin() + 1, requests.end());
  EXPECT_EQ(messages_of(stored), expected_messages(5));
}

TEST(ElasticsearchSink, ARecordThatMakesTheWholeRequestBadIsIsolatedAndRejected) {
  BulkReceiver receiver([](const Received& request, size_t) {
    if (request.body.find("poison") != std::string::npos) return Reply{400, R"({"error":"parse_exception"})"};
    return all_stored(request);
  });
  ManualClock clock;
  es::ElasticsearchSink sink(options_for(receiver.url(), clock));
  std::vector<LogRecord> batch = records(4);
  batch[1].body = "poison";
  sink.offer(batch);

  const es::FlushReport report = sink.flush();
  EXPECT_EQ(report.stored, 3u);
  EXPECT_EQ(report.rejected, 1u);
  ASSERT_EQ(report.rejections.size(), 1u);
  EXPECT_EQ(report.rejections[0], R"(HTTP 400: {"error":"parse_exception"})");
  EXPECT_EQ(sink.rejected(), 1u);
  EXPECT_EQ(sink.shipped(), 3u);
  EXPECT_EQ(sink.buffered(), 0u);
  std::vector<std::string> shipped;
  for (const Received& request : receiver.requests()) {
    if (request.body.find("poison") == std::string::npos) {
      for (const std::string& message : messages_of(request)) shipped.push_back(message);
    }
  }
  EXPECT_EQ(shipped, (std::vector<std::string>{"record 0", "record 2", "record 3"}));
  EXPECT_FALSE(sink.flush().backing_off);
}

TEST(ElasticsearchSink, ShipsOverHttpsToAServerWhoseCertificateItTrusts) {
  const TestCertificate certificate;
  BulkReceiver receiver([](const Received& request, size_t) { return all_stored(request); }, &certificate);
  ManualClock clock;
  es::SinkOptions options = options_for(receiver.url(), clock);
  options.ca_file = certificate.cert();
  options.batch_records = 2;
  es::ElasticsearchSink sink(std::move(options));
  sink.offer(records(3));

  const es::FlushReport report = sink.flush();
  EXPECT_EQ(report.error, "");
  EXPECT_EQ(report.stored, 3u);
  const std::vector<Received> requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u);
  for (const Received& request : requests) {
    expect_bulk_format(request);
    EXPECT_EQ(request.connection, 1);
  }
  EXPECT_EQ(messages_of(requests), expected_messages(3));
}

TEST(ElasticsearchSink, RefusesAnHttpsServerItCannotVerify) {
  const TestCertificate certificate;
  BulkReceiver receiver([](const Received& request, size_t) { return all_stored(request); }, &certificate);
  ManualClock clock;
  // The system's CAs never signed the test's certificate.
  es::ElasticsearchSink untrusting(options_for(receiver.url(), clock));
  untrusting.offer(records(1));
  const es::FlushReport untrusted = untrusting.flush();
  EXPECT_NE(untrusted.error.find("TLS handshake with 127.0.0.1"), std::string::npos) << untrusted.error;
  EXPECT_NE(untrusted.error.find("certificate verify failed"), std::string::npos) << untrusted.error;

  // Trusted, but issued for another name than the address asked for.
  const TestCertificate elsewhere("DNS:elsewhere.example");
  BulkReceiver impostor([](const Received& request, size_t) { return all_stored(request); }, &elsewhere);
  es::SinkOptions options = options_for(impostor.url(), clock);
  options.ca_file = elsewhere.cert();
  es::ElasticsearchSink misnamed(std::move(options));
  misnamed.offer(records(1));
  const es::FlushReport wrong_name = misnamed.flush();
  EXPECT_NE(wrong_name.error.find("certificate verify failed"), std::string::npos) << wrong_name.error;

  EXPECT_TRUE(receiver.requests().empty());
  EXPECT_TRUE(impostor.requests().empty());
  EXPECT_EQ(untrusting.buffered(), 1u);
  EXPECT_EQ(misnamed.failed_requests(), 1u);
}
