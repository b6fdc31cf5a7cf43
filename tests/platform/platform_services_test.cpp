// Timers, metrics, the cache, pub/sub and calls between plugins: the host's services in process,
// and through the real host with the platform-probe and echo plugins and a real gRPC client.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <regex>

#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/platformprobe/v1/platform_probe.grpc.pb.h"
#include "gameverse/storeprobe/v1/store_probe.grpc.pb.h"
#include "host_process.hpp"
#include "own_redis.hpp"
#include "platform/cache.hpp"
#include "platform/metrics.hpp"
#include "platform/pubsub.hpp"
#include "platform/timers.hpp"
#include "platform/work_pool.hpp"
#include "plugin/manager.hpp"
#include "run_command.hpp"
#include "sign_up.hpp"
#include "test_servers.hpp"

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
  EXPECT_CONTAINS(text, "tick_seconds_bucket{plugin=\"world\",le=\"0.1\"} 2\n");
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
  platform::WorkPool blocking({}, &metrics);
  platform::Platform platform;
  auto cache = platform::open_memory_cache();
  auto pubsub = platform::open_memory_pubsub();
  platform.timers = &timers;
  platform.blocking = &blocking;
  platform.metrics = &metrics;
  platform.cache = cache.get();
  platform.pubsub = pubsub.get();
  plugin::PluginManager manager({dir.path() / "staging", milliseconds(1000), &platform});
  platform.routes = [&manager] { return manager.routes(); };
  config::PluginConfig entry;
  entry.name = "platform-probe";
  entry.path = GV_PROBE_DIR "/platform-probe.so";
  config::Config config;
  config.plugins.push_back(entry);
  ASSERT_TRUE(manager.load_all(config).at(0).ok());
  EXPECT_EQ(metrics.value("platform-probe", "probe_generation_started", {}), 1);
  ASSERT_TRUE(manager.reload("platform-probe", true).ok());
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

// Calls between plugins while the target is reloaded again and again: none fails, each is
// answered by whichever generation serves when it starts.
TEST(ServicesAcrossReloads, CallsToAPluginBeingReloadedNeverFail) {
  TempDir data;
  const auto echo_file = data.path() / "echo.so";
  std::filesystem::copy_file(GV_PLUGIN_DIR "/echo.so", echo_file);
  HostProcess host("[host]\nwatch = false\ndata_dir = \"" + data.path().string() +
                   "\"\n[[plugin]]\nname = \"echo\"\npath = \"" + echo_file.string() +
                   "\"\n[[plugin]]\nname = \"platform-probe\"\npath = \"" GV_PROBE_DIR
                   "/platform-probe.so\"\n");
  auto probe = pb::PlatformProbe::NewStub(host.channel());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::vector<std::string> failures;
  std::thread caller([&] {
    gameverse::echo::v1::EchoRequest request;
    request.set_payload("across reloads");
    while (!stop) {
      grpc::ClientContext context;
      pb::RelayRequest relay;
      relay.set_method("/gameverse.echo.v1.Echo/Echo");
      relay.set_request(request.SerializeAsString());
      pb::RelayReply reply;
      const grpc::Status status = probe->Relay(&context, relay, &reply);
      if (status.ok()) {
        ok++;
      } else if (failures.size() < 5) {
        failures.push_back(std::to_string(status.error_code()) + ": " + status.error_message());
      }
    }
  });
  for (int generation = 2; generation <= 6; ++generation) {
    std::ofstream(echo_file, std::ios::app | std::ios::binary) << '\n';  // a new build of the same code
    host.signal(SIGHUP);
    const bool reloaded = eventually([&] {
      return host.log().find("plugin 'echo' generation " + std::to_string(generation) + " serving") !=
             std::string::npos;
    });
    EXPECT_TRUE(reloaded) << "reload to generation " << generation << " did not happen";
    if (!reloaded) break;
  }
  stop = true;
  caller.join();
  for (const auto& failure : failures) ADD_FAILURE() << failure;
  EXPECT_GT(ok, 10);
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// A call between plugins made within a caller's call meets the target's access policy as that
// caller: a public method cannot open a door the gate keeps shut.
TEST(ServicesAndTheGate, CallsBetweenPluginsCarryTheCallerToTheTargetsPolicy) {
  TempDir data;
  HostProcess host("[host]\nwatch = false\ndata_dir = \"" + data.path().string() +
                   "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
                   "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
                   "[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
                   "/echo.so\"\n[plugin.access]\n\"/gameverse.echo.v1.Echo/WhoAmI\" = \"authenticated\"\n"
                   "\"/gameverse.echo.v1.Echo/Stats\" = \"role:moderator\"\n"
                   "[[plugin]]\nname = \"platform-probe\"\npath = \"" GV_PROBE_DIR "/platform-probe.so\"\n");
  auto probe = pb::PlatformProbe::NewStub(host.channel());
  // How the probe calls: naming the handler's context (Relay), by Host::call's default from a
  // blocking handler, or with the plugin's own trust.
  enum class Via { kNamedContext, kDefault, kAsPlugin };
  auto relay = [&](const std::string& method, const std::string& token, std::string* response,
                   Via via = Via::kNamedContext) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    pb::RelayRequest request;
    request.set_method(method);
    request.set_as_plugin(via == Via::kAsPlugin);
    pb::RelayReply reply;
    grpc::Status status = via == Via::kNamedContext ? probe->Relay(&context, request, &reply)
                                                    : probe->RelayBlocking(&context, request, &reply);
    if (response != nullptr) *response = reply.response();
    return status;
  };
  for (Via via : {Via::kNamedContext, Via::kDefault}) {
    const grpc::Status anonymous = relay("/gameverse.echo.v1.Echo/WhoAmI", "", nullptr, via);
    EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(anonymous.error_message(),
              "method /gameverse.echo.v1.Echo/WhoAmI needs a signed-in caller, and the call it is made for "
              "has none");
  }
  // Only a plugin that says so acts with its own trust.
  EXPECT_TRUE(relay("/gameverse.echo.v1.Echo/WhoAmI", "", nullptr, Via::kAsPlugin).ok());

  auto auth = gameverse::auth::v1::Auth::NewStub(host.channel());
  const gameverse::auth::v1::Session ada = sign_up(*auth, "ada");
  ASSERT_FALSE(ada.access_token().empty());
  std::string response;
  const grpc::Status signed_in = relay("/gameverse.echo.v1.Echo/WhoAmI", ada.access_token(), &response);
  ASSERT_TRUE(signed_in.ok()) << signed_in.error_message();
  gameverse::echo::v1::WhoAmIReply me;
  ASSERT_TRUE(me.ParseFromString(response));
  EXPECT_EQ(me.user_id(), ada.account().id())
      << "the caller did not carry over into the call between plugins";
  ASSERT_TRUE(relay("/gameverse.echo.v1.Echo/WhoAmI", ada.access_token(), &response, Via::kDefault).ok());
  ASSERT_TRUE(me.ParseFromString(response));
  EXPECT_EQ(me.user_id(), ada.account().id()) << "Host::call's default did not act for the handler's caller";
  const grpc::Status player = relay("/gameverse.echo.v1.Echo/Stats", ada.access_token(), nullptr);
  EXPECT_EQ(player.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(player.error_message(),
            "method /gameverse.echo.v1.Echo/Stats needs the role 'moderator'; the caller has: player");
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// A handler learns who made an in-process call: a plugin acting for its caller (also an anonymous
// one, through a public method) is not the plugin calling with its own trust.
TEST(ServicesAndTheGate, AHandlerTellsAPluginsOwnTrustFromACallerItActsFor) {
  TempDir data;
  HostProcess host("[host]\nwatch = false\ndata_dir = \"" + data.path().string() +
                   "\"\n[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
                   "/echo.so\"\n[[plugin]]\nname = \"platform-probe\"\npath = \"" GV_PROBE_DIR
                   "/platform-probe.so\"\n");
  auto probe = pb::PlatformProbe::NewStub(host.channel());
  auto who_answers = [&](bool as_plugin, bool blocking) {
    grpc::ClientContext context;
    pb::RelayRequest request;
    request.set_method("/gameverse.echo.v1.Echo/WhoAmI");
    request.set_as_plugin(as_plugin);
    pb::RelayReply reply;
    const grpc::Status status =
        blocking ? probe->RelayBlocking(&context, request, &reply) : probe->Relay(&context, request, &reply);
    EXPECT_TRUE(status.ok()) << status.error_message();
    gameverse::echo::v1::WhoAmIReply who;
    EXPECT_TRUE(who.ParseFromString(reply.response()));
    return who;
  };
  for (bool blocking : {false, true}) {
    const auto for_anonymous = who_answers(false, blocking);
    EXPECT_EQ(for_anonymous.user_id(), "");
    EXPECT_EQ(for_anonymous.calling_plugin(), "platform-probe");
    EXPECT_EQ(for_anonymous.plugin_with_own_trust(), "")
        << "a call made for an anonymous caller was taken for the plugin's own trust";
  }
  const auto own_trust = who_answers(true, true);
  EXPECT_EQ(own_trust.calling_plugin(), "platform-probe");
  EXPECT_EQ(own_trust.plugin_with_own_trust(), "platform-probe");

  auto echo = gameverse::echo::v1::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  gameverse::echo::v1::WhoAmIReply direct;
  ASSERT_TRUE(echo->WhoAmI(&context, gameverse::echo::v1::WhoAmIRequest(), &direct).ok());
  EXPECT_EQ(direct.calling_plugin(), "");
  EXPECT_EQ(direct.plugin_with_own_trust(), "");
  EXPECT_EQ(host.stop(), 0) << host.log();
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

// A host with the probe whose cache and pub/sub are in process ("memory") or on the test Redis.
std::string probe_host_config(const std::filesystem::path& data, const std::string& backend,
                              const std::string& probe_path = GV_PROBE_DIR "/platform-probe.so") {
  std::string config = "[host]\nwatch = false\ndata_dir = \"" + data.string() + "\"\n";
  if (backend == "redis") {
    config += "[redis]\nurl = \"" + redis_url() +
              "\"\n[cache]\nbackend = \"redis\"\n[pubsub]\nbackend = \"redis\"\n";
  }
  return config + "[[plugin]]\nname = \"platform-probe\"\npath = \"" + probe_path +
         "\"\n[plugin.config]\ntopic = \"scores\"\n";
}

grpc::Status cache_call(pb::PlatformProbe::Stub& probe, pb::CacheRequest::Op op, const std::string& key,
                        pb::CacheReply* reply, const std::string& value = "", int64_t delta = 0,
                        uint32_t ttl_ms = 0) {
  grpc::ClientContext context;
  pb::CacheRequest request;
  request.set_op(op);
  request.set_key(key);
  request.set_value(value);
  request.set_delta(delta);
  request.set_ttl_ms(ttl_ms);
  pb::CacheReply ignored;
  return probe.Cache(&context, request, reply != nullptr ? reply : &ignored);
}

grpc::Status publish(pb::PlatformProbe::Stub& probe, const std::string& topic, const std::string& payload) {
  grpc::ClientContext context;
  pb::PublishRequest request;
  request.set_topic(topic);
  request.set_payload(payload);
  pb::PublishReply reply;
  return probe.Publish(&context, request, &reply);
}

std::vector<std::string> received(pb::PlatformProbe::Stub& probe) {
  grpc::ClientContext context;
  pb::ReceivedReply reply;
  if (!probe.Received(&context, pb::ReceivedRequest(), &reply).ok()) return {};
  return {reply.payloads().begin(), reply.payloads().end()};
}

class CacheThroughTheHost : public ::testing::TestWithParam<std::string> {};

TEST_P(CacheThroughTheHost, SetGetExpireIncrementAndRefuseBadKeys) {
  if (GetParam() == "redis") {
    ASSERT_FALSE(redis_url().empty()) << "run the suite with `tools/gv test`";
  }
  TempDir data;
  HostProcess host(probe_host_config(data.path(), GetParam()));
  auto probe = pb::PlatformProbe::NewStub(host.channel());
  const std::string key = "k" + std::to_string(std::random_device()());
  pb::CacheReply reply;
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::SET, key, nullptr, std::string("v\0w", 3)).ok());
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::GET, key, &reply).ok());
  EXPECT_TRUE(reply.found());
  EXPECT_EQ(reply.value(), std::string("v\0w", 3));
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::DELETE, key, nullptr).ok());
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::GET, key, &reply).ok());
  EXPECT_FALSE(reply.found());

  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::SET, key + "ttl", nullptr, "v", 0, 50).ok());
  std::this_thread::sleep_for(milliseconds(120));
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::GET, key + "ttl", &reply).ok());
  EXPECT_FALSE(reply.found()) << "a value outlived its time to live";

  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::INCREMENT, key + "n", &reply, "", 2, 60000).ok());
    EXPECT_EQ(reply.counter(), 2 * i);
  }

  grpc::Status empty = cache_call(*probe, pb::CacheRequest::GET, "", &reply);
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(empty.error_message(), "the cache key is empty");
  grpc::Status long_key = cache_call(*probe, pb::CacheRequest::SET, std::string(600, 'k'), nullptr, "v");
  EXPECT_EQ(long_key.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(long_key.error_message(), "600 bytes long; the limit is 512");
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::SET, key + "text", nullptr, "abc").ok());
  grpc::Status text = cache_call(*probe, pb::CacheRequest::INCREMENT, key + "text", nullptr, "", 1);
  EXPECT_EQ(text.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(host.stop(), 0) << host.log();
}

INSTANTIATE_TEST_SUITE_P(Backends, CacheThroughTheHost, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

grpc::Status compare_and_set(pb::PlatformProbe::Stub& probe, const std::string& key,
                             std::optional<std::string> expected, std::optional<std::string> desired,
                             uint32_t ttl_ms, bool* swapped) {
  grpc::ClientContext context;
  pb::CacheRequest request;
  request.set_op(pb::CacheRequest::COMPARE_AND_SET);
  request.set_key(key);
  request.set_expect_present(expected.has_value());
  request.set_expected(expected.value_or(""));
  request.set_remove(!desired.has_value());
  request.set_value(desired.value_or(""));
  request.set_ttl_ms(ttl_ms);
  pb::CacheReply reply;
  grpc::Status status = probe.Cache(&context, request, &reply);
  *swapped = reply.swapped();
  return status;
}

// Two hosts on one Redis hold a lease through the SDK's compare_and_set: one takes it, the other
// cannot until the holder releases it or stops renewing it.
TEST(CacheThroughTheHost, TwoHostsShareOneLease) {
  ASSERT_FALSE(redis_url().empty()) << "run the suite with `tools/gv test`";
  TempDir data_a, data_b;
  HostProcess host_a(probe_host_config(data_a.path(), "redis"));
  HostProcess host_b(probe_host_config(data_b.path(), "redis"));
  auto probe_a = pb::PlatformProbe::NewStub(host_a.channel());
  auto probe_b = pb::PlatformProbe::NewStub(host_b.channel());
  const std::string lease = "lease" + std::to_string(std::random_device()());
  bool swapped = false;
  ASSERT_TRUE(compare_and_set(*probe_a, lease, std::nullopt, "a", 60000, &swapped).ok());
  EXPECT_TRUE(swapped);
  ASSERT_TRUE(compare_and_set(*probe_b, lease, std::nullopt, "b", 60000, &swapped).ok());
  EXPECT_FALSE(swapped) << "the second host took a lease the first holds";
  ASSERT_TRUE(compare_and_set(*probe_b, lease, "a", "b", 60000, &swapped).ok());
  EXPECT_TRUE(swapped) << "a holder's value, named exactly, hands the lease over";
  ASSERT_TRUE(compare_and_set(*probe_a, lease, "a", "a", 60000, &swapped).ok());
  EXPECT_FALSE(swapped) << "the first host renewed a lease it no longer holds";

  ASSERT_TRUE(compare_and_set(*probe_a, lease + "short", std::nullopt, "a", 50, &swapped).ok());
  ASSERT_TRUE(swapped);
  EXPECT_TRUE(eventually([&] {
    bool taken = false;
    return compare_and_set(*probe_b, lease + "short", std::nullopt, "b", 60000, &taken).ok() && taken;
  })) << "a lease that was not renewed never lapsed";

  pb::CacheReply reply;
  ASSERT_TRUE(cache_call(*probe_a, pb::CacheRequest::GET, lease, &reply).ok());
  EXPECT_EQ(reply.value(), "b");
  grpc::Status big = compare_and_set(*probe_a, lease, std::nullopt, std::string(2 << 20, 'x'), 0, &swapped);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << big.error_message();
  EXPECT_EQ(host_a.stop(), 0) << host_a.log();
  EXPECT_EQ(host_b.stop(), 0) << host_b.log();
}

// Two hosts on one Redis: a message a plugin publishes on one reaches the subscribers on both.
TEST(PubSubThroughTheHost, MessagesReachSubscribersOnAnotherHost) {
  ASSERT_FALSE(redis_url().empty()) << "run the suite with `tools/gv test`";
  TempDir data_a, data_b;
  HostProcess host_a(probe_host_config(data_a.path(), "redis"));
  HostProcess host_b(probe_host_config(data_b.path(), "redis"));
  auto probe_a = pb::PlatformProbe::NewStub(host_a.channel());
  auto probe_b = pb::PlatformProbe::NewStub(host_b.channel());
  const std::string tag = std::to_string(std::random_device()());
  ASSERT_TRUE(publish(*probe_a, "scores", "from a " + tag).ok());
  ASSERT_TRUE(publish(*probe_b, "scores", "from b " + tag).ok());
  ASSERT_TRUE(publish(*probe_a, "elsewhere", "not for the probe").ok());
  for (auto* probe : {probe_a.get(), probe_b.get()}) {
    ASSERT_TRUE(eventually([&] { return received(*probe).size() == 2; })) << received(*probe).size();
    const auto seen = received(*probe);
    EXPECT_NE(std::find(seen.begin(), seen.end(), "from a " + tag), seen.end());
    EXPECT_NE(std::find(seen.begin(), seen.end(), "from b " + tag), seen.end());
  }
  grpc::Status bad = publish(*probe_a, "", "x");
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad.error_message(), "the topic is empty");
  EXPECT_EQ(host_a.stop(), 0) << host_a.log();
  EXPECT_EQ(host_b.stop(), 0) << host_b.log();
}

// Messages flow while the subscriber plugin is reloaded again and again: each reaches exactly one
// generation (the probe counts every message it receives under "seen:<payload>").
TEST(PubSubThroughTheHost, SubscriptionsMoveAcrossReloadsWithoutLossOrRepeat) {
  TempDir data;
  const auto probe_file = data.path() / "platform-probe.so";
  std::filesystem::copy_file(GV_PROBE_DIR "/platform-probe.so", probe_file);
  HostProcess host(probe_host_config(data.path(), "memory", probe_file.string()));
  auto probe = pb::PlatformProbe::NewStub(host.channel());
  constexpr int kMessages = 400;
  std::atomic<int> published{0};
  std::atomic<int> failed{0};
  std::thread publisher([&] {
    for (int i = 0; i < kMessages; ++i) {
      if (!publish(*probe, "scores", std::to_string(i)).ok()) failed++;
      published++;
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  constexpr int kReloads = 8;
  for (int generation = 2; generation <= kReloads + 1; ++generation) {
    // A rebuilt plugin: the same code with one more byte at the end, so its hash differs.
    std::ofstream(probe_file, std::ios::app | std::ios::binary) << '\n';
    host.signal(SIGHUP);
    const bool reloaded = eventually([&] {
      return host.log().find("plugin 'platform-probe' generation " + std::to_string(generation) +
                             " serving") != std::string::npos;
    });
    EXPECT_TRUE(reloaded) << "reload to generation " << generation << " did not happen";
    if (!reloaded) break;
  }
  publisher.join();
  EXPECT_EQ(failed, 0);
  for (int i = 0; i < kMessages; ++i) {
    pb::CacheReply reply;
    ASSERT_TRUE(eventually([&] {
      return cache_call(*probe, pb::CacheRequest::GET, "seen:" + std::to_string(i), &reply).ok() &&
             reply.found();
    })) << "message "
        << i << " reached no generation";
    EXPECT_EQ(reply.value(), "1") << "message " << i << " reached " << reply.value() << " generations";
  }
  EXPECT_EQ(host.stop(), 0) << host.log();
}

}  // namespace
}  // namespace gameverse::testing

namespace gameverse::testing {
namespace {

namespace storeprobe = gameverse::storeprobe::v1;

// GET `path` on the host's HTTP port with curl: the body, then a line "HTTP <status>".
std::string http_get(const HostProcess& host, const std::string& path) {
  return run_command("curl -sS --max-time 30 -w '\\nHTTP %{http_code}' http://127.0.0.1:" +
                     std::to_string(host.http_port()) + path)
      .output;
}

bool have_curl() {
  return std::system("command -v curl > /dev/null 2>&1") == 0;
}

// A plugin's cache and pub/sub operations are counted by status code and timed, per plugin.
TEST(Metrics, PlatformOperationsAreCountedPerPluginOnTheHttpPort) {
  if (!have_curl()) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  TempDir data;
  HostProcess host("[http]\nlisten = \"127.0.0.1:0\"\n" + probe_host_config(data.path(), "memory"));
  auto probe = pb::PlatformProbe::NewStub(host.channel());
  pb::CacheReply reply;
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::SET, "k", nullptr, "v").ok());
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::GET, "k", &reply).ok());
  ASSERT_TRUE(cache_call(*probe, pb::CacheRequest::GET, "missing", &reply).ok());
  ASSERT_TRUE(publish(*probe, "scores", "1").ok());
  const std::string text = http_get(host, "/metrics");
  const std::string labels = "{plugin=\"platform-probe\",service=\"cache\",operation=";
  EXPECT_CONTAINS(text, "gameverse_platform_operations_total" + labels + "\"set\",code=\"OK\"} 1\n");
  EXPECT_CONTAINS(text, "gameverse_platform_operations_total" + labels + "\"get\",code=\"OK\"} 1\n");
  EXPECT_CONTAINS(text, "gameverse_platform_operations_total" + labels + "\"get\",code=\"NOT_FOUND\"} 1\n");
  EXPECT_CONTAINS(text,
                  "gameverse_platform_operations_total{plugin=\"platform-probe\",service=\"pubsub\","
                  "operation=\"publish\",code=\"OK\"} 1\n");
  EXPECT_CONTAINS(text, "gameverse_platform_operation_duration_seconds_count" + labels + "\"get\"} 2\n");
}

// A scrape taken while the probes use the store, the cache, pub/sub, in-process calls and the pool
// for blocking work, after a reload and a refused reload, passes Prometheus's own checker and holds
// each family: store, cache and pub/sub operations by code, the blocking pool, the plugin's own
// metrics, and the reload counters.
TEST(Metrics, AScrapeUnderPlatformLoadPassesPromtool) {
  if (!have_curl()) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  if (std::system("command -v promtool > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool is not installed: Debian's prometheus package (tools/gv deps)";
  TempDir data;
  const auto probe_file = data.path() / "platform-probe.so";
  std::filesystem::copy_file(GV_PROBE_DIR "/platform-probe.so", probe_file);
  const std::string token = "metrics-test-operator-token-0123";
  HostProcess host("[http]\nlisten = \"127.0.0.1:0\"\n[admin]\ntoken = \"" + token + "\"\n" +
                   probe_host_config(data.path(), "memory", probe_file.string()) +
                   "[[plugin]]\nname = \"store-probe\"\npath = \"" GV_PROBE_DIR "/store-probe.so\"\n");
  auto probe = pb::PlatformProbe::NewStub(host.channel());
  auto store = storeprobe::StoreProbe::NewStub(host.channel());
  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};
  std::atomic<int> failures{0};
  std::string last_failure;
  std::mutex failure_mu;
  const auto check = [&](const grpc::Status& status, bool expect_ok = true) {
    if (status.ok() == expect_ok) return;
    ++failures;
    std::lock_guard lock(failure_mu);
    last_failure = status.error_message();
  };
  std::thread load([&] {
    for (int i = 0; !stop; ++i) {
      const std::string key = "k" + std::to_string(i % 16);
      check(cache_call(*probe, pb::CacheRequest::SET, key, nullptr, "v"));
      check(cache_call(*probe, pb::CacheRequest::GET, key, nullptr));
      check(publish(*probe, "scores", std::to_string(i)));
      {
        grpc::ClientContext context;
        storeprobe::Write write;
        write.set_collection("items");
        write.set_key(key);
        write.set_value("item");
        storeprobe::Versions versions;
        check(store->Put(&context, write, &versions));
      }
      {
        grpc::ClientContext context;
        storeprobe::Key missing;
        missing.set_collection("items");
        missing.set_key("missing");
        storeprobe::Object object;
        check(store->Get(&context, missing, &object), false);  // NOT_FOUND, counted as such
      }
      {  // An in-process call from the probe to the store probe: the probe's own counter.
        storeprobe::Key present;
        present.set_collection("items");
        present.set_key(key);
        grpc::ClientContext context;
        pb::RelayRequest relay;
        relay.set_method("/gameverse.storeprobe.v1.StoreProbe/Get");
        relay.set_request(present.SerializeAsString());
        pb::RelayReply reply;
        check(probe->Relay(&context, relay, &reply));
      }
      ++rounds;
    }
  });
  ASSERT_TRUE(eventually([&] { return rounds > 5; }, std::chrono::seconds(60))) << host.log();

  const std::string gvctl = std::string(GV_GVCTL_BINARY) + " --addr " + host.address() + " --token " + token;
  const CommandRun reloaded = run_command(gvctl + " reload --force platform-probe");
  EXPECT_EQ(reloaded.exit_code, 0) << reloaded.output;
  // A file that is no plugin: refused, and generation 2 serves on.
  const auto tmp = data.path() / "platform-probe.so.tmp";
  std::ofstream(tmp) << "not a shared library";
  std::filesystem::rename(tmp, probe_file);
  const CommandRun refused = run_command(gvctl + " reload platform-probe");
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  const int after_refusal = rounds;
  ASSERT_TRUE(eventually([&] { return rounds > after_refusal + 5; }, std::chrono::seconds(60))) << host.log();

  const auto file = data.path() / "scrape.txt";
  const CommandRun fetched = run_command("curl -sS --max-time 30 -o " + file.string() + " http://127.0.0.1:" +
                                         std::to_string(host.http_port()) + "/metrics");
  stop = true;
  load.join();
  ASSERT_EQ(fetched.exit_code, 0) << fetched.output;
  EXPECT_EQ(failures, 0) << last_failure;
  const std::string text = read_file(file);
  const CommandRun promtool = run_command("promtool check metrics < " + file.string());
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output << "\n" << text;

  const auto expect_series = [&](const std::string& pattern) {
    EXPECT_TRUE(std::regex_search(text, std::regex(pattern))) << pattern << " is not in:\n" << text;
  };
  const std::string operations = R"(gameverse_platform_operations_total\{plugin=")";
  expect_series(operations + R"(store-probe",service="store",operation="write",code="OK"\} [1-9])");
  expect_series(operations + R"(store-probe",service="store",operation="get",code="OK"\} [1-9])");
  expect_series(operations + R"(store-probe",service="store",operation="get",code="NOT_FOUND"\} [1-9])");
  expect_series(
      R"(gameverse_platform_operation_duration_seconds_count\{plugin="store-probe",service="store",operation="write"\} [1-9])");
  expect_series(operations + R"(platform-probe",service="cache",operation="set",code="OK"\} [1-9])");
  expect_series(operations + R"(platform-probe",service="pubsub",operation="publish",code="OK"\} [1-9])");
  // Both probes' blocking handlers ran on the pool.
  expect_series(R"(gameverse_blocking_run_seconds_count\{plugin="store-probe"\} [1-9])");
  expect_series(R"(gameverse_blocking_wait_seconds_bucket\{plugin="platform-probe",le="\+Inf"\} [1-9])");
  expect_series(R"(gameverse_blocking_queued\{plugin="store-probe"\} \d)");
  expect_series(R"(gameverse_blocking_running\{plugin="platform-probe"\} \d)");
  // The probe's own metrics, across its reload.
  expect_series(R"(# TYPE probe_relayed_total counter\n)");
  expect_series(R"(probe_relayed_total\{plugin="platform-probe",outcome="ok"\} [1-9])");
  expect_series(R"(probe_generation_started\{plugin="platform-probe"\} 1\n)");
  // One reload, one refused; the store probe was never reloaded.
  expect_series(R"(gameverse_plugin_generation\{plugin="platform-probe"\} 2\n)");
  expect_series(R"(gameverse_plugin_reloads_total\{plugin="platform-probe"\} 1\n)");
  expect_series(R"(gameverse_plugin_reload_failures_total\{plugin="platform-probe"\} 1\n)");
  expect_series(R"(gameverse_plugin_reloads_total\{plugin="store-probe"\} 0\n)");
  EXPECT_EQ(text.find("gameverse_plugin_reload_failures_total{plugin=\"store-probe\"}"), std::string::npos);
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// /readyz names Redis while it is down, and is ready again once it is back.
TEST(Readiness, FollowsRedis) {
  if (!have_curl()) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  OwnRedis redis;
  ASSERT_TRUE(redis.start()) << "redis-server did not start";
  TempDir data;
  HostProcess host("[http]\nlisten = \"127.0.0.1:0\"\n[host]\nwatch = false\ndata_dir = \"" +
                   data.path().string() + "\"\n[redis]\nurl = \"" + redis.url() +
                   "\"\n[cache]\nbackend = \"redis\"\n");
  EXPECT_EQ(http_get(host, "/readyz"), "ready\n\nHTTP 200");
  redis.stop();
  EXPECT_TRUE(eventually([&] {
    return http_get(host, "/readyz").find("Redis is unreachable") != std::string::npos;
  })) << http_get(host, "/readyz");
  EXPECT_CONTAINS(http_get(host, "/readyz"), "HTTP 503");
  ASSERT_TRUE(redis.start());
  EXPECT_TRUE(
      eventually([&] { return http_get(host, "/readyz") == "ready\n\nHTTP 200"; }, std::chrono::seconds(30)))
      << http_get(host, "/readyz");
}

}  // namespace
}  // namespace gameverse::testing
