// Per-method call metrics and the registry's text: counts, the histogram's shape, escaping.
#include "rpc/call_metrics.hpp"

#include <gtest/gtest.h>

#include "platform/metrics.hpp"

namespace gameverse::rpc {
namespace {

TEST(CallMetrics, CountsEndsByCodeLatencyAndCallsInFlight) {
  CallMetrics metrics;
  CallMetrics::Method* echo = metrics.method("/echo.v1.Echo/Echo");
  EXPECT_EQ(metrics.method("/echo.v1.Echo/Echo"), echo);  // one set of counters per method
  for (int i = 0; i < 3; ++i) echo->start();
  echo->end(0, std::chrono::microseconds(300));  // le 0.0005
  echo->end(5, std::chrono::milliseconds(20));   // NOT_FOUND, le 0.025
  std::string text;
  metrics.render(text);
  EXPECT_NE(text.find("gameverse_rpc_calls_started_total{method=\"/echo.v1.Echo/Echo\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gameverse_rpc_calls_total{method=\"/echo.v1.Echo/Echo\",code=\"OK\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("gameverse_rpc_calls_total{method=\"/echo.v1.Echo/Echo\",code=\"NOT_FOUND\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("gameverse_rpc_calls_in_flight{method=\"/echo.v1.Echo/Echo\"} 1\n"), std::string::npos);
  EXPECT_NE(
      text.find(
          "gameverse_rpc_call_duration_seconds_bucket{method=\"/echo.v1.Echo/Echo\",le=\"0.00025\"} 0\n"),
      std::string::npos);
  EXPECT_NE(
      text.find(
          "gameverse_rpc_call_duration_seconds_bucket{method=\"/echo.v1.Echo/Echo\",le=\"0.0005\"} 1\n"),
      std::string::npos);
  EXPECT_NE(
      text.find("gameverse_rpc_call_duration_seconds_bucket{method=\"/echo.v1.Echo/Echo\",le=\"+Inf\"} 2\n"),
      std::string::npos);
  EXPECT_NE(text.find("gameverse_rpc_call_duration_seconds_count{method=\"/echo.v1.Echo/Echo\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("gameverse_rpc_calls_total{method=\"unrouted\",code=\"OK\"} 0\n"), std::string::npos);
}

TEST(CallMetrics, LabelValuesAreEscaped) {
  CallMetrics metrics;
  metrics.method("/a\"b\\c\nd/M")->start();
  std::string text;
  metrics.render(text);
  EXPECT_NE(text.find("{method=\"/a\\\"b\\\\c\\nd/M\"}"), std::string::npos) << text;
}

TEST(MetricsRegistry, HostNamesAreReservedAndHelpKeepsItsQuotes) {
  platform::MetricsRegistry registry;
  EXPECT_THROW(registry.register_metric("p", {GV_METRIC_COUNTER, "gameverse_rpc_calls_total", "", {}, {}}),
               std::invalid_argument);
  const uint64_t id =
      registry.register_metric("p", {GV_METRIC_COUNTER, "said_total", "the \"word\" \\ said", {}, {}});
  registry.record("p", id, {}, 1);
  const std::string text = registry.render_prometheus();
  EXPECT_NE(text.find("# HELP said_total the \"word\" \\\\ said\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace gameverse::rpc
