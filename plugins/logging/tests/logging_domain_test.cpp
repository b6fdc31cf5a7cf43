// The logging domain without a host: keys and cursors, what is accepted, queries in both orders
// with cursors and filters, retention by age and by size per severity.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

#include "domain/log_service.hpp"
#include "in_memory_log_repository.hpp"

namespace gameverse::logging {
namespace {

// 2026-11-30T07:00:00Z
constexpr int64_t kSevenOClock = 1'796'022'000LL * kNanosPerSecond;

LogRecord record(int64_t time, int32_t severity, std::string body, std::string service = "game") {
  LogRecord r;
  r.time_unix_nano = time;
  r.severity_number = severity;
  r.body = std::move(body);
  r.service = std::move(service);
  return r;
}

LogSettings settings() {
  LogSettings s;
  s.max_age_ns.fill(30 * 24 * kNanosPerHour);
  s.max_groups_per_append = 100000;
  return s;
}

class LogServiceTest : public ::testing::Test {
 protected:
  InMemoryLogRepository repository;
  int64_t now = kSevenOClock + 3 * kNanosPerHour;
  LogService service{repository, settings(), "abc", [this] { return now; }};

  // Every matching record, page by page.
  std::vector<Entry> all(const LogFilter& filter, bool newest_first, size_t page_size, LogService& s) {
    std::vector<Entry> out;
    std::optional<Position> after;
    for (int pages = 0; pages < 10000; ++pages) {
      Page page = s.query(filter, newest_first, page_size, after);
      for (Entry& e : page.entries) out.push_back(std::move(e));
      if (!page.next) return out;
      EXPECT_NE(page.next, after) << "a page gave back the cursor it was asked with";
      if (page.next == after) return out;
      after = page.next;
    }
    ADD_FAILURE() << "the pages never ended";
    return out;
  }
};

TEST(LogKeys, HoursRoundTripAndBadNamesAreRefused) {
  EXPECT_EQ(hour_of(kSevenOClock), "2026113007");
  EXPECT_EQ(hour_of(kSevenOClock + kNanosPerHour - 1), "2026113007");
  EXPECT_EQ(hour_start("2026113007"), kSevenOClock);
  EXPECT_FALSE(hour_start("2026113024"));
  EXPECT_FALSE(hour_start("2026023007"));
  EXPECT_FALSE(hour_start("20261130"));
  EXPECT_FALSE(hour_start("2026x13007"));
}

TEST(LogKeys, SeverityFamiliesFollowOpenTelemetry) {
  EXPECT_EQ(severity_family(0), 0);
  EXPECT_EQ(severity_family(1), 1);
  EXPECT_EQ(severity_family(8), 2);
  EXPECT_EQ(severity_family(9), 3);
  EXPECT_EQ(severity_family(16), 4);
  EXPECT_EQ(severity_family(17), 5);
  EXPECT_EQ(severity_family(24), 6);
  EXPECT_EQ(severity_family(99), 6);
}

TEST(LogKeys, CursorsRoundTripAndForgeriesAreRefusedWithAReason) {
  const Position p{kSevenOClock + 5, chunk_key(3, "2026113007", 4, "0000000000000000001-abc-0000000001"), 7};
  std::string error;
  EXPECT_EQ(decode_cursor(encode_cursor(p), &error), p) << error;
  for (const char* bad : {"", "c2.AAAA", "c1.!!!!", "c1.MTIz", "c1.MXwvLi4vZXRjfDE"}) {
    error.clear();
    EXPECT_FALSE(decode_cursor(bad, &error)) << bad;
    EXPECT_TRUE(error.starts_with("cursor: ")) << bad << ": " << error;
  }
  EXPECT_FALSE(decode_cursor(std::string(300, 'A'), &error));
}

TEST_F(LogServiceTest, EveryRecordComesBackOncePageByPageInEitherOrder) {
  std::vector<LogRecord> batch;
  for (int i = 0; i < 2500; ++i) {
    // Over three hours, out of order, several severities, some with the same time.
    const int64_t t = kSevenOClock + (static_cast<int64_t>(i) * 7919 % 2500) * 4 * kNanosPerSecond + (i % 3);
    batch.push_back(record(t, 1 + i % 24, "line " + std::to_string(i)));
  }
  const AppendResult result = service.append(batch);
  ASSERT_EQ(result.accepted, 2500u);
  ASSERT_EQ(result.rejected, 0u);

  for (bool newest_first : {true, false}) {
    const std::vector<Entry> got = all({}, newest_first, 97, service);
    ASSERT_EQ(got.size(), 2500u);
    std::set<std::string> bodies;
    for (size_t i = 0; i < got.size(); ++i) {
      bodies.insert(got[i].record.body);
      if (i > 0) {
        if (newest_first) {
          EXPECT_LT(got[i].position, got[i - 1].position);
        } else {
          EXPECT_LT(got[i - 1].position, got[i].position);
        }
      }
    }
    EXPECT_EQ(bodies.size(), 2500u);
  }
}

TEST_F(LogServiceTest, AScanBoundAnswersPartPagesThatStillReachTheEnd) {
  LogSettings s = settings();
  s.max_scan_records = 10;
  s.chunk_records = 5;
  LogService bounded(repository, s, "def", [this] { return now; });
  std::vector<LogRecord> batch;
  for (int i = 0; i < 300; ++i) batch.push_back(record(kSevenOClock + i * kNanosPerMinute / 3, 9, "x"));
  batch.back().body = "needle";
  ASSERT_EQ(bounded.append(batch).accepted, 300u);
  LogFilter filter;
  filter.text = "NEEDLE";
  const Page first = bounded.query(filter, false, 10, std::nullopt);
  EXPECT_TRUE(first.entries.empty());
  ASSERT_TRUE(first.next);
  const std::vector<Entry> got = all(filter, false, 10, bounded);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].record.body, "needle");
}

TEST_F(LogServiceTest, AMinuteOverTheScanBoundIsReadWholeAndPagingGoesOnInEitherOrder) {
  LogSettings s = settings();
  s.max_scan_records = 10;
  s.chunk_records = 7;
  LogService bounded(repository, s, "eee", [this] { return now; });
  std::vector<LogRecord> batch;
  for (int i = 0; i < 100; ++i) batch.push_back(record(kSevenOClock + i, 9, "busy " + std::to_string(i)));
  batch.push_back(record(kSevenOClock + kNanosPerMinute, 9, "next minute"));
  ASSERT_EQ(bounded.append(batch).accepted, 101u);
  for (bool newest_first : {true, false}) {
    const std::vector<Entry> got = all({}, newest_first, 3, bounded);
    ASSERT_EQ(got.size(), 101u) << newest_first;
    EXPECT_EQ(got[newest_first ? 0 : 100].record.body, "next minute");
    EXPECT_EQ(got[newest_first ? 100 : 0].record.body, "busy 0");
  }
}

TEST_F(LogServiceTest, ABatchSpreadOverTooManyMinutesIsRefusedPastTheBound) {
  LogSettings s = settings();
  s.max_groups_per_append = 4;
  LogService bounded(repository, s, "fff", [this] { return now; });
  std::vector<LogRecord> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(record(kSevenOClock + i * kNanosPerMinute, 9, "spread"));
  batch.push_back(record(kSevenOClock, 9, "same minute as the first"));
  const AppendResult result = bounded.append(batch);
  EXPECT_EQ(result.accepted, 5u);
  EXPECT_EQ(result.rejected, 6u);
  EXPECT_NE(result.rejected_reason.find("more than 4 minutes and severities"), std::string::npos)
      << result.rejected_reason;
  EXPECT_EQ(repository.chunk_map.size(), 4u);
}

TEST_F(LogServiceTest, FiltersSelectBySeverityServicePluginRequestAttributeAndText) {
  LogRecord a = record(kSevenOClock + 1, 17, "Disk FULL on shard 3", "inventory");
  a.plugin = "inventory";
  a.request_id = "req-1";
  a.attributes = {{"shard", "3"}};
  LogRecord b = record(kSevenOClock + 2, 9, "player joined", "chat");
  b.request_id = "req-1";
  LogRecord c = record(kSevenOClock + 3, 5, "debug detail", "chat");
  c.attributes = {{"shard", "4"}};
  LogRecord d = record(kSevenOClock + 4, 9, "request id with a slash", "chat");
  d.request_id = "a/b";  // not indexable: found by a scan
  service.append({a, b, c, d});

  auto bodies = [&](const LogFilter& f) {
    std::vector<std::string> out;
    for (const Entry& e : all(f, false, 10, service)) out.push_back(e.record.body);
    return out;
  };
  LogFilter f;
  f.min_severity = 13;
  EXPECT_EQ(bodies(f), std::vector<std::string>{"Disk FULL on shard 3"});
  f = {};
  f.services = {"chat"};
  EXPECT_EQ(bodies(f).size(), 3u);
  f = {};
  f.plugins = {"inventory"};
  EXPECT_EQ(bodies(f), std::vector<std::string>{"Disk FULL on shard 3"});
  f = {};
  f.request_id = "req-1";
  EXPECT_EQ(bodies(f), (std::vector<std::string>{"Disk FULL on shard 3", "player joined"}));
  f.request_id = "a/b";
  EXPECT_EQ(bodies(f), std::vector<std::string>{"request id with a slash"});
  f = {};
  f.attributes = {{"shard", "4"}};
  EXPECT_EQ(bodies(f), std::vector<std::string>{"debug detail"});
  f = {};
  f.text = "disk full";
  EXPECT_EQ(bodies(f), std::vector<std::string>{"Disk FULL on shard 3"});
  f = {};
  f.from_unix_nano = kSevenOClock + 2;
  f.to_unix_nano = kSevenOClock + 4;
  EXPECT_EQ(bodies(f), (std::vector<std::string>{"player joined", "debug detail"}));
}

TEST_F(LogServiceTest, RecordsOutsideTheWindowAreRefusedAndCountedAndLongOnesCut) {
  LogRecord ahead = record(now + 6 * kNanosPerMinute, 9, "from the future");
  LogRecord old = record(now - 31 * 24 * kNanosPerHour, 9, "from last year");
  LogRecord untimed = record(0, 9, "no time");
  LogRecord long_one = record(now, 9, std::string(20000, 'x'));
  const AppendResult result = service.append({ahead, old, untimed, long_one});
  EXPECT_EQ(result.accepted, 2u);
  EXPECT_EQ(result.rejected, 2u);
  EXPECT_NE(result.rejected_reason.find("1 record(s): "), std::string::npos) << result.rejected_reason;
  const std::vector<Entry> got = all({}, true, 10, service);
  ASSERT_EQ(got.size(), 2u);
  for (const Entry& e : got) {
    EXPECT_EQ(e.record.time_unix_nano, now);  // the untimed one took the time it was received
    if (e.record.body != "no time") {
      EXPECT_EQ(e.record.body.size(), 16384u);
      EXPECT_NE(std::find(e.record.attributes.begin(), e.record.attributes.end(),
                          Attribute{"gameverse.truncated", "true"}),
                e.record.attributes.end());
    }
  }
}

TEST_F(LogServiceTest, AFailedWriteStoresNothingAndCountsNothing) {
  repository.failing = true;
  EXPECT_THROW(service.append({record(now, 9, "lost?")}), std::runtime_error);
  repository.failing = false;
  EXPECT_TRUE(all({}, true, 10, service).empty());
  service.append({record(now, 9, "kept")});
  int64_t records = 0;
  for (const SizeEntry& s : repository.sizes()) records += s.records;
  EXPECT_EQ(records, 1);
}

TEST_F(LogServiceTest, RetentionDropsEachSeverityAfterItsOwnAge) {
  LogSettings s = settings();
  s.max_age_ns.fill(0);
  s.max_age_ns[static_cast<size_t>(severity_family(5))] = 2 * kNanosPerHour;    // DEBUG: 2 hours
  s.max_age_ns[static_cast<size_t>(severity_family(17))] = 48 * kNanosPerHour;  // ERROR: 2 days
  LogService aging(repository, s, "aaa", [this] { return now; });
  now = kSevenOClock + 90 * kNanosPerMinute;
  LogRecord debug = record(kSevenOClock, 5, "old debug");
  debug.request_id = "r1";
  aging.append({debug, record(kSevenOClock, 17, "old error"), record(now, 5, "new debug")});
  now = kSevenOClock + 3 * kNanosPerHour;  // the 07:00 hour ended 2 hours ago, the 08:00 hour not yet
  const RetentionReport report = aging.enforce_retention();
  EXPECT_EQ(report.hours_dropped, 1u);
  EXPECT_EQ(report.records_dropped, 1);
  std::vector<std::string> left;
  for (const Entry& e : all({}, false, 10, aging)) left.push_back(e.record.body);
  EXPECT_EQ(left, (std::vector<std::string>{"old error", "new debug"}));
  EXPECT_TRUE(repository.ref_set.empty());
  for (const std::string& marker : repository.marker_set) EXPECT_NE(marker, marker_key("2026113007", 0, 2));
}

TEST_F(LogServiceTest, OverTheSizeBoundTheLeastSevereOldestHoursGoFirst) {
  LogSettings s = settings();
  s.max_stored_bytes = 1;  // below anything: everything but what cannot go in time goes
  std::vector<LogRecord> batch;
  for (int hour = 0; hour < 3; ++hour) {
    batch.push_back(record(kSevenOClock + hour * kNanosPerHour, 5, "debug " + std::to_string(hour)));
    batch.push_back(record(kSevenOClock + hour * kNanosPerHour, 17, "error " + std::to_string(hour)));
  }
  service.append(batch);
  // Room for about four records: the three debug hours and the oldest error hour go.
  int64_t total = 0;
  for (const SizeEntry& e : repository.sizes()) total += e.bytes;
  s.max_stored_bytes = total * 2 / 6 + 1;
  LogService bounded(repository, s, "bbb", [this] { return now; });
  const RetentionReport report = bounded.enforce_retention();
  EXPECT_EQ(report.hours_dropped, 4u);
  std::vector<std::string> left;
  for (const Entry& e : all({}, false, 10, bounded)) left.push_back(e.record.body);
  EXPECT_EQ(left, (std::vector<std::string>{"error 1", "error 2"}));
  // The hour being written to is never dropped, however far over the bound.
  bounded.append({record(now, 5, "debug now")});
  bounded.enforce_retention();
  left.clear();
  for (const Entry& e : all({}, false, 10, bounded)) left.push_back(e.record.body);
  EXPECT_EQ(left.back(), "debug now");
}

TEST_F(LogServiceTest, AppendsFromManyThreadsAreAllStoredOnceWithTheirSizes) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 50; ++i) {
        service.append({record(kSevenOClock + t * 1000 + i, 9, std::to_string(t) + "/" + std::to_string(i))});
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const std::vector<Entry> got = all({}, false, 1000, service);
  std::set<std::string> bodies;
  for (const Entry& e : got) bodies.insert(e.record.body);
  EXPECT_EQ(got.size(), 400u);
  EXPECT_EQ(bodies.size(), 400u);
  int64_t records = 0;
  for (const SizeEntry& s : repository.sizes()) records += s.records;
  EXPECT_EQ(records, 400);
  EXPECT_LE(repository.commits, 400);
}

TEST_F(LogServiceTest, ChunksHoldAtMostTheirRecordCountAndOneMinuteOfOneSeverity) {
  LogSettings s = settings();
  s.chunk_records = 10;
  LogService small(repository, s, "ccc", [this] { return now; });
  std::vector<LogRecord> batch;
  for (int i = 0; i < 35; ++i) batch.push_back(record(kSevenOClock + i, 9, "a"));
  batch.push_back(record(kSevenOClock + kNanosPerMinute, 9, "next minute"));
  batch.push_back(record(kSevenOClock, 17, "an error"));
  const AppendResult result = small.append(batch);
  EXPECT_EQ(result.chunk_keys.size(), 6u);  // 4 of info in minute 0, 1 in minute 1, 1 of errors
  for (const auto& [key, records] : repository.chunk_map) EXPECT_LE(records.size(), 10u) << key;
}

}  // namespace
}  // namespace gameverse::logging
