// The metrics domain without a host: names, the series limits, cumulative-to-delta, windows and
// the query math.
#include <gtest/gtest.h>

#include <cmath>

#include "domain/metrics_service.hpp"
#include "domain/query.hpp"

namespace gameverse::metrics {
namespace {

std::vector<Resolution> resolutions() {
  return {{"10s", "w10s", 10, 3600}, {"1m", "w1m", 60, 86400}, {"1h", "w1h", 3600, 864000}};
}

Settings settings() {
  Settings s;
  s.limits = {3, 5, 100};
  s.max_metrics = 10;
  s.histogram_bounds = {1, 2, 5, 10};
  s.resolutions = resolutions();
  return s;
}

Measurement counter(const std::string& name, double v, Labels labels = {}) {
  return {name, std::move(labels), Measurement::Type::kCounterAdd, v, std::nullopt};
}

struct Recorded : Exposition {
  void record(const Family& f, const Labels&, double value) override { seen.emplace_back(f.name, value); }
  std::vector<std::pair<std::string, double>> seen;
};

TEST(MetricNames, PrometheusRulesWithTheFieldNamed) {
  EXPECT_EQ(metric_name_error("match_finished", "name"), "");
  EXPECT_EQ(metric_name_error("ns:rate_5m", "name"), "");
  EXPECT_EQ(metric_name_error("http.server.duration", "measurements[0].name"),
            "measurements[0].name 'http.server.duration' is not a Prometheus metric name "
            "([a-zA-Z_:][a-zA-Z0-9_:]*)");
  EXPECT_NE(metric_name_error("9lives", "name"), "");
  EXPECT_EQ(metric_name_error("", "name"), "name is empty");
  EXPECT_NE(label_name_error("a:b", "label"), "");
  EXPECT_NE(label_name_error("__name__", "label"), "");
  EXPECT_NE(label_name_error("le", "label"), "");
  EXPECT_EQ(label_name_error("map", "label"), "");
}

TEST(MetricSeriesKeys, SortedAndEscaped) {
  EXPECT_EQ(series_key("m", {{"b", "x\"y"}, {"a", "1"}}), "m{a=\"1\",b=\"x\\\"y\"}");
}

TEST(MetricSeriesLimiter, RefusesNewSeriesOverEachLimitNamingIt) {
  SeriesLimiter limiter({2, 3, 4});
  EXPECT_EQ(limiter.admit("p1", {{"m{a=\"1\"}", "m"}, {"m{a=\"2\"}", "m"}}, 0), "");
  EXPECT_EQ(limiter.admit("p1", {{"m{a=\"1\"}", "m"}}, 0), "") << "a known series is always admitted";
  const std::string per_metric = limiter.admit("p2", {{"m{a=\"3\"}", "m"}}, 0);
  EXPECT_NE(per_metric.find("max_series_per_metric = 2"), std::string::npos) << per_metric;
  EXPECT_EQ(limiter.admit("p1", {{"n{}", "n"}}, 0), "");
  const std::string per_sender = limiter.admit("p1", {{"o{}", "o"}}, 0);
  EXPECT_NE(per_sender.find("max_series_per_sender = 3"), std::string::npos) << per_sender;
  EXPECT_EQ(limiter.admit("p2", {{"o{}", "o"}}, 0), "");
  const std::string total = limiter.admit("p3", {{"q{}", "q"}}, 0);
  EXPECT_NE(total.find("max_series = 4"), std::string::npos) << total;
  EXPECT_EQ(limiter.size(), 4u) << "a refused batch adds nothing";
  EXPECT_EQ(limiter.forget_idle(1), 4u);
  EXPECT_EQ(limiter.admit("p3", {{"q{}", "q"}}, 2), "") << "idle series free their places";
}

TEST(MetricCumulative, DeltasResetsAndBaselines) {
  CumulativeTracker t(1000, 10);
  EXPECT_EQ(t.sum_delta("s", 2000, 5, 0), 5.0) << "a stream that began after tracking: all of it";
  EXPECT_EQ(t.sum_delta("s", 2000, 8, 0), 3.0);
  EXPECT_EQ(t.sum_delta("s", 3000, 2, 0), 2.0) << "a new start time is a reset";
  EXPECT_EQ(t.sum_delta("s", 3000, 1, 0), 1.0) << "a value going down is a reset";
  EXPECT_EQ(t.sum_delta("old", 500, 100, 0), std::nullopt) << "began before tracking: a baseline";
  EXPECT_EQ(t.sum_delta("old", 500, 104, 0), 4.0);
  HistogramValue h{{1, 2}, {1, 2, 0}, 4.5, 3};
  auto first = t.histogram_delta("h", 2000, h, 0);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->count, 3u);
  HistogramValue h2{{1, 2}, {1, 3, 1}, 10, 5};
  auto second = t.histogram_delta("h", 2000, h2, 0);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->buckets, (std::vector<uint64_t>{0, 1, 1}));
  EXPECT_EQ(second->count, 2u);
  EXPECT_DOUBLE_EQ(second->sum, 5.5);
}

TEST(MetricCumulative, BoundedStreams) {
  CumulativeTracker t(0, 1);
  t.sum_delta("a", 1, 1, 0);
  EXPECT_THROW(t.sum_delta("b", 1, 1, 0), std::length_error);
}

TEST(MetricCumulative, BoundedInBytes) {
  CumulativeTracker t(0, 100, 8000);
  HistogramValue wide;
  for (int i = 0; i < 256; ++i) wide.bounds.push_back(i);
  wide.buckets.assign(257, 1);
  wide.count = 257;
  t.histogram_delta("a", 1, wide, 0);  // about 4 KB each
  t.histogram_delta("b", 1, wide, 0);
  try {
    t.histogram_delta("c", 1, wide, 0);
    FAIL() << "a stream past max_cumulative_bytes was taken";
  } catch (const std::length_error& e) {
    EXPECT_NE(std::string(e.what()).find("(max_cumulative_bytes)"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(t.histogram_delta("a", 1, wide, 1)) << "a known stream goes on";
  EXPECT_EQ(t.forget_idle(1), 1u);
  EXPECT_NO_THROW(t.histogram_delta("c", 1, wide, 1)) << "a forgotten stream freed its bytes";
  const size_t before = t.bytes();
  CumulativeTracker restored(0, 100, 8000);
  restored.restore(t.streams());
  EXPECT_EQ(restored.bytes(), before);
}

TEST(MetricKeyPrefixes, CoverARangeExactly) {
  EXPECT_EQ(decimal_prefixes(10, 19), (std::vector<std::string>{"00000000001"}));
  EXPECT_EQ(decimal_prefixes(5, 5), (std::vector<std::string>{"000000000005"}));
  const auto p = decimal_prefixes(1764480000, 1764483600);
  // Every number of the range is under exactly one prefix, and nothing outside it.
  for (int64_t t : {int64_t{1764479999}, int64_t{1764480000}, int64_t{1764481234}, int64_t{1764483600},
                    int64_t{1764483601}}) {
    int under = 0;
    for (const auto& prefix : p) under += padded_time(t).rfind(prefix, 0) == 0;
    EXPECT_EQ(under, t >= 1764480000 && t <= 1764483600 ? 1 : 0) << t;
  }
  EXPECT_LT(p.size(), 40u);
}

TEST(MetricQuantile, InterpolatesWithinTheBucket) {
  const std::vector<double> bounds = {1, 2, 4};
  // 10 observations in (1,2], 10 in (2,4]
  const std::vector<uint64_t> buckets = {0, 10, 10, 0};
  const double inf = INFINITY;
  EXPECT_DOUBLE_EQ(bucket_quantile(0.5, bounds, buckets, inf, -inf), 2);
  EXPECT_DOUBLE_EQ(bucket_quantile(0.25, bounds, buckets, inf, -inf), 1.5);
  EXPECT_DOUBLE_EQ(bucket_quantile(0.75, bounds, buckets, inf, -inf), 3);
  EXPECT_DOUBLE_EQ(bucket_quantile(1.0, bounds, buckets, inf, 3.5), 3.5) << "kept within the max";
  EXPECT_TRUE(std::isnan(bucket_quantile(0.5, bounds, {0, 0, 0, 0}, inf, -inf)));
  EXPECT_DOUBLE_EQ(bucket_quantile(0.99, bounds, {0, 0, 0, 5}, inf, -inf), 4) << "+Inf: its lower bound";
}

TEST(MetricsService, RecordAggregatesInEveryResolutionAndHandsClosedWindowsOut) {
  Recorded exposed;
  Settings exposing = settings();
  exposing.expose_recorded = true;
  MetricsService service(exposing, &exposed, 0);
  const int64_t t0 = 1'764'480'000'000;  // ms, a whole hour
  service.record(
      "p1", {counter("player_kills", 2, {{"mode", "duel"}}), counter("player_kills", 3, {{"mode", "duel"}})},
      t0);
  service.record("p1", {counter("player_kills", 4, {{"mode", "duel"}})}, t0 + 15'000);
  EXPECT_TRUE(service.take_closed(t0 / 1000 + 11).empty()) << "the flush delay has not passed";
  auto closed = service.take_closed(t0 / 1000 + 12);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].resolution, 0u);
  EXPECT_EQ(closed[0].aggregate.sum, 5);
  EXPECT_EQ(closed[0].aggregate.count, 2u);
  auto rest = service.take_all();
  EXPECT_EQ(rest.size(), 3u) << "10s window 2, 1m and 1h";
  EXPECT_EQ(exposed.seen.size(), 3u);
}

TEST(MetricsService, ABatchIsAllOrNothing) {
  MetricsService service(settings(), nullptr, 0);
  try {
    service.record("p1", {counter("player_ok", 1), counter("player_bad.name", 1)}, 0);
    FAIL() << "a bad name was taken";
  } catch (const MetricsError& e) {
    EXPECT_EQ(e.kind(), MetricsError::Kind::kInvalidArgument);
    EXPECT_EQ(
        std::string(e.what()),
        "measurements[1].name 'player_bad.name' is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
  }
  EXPECT_TRUE(service.take_all().empty());
  EXPECT_FALSE(service.family("player_ok"));
  try {
    service.record("p1",
                   {counter("player_c", 1, {{"a", "1"}}), counter("player_c", 1, {{"a", "2"}}),
                    counter("player_c", 1, {{"a", "3"}}), counter("player_c", 1, {{"a", "4"}})},
                   0);
    FAIL() << "a fourth series was taken";
  } catch (const MetricsError& e) {
    EXPECT_EQ(e.kind(), MetricsError::Kind::kResourceExhausted);
    EXPECT_NE(std::string(e.what()).find("max_series_per_metric = 3"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(service.take_all().empty());
}

TEST(MetricsService, KindsAndLabelsAreFixedPerMetric) {
  MetricsService service(settings(), nullptr, 0);
  service.record("p", {counter("player_c", 1, {{"a", "1"}})}, 0);
  try {
    service.record("p", {counter("player_c", 1, {{"b", "1"}})}, 0);
    FAIL();
  } catch (const MetricsError& e) {
    EXPECT_EQ(std::string(e.what()),
              "measurements[0]: metric 'player_c' has the labels (a); this one has (b)");
  }
  try {
    service.record("p", {{"player_c", {{"a", "1"}}, Measurement::Type::kGaugeSet, 1, std::nullopt}}, 0);
    FAIL();
  } catch (const MetricsError& e) {
    EXPECT_EQ(std::string(e.what()),
              "measurements[0]: metric 'player_c' is a counter; it cannot take a gauge value");
  }
  EXPECT_THROW(service.record("p", {counter("player_c", -1, {{"a", "1"}})}, 0), MetricsError);
}

TEST(MetricsService, EventsCountAndObserveTheirDuration) {
  MetricsService service(settings(), nullptr, 0);
  service.record(
      "p",
      {{"player_match_finished", {{"mode", "duel"}, {"map", "dust"}}, Measurement::Type::kEvent, 0, 3.0}}, 0);
  ASSERT_TRUE(service.family("player_match_finished"));
  EXPECT_EQ(service.family("player_match_finished")->kind, Kind::kCounter);
  ASSERT_TRUE(service.family("player_match_finished_duration_seconds"));
  EXPECT_EQ(service.family("player_match_finished_duration_seconds")->kind, Kind::kHistogram);
  for (const auto& e : service.take_all()) {
    if (e.metric == "player_match_finished_duration_seconds") {
      EXPECT_EQ(e.aggregate.buckets, (std::vector<uint64_t>{0, 0, 1, 0, 0}));
    }
  }
}

TEST(MetricsService, PlayersSeriesAreNotExposedUnlessAskedForAndExportedOnesAre) {
  Recorded exposed;
  MetricsService service(settings(), &exposed, 0);
  const int64_t now_ms = 1'764'480'000'000;
  service.record("p1", {counter("player_kills", 1, {{"who", "a-players-own-text"}})}, now_ms);
  EXPECT_TRUE(exposed.seen.empty()) << "a player's label values reached /metrics";
  OtlpPoint p;
  p.metric = "requests";
  p.time_ns = static_cast<uint64_t>(now_ms) * 1000000;
  p.value = 1;
  EXPECT_EQ(service.export_points("a", {p}, now_ms).accepted, 1);
  ASSERT_EQ(exposed.seen.size(), 1u);
  EXPECT_EQ(exposed.seen[0].first, "requests");
}

TEST(MetricsService, AHistogramWithMoreBoundsThanTheLimitIsRefusedNamingIt) {
  MetricsService service(settings(), nullptr, 0);
  const int64_t now_ms = 1'764'480'000'000;
  OtlpPoint p;
  p.metric = "latency";
  p.kind = Kind::kHistogram;
  p.time_ns = static_cast<uint64_t>(now_ms) * 1000000;
  for (size_t i = 0; i <= kMaxHistogramBounds; ++i) p.histogram.bounds.push_back(static_cast<double>(i));
  p.histogram.buckets.assign(p.histogram.bounds.size() + 1, 0);
  const ExportOutcome outcome = service.export_points("a", {p}, now_ms);
  EXPECT_EQ(outcome.rejected, 1);
  EXPECT_NE(outcome.error_message.find("257 explicit_bounds; at most 256"), std::string::npos)
      << outcome.error_message;
  EXPECT_FALSE(service.family("latency")) << "a refused point made a metric";
  p.histogram.bounds.resize(kMaxHistogramBounds);
  p.histogram.buckets.resize(kMaxHistogramBounds + 1);
  EXPECT_EQ(service.export_points("a", {p}, now_ms).accepted, 1) << "the limit itself is taken";
}

TEST(MetricsService, PlayersNamesAreKeptApartFromExportedOnesAndLimitedPerPlayer) {
  Settings limited = settings();
  limited.max_metrics = 2;
  limited.max_player_metrics = 3;
  limited.max_names_per_player = 2;
  MetricsService service(limited, nullptr, 0);
  const int64_t now_ms = 1'764'480'000'000;
  try {
    service.record("player:a", {counter("requests", 1)}, now_ms);
    FAIL() << "a recorded name outside the players' prefix was taken";
  } catch (const MetricsError& e) {
    EXPECT_EQ(std::string(e.what()),
              "measurements[0].name 'requests' does not begin with 'player_': recorded metrics are named "
              "apart from exported ones");
  }
  service.record("player:a", {counter("player_a1", 1), counter("player_a2", 1)}, now_ms);
  try {
    service.record("player:a", {counter("player_a3", 1)}, now_ms);
    FAIL() << "a player made more names than max_names_per_player";
  } catch (const MetricsError& e) {
    EXPECT_NE(std::string(e.what()).find("(max_names_per_player = 2)"), std::string::npos) << e.what();
  }
  service.record("player:b", {counter("player_b1", 1)}, now_ms);
  try {
    service.record("player:c", {counter("player_c1", 1)}, now_ms);
    FAIL() << "players made more names than max_player_metrics";
  } catch (const MetricsError& e) {
    EXPECT_NE(std::string(e.what()).find("(max_player_metrics = 3)"), std::string::npos) << e.what();
  }
  // Telemetry keeps its own names and its whole budget; it cannot take the players' prefix.
  OtlpPoint p;
  p.time_ns = static_cast<uint64_t>(now_ms) * 1000000;
  p.value = 1;
  p.metric = "requests";
  std::vector<OtlpPoint> points = {p, p, p};
  points[1].metric = "errors";
  points[2].metric = "player_a1";
  const ExportOutcome outcome = service.export_points("otlp:s", points, now_ms);
  EXPECT_EQ(outcome.accepted, 2) << outcome.error_message;
  EXPECT_NE(outcome.error_message.find("names beginning with 'player_' are kept for what players Record"),
            std::string::npos)
      << outcome.error_message;
  // The quota holds over a restart: families read back carry who made them.
  MetricsService restarted(limited, nullptr, 0);
  std::vector<Family> stored = service.take_new_families();
  restarted.load_families(stored);
  EXPECT_THROW(restarted.record("player:a", {counter("player_a3", 1)}, now_ms), MetricsError);
}

TEST(MetricsService, WindowsHeldInMemoryAreBoundedInBytesAsWellAsInNumber) {
  Settings small = settings();
  small.max_pending_bytes = 20000;
  MetricsService service(small, nullptr, 0);
  const int64_t now_ms = 1'764'480'000'000;
  auto point = [&](const std::string& series) {
    OtlpPoint p;
    p.metric = "latency";
    p.kind = Kind::kHistogram;
    p.time_ns = static_cast<uint64_t>(now_ms) * 1000000;
    p.labels = {{"s", series}};
    for (size_t i = 0; i < kMaxHistogramBounds; ++i) p.histogram.bounds.push_back(static_cast<double>(i));
    p.histogram.buckets.assign(p.histogram.bounds.size() + 1, 0);
    return p;
  };
  // Each wide histogram series holds three windows of about 4 KB.
  const ExportOutcome filled = service.export_points("a", {point("1"), point("2"), point("3")}, now_ms);
  EXPECT_EQ(filled.accepted, 2);
  EXPECT_EQ(filled.rejected, 1);
  EXPECT_NE(filled.error_message.find("max_pending_bytes"), std::string::npos) << filled.error_message;
  EXPECT_THROW(service.export_points("a", {point("3")}, now_ms), MetricsError);
  EXPECT_THROW(service.record("p", {counter("player_x", 1)}, now_ms), MetricsError);
  service.put_back(service.take_all());
  EXPECT_THROW(service.export_points("a", {point("3")}, now_ms), MetricsError) << "put back, still held";
  service.take_all();
  EXPECT_EQ(service.export_points("a", {point("3")}, now_ms).accepted, 1) << "stored, the room is back";
}

TEST(MetricsService, ExportRejectsPointsWithReasonsAndKeepsTheRest) {
  MetricsService service(settings(), nullptr, 0);
  const int64_t now_ms = 1'764'480'000'000;
  const uint64_t ns = static_cast<uint64_t>(now_ms) * 1000000;
  std::vector<OtlpPoint> points(3);
  points[0].metric = "requests";
  points[0].cumulative = true;
  points[0].start_ns = ns - 1;
  points[0].time_ns = ns;
  points[0].value = 5;
  points[1] = points[0];
  points[1].metric = "http.requests";
  points[2] = points[0];
  points[2].time_ns = ns - 7200ull * 1000000000;
  const ExportOutcome outcome = service.export_points("a", points, now_ms);
  EXPECT_EQ(outcome.accepted, 1);
  EXPECT_EQ(outcome.rejected, 2);
  EXPECT_NE(outcome.error_message.find("'http.requests' is not a Prometheus metric name"), std::string::npos)
      << outcome.error_message;
  EXPECT_NE(outcome.error_message.find("max_lateness_s"), std::string::npos) << outcome.error_message;
  service.set_store_down("connection refused");
  try {
    service.export_points("a", points, now_ms);
    FAIL();
  } catch (const MetricsError& e) {
    EXPECT_EQ(e.kind(), MetricsError::Kind::kUnavailable);
  }
}

TEST(MetricsQuery, SumRateAvgPercentileByLabel) {
  std::vector<WindowEntry> entries;
  const std::vector<double> bounds = {1, 2, 4};
  auto entry = [&](int64_t start, const std::string& mode, double sum, uint64_t count) {
    WindowEntry e;
    e.start_s = start;
    e.metric = "m";
    e.labels = {{"mode", mode}, {"map", "dust"}};
    e.kind = Kind::kCounter;
    e.aggregate.sum = sum;
    e.aggregate.count = count;
    e.aggregate.last_ms = 0;
    entries.push_back(e);
  };
  entry(1000, "duel", 10, 2);
  entry(1000, "duel", 5, 1);  // the same window again: another writer's
  entry(1010, "team", 6, 3);
  entry(1060, "duel", 60, 1);
  entry(2000, "duel", 1, 1);  // outside
  QuerySpec spec{"m", 1000, 1119, 60, Aggregation::kSum, 0, {}, {}};
  auto all = evaluate(spec, Kind::kCounter, {}, entries);
  ASSERT_EQ(all.size(), 1u);
  ASSERT_EQ(all[0].points.size(), 2u);
  EXPECT_EQ(all[0].points[0].unix_s, 960) << "steps start at multiples of the step";
  EXPECT_EQ(all[0].points[0].value, 21);
  spec.start_s = 960;
  spec.by = {"mode"};
  spec.aggregation = Aggregation::kRate;
  auto by_mode = evaluate(spec, Kind::kCounter, {}, entries);
  ASSERT_EQ(by_mode.size(), 2u);
  EXPECT_EQ(by_mode[0].labels.at("mode"), "duel");
  EXPECT_DOUBLE_EQ(by_mode[0].points[0].value, 15.0 / 60);
  spec.aggregation = Aggregation::kAvg;
  spec.match = {{"mode", "team"}};
  auto avg = evaluate(spec, Kind::kCounter, {}, entries);
  ASSERT_EQ(avg.size(), 1u);
  EXPECT_DOUBLE_EQ(avg[0].points[0].value, 2);

  WindowEntry h;
  h.start_s = 1000;
  h.metric = "d";
  h.kind = Kind::kHistogram;
  h.bounds = bounds;
  h.aggregate.add_buckets({0, 10, 10, 0}, 50, 20, nullptr, nullptr);
  QuerySpec p{"d", 1000, 1000, 10, Aggregation::kPercentile, 50, {}, {}};
  auto p50 = evaluate(p, Kind::kHistogram, bounds, {h});
  ASSERT_EQ(p50.size(), 1u);
  EXPECT_DOUBLE_EQ(p50[0].points[0].value, 2);
}

TEST(MetricsQuery, RefusesWhatDoesNotApplyNamingTheField) {
  Family gauge{"g", Kind::kGauge, {"a"}, {}, ""};
  auto message = [&](QuerySpec spec) {
    try {
      check_query(spec, &gauge, resolutions(), 1000);
    } catch (const MetricsError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message({"g", 0, 100, 15, Aggregation::kSum, 0, {}, {}}),
            "step_s is 15; it must be a positive multiple of 10");
  EXPECT_EQ(message({"g", 0, 100, 10, Aggregation::kRate, 0, {}, {}}),
            "aggregation rate does not apply to 'g', a gauge");
  EXPECT_EQ(message({"g", 0, 100, 10, Aggregation::kSum, 0, {}, {"b"}}),
            "by label 'b' is not a label of 'g'");
  EXPECT_EQ(message({"g", 0, 100000, 10, Aggregation::kSum, 0, {}, {}}),
            "the range over step_s makes 10001 points; a query has at most 1000 (max_query_points)");
  EXPECT_EQ(check_query({"g", 0, 100, 120, Aggregation::kSum, 0, {}, {}}, &gauge, resolutions(), 1000), 1u);
  EXPECT_EQ(check_query({"g", 0, 100, 7200, Aggregation::kSum, 0, {}, {}}, &gauge, resolutions(), 1000), 2u);
}

}  // namespace
}  // namespace gameverse::metrics
