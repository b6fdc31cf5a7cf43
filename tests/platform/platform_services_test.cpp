// Timers, metrics and calls between plugins: the host's services in process, and through the real
// host with the platform-probe and echo plugins and a real gRPC client.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "expect_contains.hpp"
#include "gameverse/echo/v1/echo.pb.h"
#include "gameverse/platformprobe/v1/platform_probe.grpc.pb.h"
#include "host_process.hpp"
#include "platform/metrics.hpp"
#include "platform/timers.hpp"
#include "plugin/manager.hpp"

namespace gameverse::testing {
namespace {

using std::chrono::milliseconds;
namespace pb = gameverse::platformprobe::v1;

TEST(Timers, PeriodicTimerRunsAtItsRateAndStopsWhenCancelled) {
  platform::TimerService timers;
  std::atomic<int> ticks{0};
  const int owner = 0;
  const uint64_t id = timers.start(&owner, milliseconds(5), milliseconds(5), [&] { ticks++; });
  while (ticks < 10) std::this_thread::sleep_for(milliseconds(1));
  timers.cancel(id);
  const int at_cancel = ticks;
  std::this_thread::sleep_for(milliseconds(30));
  EXPECT_EQ(ticks, at_cancel) << "the timer ran after cancel returned";
  EXPECT_EQ(timers.active(&owner), 0u);
}

TEST(Timers, OneShotRunsOnce) {
  platform::TimerService timers;
  std::promise<void> ran;
  std::atomic<int> runs{0};
  const int owner = 0;
  timers.start(&owner, milliseconds(1), milliseconds(0), [&] {
    if (runs++ == 0) ran.set_value();
  });
  ran.get_future().wait();
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(timers.active(&owner), 0u);
}

TEST(Timers, CancelAllWaitsForTheRunningCallback) {
  platform::TimerService timers;
  const int mine = 0;
  const int theirs = 0;
  std::atomic<bool> inside{false};
  std::atomic<bool> finished{false};
  std::atomic<int> other_ticks{0};
  timers.start(&mine, milliseconds(0), milliseconds(0), [&] {
    inside = true;
    std::this_thread::sleep_for(milliseconds(50));
    finished = true;
  });
  timers.start(&theirs, milliseconds(1), milliseconds(1), [&] { other_ticks++; });
  while (!inside) std::this_thread::sleep_for(milliseconds(1));
  timers.cancel_all(&mine);
  EXPECT_TRUE(finished) << "cancel_all returned while the owner's callback still ran";
  while (other_ticks < 3) std::this_thread::sleep_for(milliseconds(1));  // other owners' timers go on
  EXPECT_EQ(timers.active(&theirs), 1u);
}

TEST(Metrics, RendersPrometheusTextLabelledByPlugin) {
  platform::MetricsRegistry registry;
  const uint64_t logins =
      registry.register_metric("auth", {GV_METRIC_COUNTER, "logins_total", "Logins", {"result"}, {}});
  const uint64_t players =
      registry.register_metric("world", {GV_METRIC_GAUGE, "players", "Players online", {}, {}});
  const uint64_t latency =
      registry.register_metric("world", {GV_METRIC_HISTOGRAM, "tick_seconds", "Tick time", {}, {0.01, 0.1}});
  registry.record("auth", logins, {"ok"}, 2);
  registry.record("auth", logins, {"ok"}, 1);
  registry.record("auth", logins, {"ok"}, -5);  // counters never go down
  registry.record("world", players, {}, 42);
  registry.record("world", latency, {}, 0.005);
  registry.record("world", latency, {}, 0.05);
  registry.record("world", latency, {}, 3);
  registry.record("auth", players, {}, 1);  // not auth's metric: dropped
  registry.record("auth", logins, {}, 1);   // wrong label count: dropped
  const std::string text = registry.render_prometheus();
  EXPECT_CONTAINS(text, "# TYPE logins_total counter\nlogins_total{plugin=\"auth\",result=\"ok\"} 3\n");
  EXPECT_CONTAINS(text, "players{plugin=\"world\"} 42\n");
  EXPECT_CONTAINS(text, "tick_seconds_bucket{plugin=\"world\",le=\"0.01\"} 1\n");
  EXPECT_CONTAINS(text, "tick_seconds_bucket{plugin=\"world\",le=\"0.10000000000000001\"} 2\n");
  EXPECT_CONTAINS(text, "tick_seconds_bucket{plugin=\"world\",le=\"+Inf\"} 3\n");
  EXPECT_CONTAINS(text, "tick_seconds_count{plugin=\"world\"} 3\n");
  EXPECT_CONTAINS(text, "gameverse_metric_errors_total 2\n");
}

TEST(Metrics, RegistrationRulesAndReloads) {
  platform::MetricsRegistry registry;
  const uint64_t id = registry.register_metric("inv", {GV_METRIC_COUNTER, "items_total", "", {"kind"}, {}});
  registry.record("inv", id, {"sword"}, 1);
  // A reloaded generation registers the same metric and keeps counting where the last one stopped.
  EXPECT_EQ(registry.register_metric("inv", {GV_METRIC_COUNTER, "items_total", "", {"kind"}, {}}), id);
  registry.record("inv", id, {"sword"}, 1);
  EXPECT_EQ(registry.value("inv", "items_total", {"sword"}), 2);
  EXPECT_THROW(registry.register_metric("inv", {GV_METRIC_GAUGE, "items_total", "", {"kind"}, {}}),
               std::invalid_argument);
  EXPECT_THROW(registry.register_metric("chat", {GV_METRIC_COUNTER, "items_total", "", {}, {}}),
               std::invalid_argument);
  EXPECT_THROW(registry.register_metric("inv", {GV_METRIC_COUNTER, "bad-name", "", {}, {}}),
               std::invalid_argument);
  EXPECT_THROW(registry.register_metric("inv", {GV_METRIC_COUNTER, "x", "", {"plugin"}, {}}),
               std::invalid_argument);
  EXPECT_THROW(registry.register_metric("inv", {GV_METRIC_HISTOGRAM, "h", "", {}, {1, 0.5}}),
               std::invalid_argument);
}

// The probe plugin in process: its metrics land in the host's registry under its name.
TEST(Metrics, PluginMetricsReachTheRegistryAndSurviveReload) {
  TempDir dir;
  platform::TimerService timers;
  platform::MetricsRegistry metrics;
  platform::Platform platform{nullptr, &timers, &metrics, {}};
  plugin::PluginManager manager({dir.path() / "staging", milliseconds(1000), &platform});
  platform.routes = [&manager] { return manager.routes(); };
  config::PluginConfig entry;
  entry.name = "platform-probe";
  entry.path = GV_PROBE_DIR "/platform-probe.so";
  config::Config config;
  config.plugins.push_back(entry);
  ASSERT_TRUE(manager.load_all(config).at(0).ok);
  EXPECT_EQ(metrics.value("platform-probe", "probe_generation_started", {}), 1);
  ASSERT_TRUE(manager.reload("platform-probe", true).ok);
  EXPECT_EQ(metrics.value("platform-probe", "probe_generation_started", {}), 1);
  EXPECT_CONTAINS(metrics.render_prometheus(), "# TYPE probe_tick_lateness_seconds histogram");
}

class ServicesThroughTheHost : public ::testing::Test {
 protected:
  void SetUp() override {
    host_ = std::make_unique<HostProcess>(
        "[host]\nwatch = false\ndata_dir = \"" + data_.path().string() +
        "\"\n[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
        "/echo.so\"\n[[plugin]]\nname = \"platform-probe\"\npath = \"" GV_PROBE_DIR "/platform-probe.so\"\n");
    probe_ = pb::PlatformProbe::NewStub(host_->channel());
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "host log:\n" << host_->log();
  }
  grpc::Status relay(const std::string& method, const std::string& request, uint32_t timeout_ms,
                     std::string* out) {
    grpc::ClientContext context;
    pb::RelayRequest r;
    r.set_method(method);
    r.set_request(request);
    r.set_timeout_ms(timeout_ms);
    pb::RelayReply reply;
    grpc::Status status = probe_->Relay(&context, r, &reply);
    if (out != nullptr) *out = reply.response();
    return status;
  }
  TempDir data_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::PlatformProbe::Stub> probe_;
};

TEST_F(ServicesThroughTheHost, OnePluginCallsAnotherInProcess) {
  gameverse::echo::v1::EchoRequest request;
  request.set_payload("through the router");
  std::string response;
  grpc::Status status = relay("/gameverse.echo.v1.Echo/Echo", request.SerializeAsString(), 0, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  gameverse::echo::v1::EchoReply reply;
  ASSERT_TRUE(reply.ParseFromString(response));
  EXPECT_EQ(reply.payload(), "through the router");
}

TEST_F(ServicesThroughTheHost, UnknownMethodsAndDeadlinesFailClearly) {
  grpc::Status unknown = relay("/gameverse.nope.v1.Nope/Call", "", 0, nullptr);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(unknown.error_message(),
            "method /gameverse.nope.v1.Nope/Call is not served by any loaded plugin");

  gameverse::echo::v1::SleepRequest sleep;
  sleep.set_duration_ms(10000);
  grpc::Status late = relay("/gameverse.echo.v1.Echo/Sleep", sleep.SerializeAsString(), 100, nullptr);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(late.error_message(), "deadline exceeded calling /gameverse.echo.v1.Echo/Sleep");

  gameverse::echo::v1::FailRequest fail;
  fail.set_code(5);
  fail.set_message("nothing here");
  grpc::Status failed = relay("/gameverse.echo.v1.Echo/Fail", fail.SerializeAsString(), 0, nullptr);
  EXPECT_EQ(failed.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(failed.error_message(), "nothing here");
}

TEST_F(ServicesThroughTheHost, TimersTickOnHostThreads) {
  grpc::ClientContext context;
  pb::TicksRequest request;
  request.set_period_ms(10);
  request.set_count(5);
  pb::TicksReply reply;
  ASSERT_TRUE(probe_->Ticks(&context, request, &reply).ok());
  EXPECT_EQ(reply.ticks(), 5u);
  EXPECT_GE(reply.elapsed_ms(), 50u) << "a periodic timer ran early";
  EXPECT_EQ(host_->stop(), 0) << host_->log();
}

}  // namespace
}  // namespace gameverse::testing
