// Hot reload: the real host binary under load while its plugin file is replaced, bad versions
// that must be refused, config-driven changes, the drain deadline; and the manager in process for
// dependency order, cycles and resource use across many reloads.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>

#include "expect_contains.hpp"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/hello/v1/hello.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "host_process.hpp"
#include "plugin/manager.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::echo::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kEchoA = GV_PLUGIN_DIR "/echo.so";
const std::string kEchoB = GV_RELOAD_FIXTURE_DIR "/echo-b.so";

// Puts `source` at `target` the way a deploy does: copy beside it, then rename into place.
void install(const std::filesystem::path& source, const std::filesystem::path& target) {
  const auto tmp = target.string() + ".partial";
  std::filesystem::copy_file(source, tmp, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(tmp, target);
}

std::string host_config(const std::filesystem::path& plugin_dir, const std::string& extra = "",
                        const std::string& server = "drain_timeout_ms = 5000\n", bool watch = false) {
  return "[server]\nworker_threads = 2\n" + server + "[host]\nlog_level = \"debug\"\nplugin_dir = \"" +
         plugin_dir.string() + "\"\nwatch = " + (watch ? "true" : "false") +
         "\nwatch_debounce_ms = 50\n[admin]\nallow_loopback = true\n[[plugin]]\nname = \"echo\"\n" + extra;
}

pb::StatsReply stats(pb::Echo::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  pb::StatsReply reply;
  grpc::Status status = stub.Stats(&context, pb::StatsRequest(), &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return reply;
}

grpc::Status echo_call(pb::Echo::Stub& stub, const std::string& payload) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  pb::EchoRequest request;
  request.set_payload(payload);
  pb::EchoReply reply;
  grpc::Status status = stub.Echo(&context, request, &reply);
  if (status.ok() && reply.payload() != payload) return {grpc::StatusCode::DATA_LOSS, "wrong payload"};
  return status;
}

size_t mapped_generations(pid_t pid, const std::string& plugin) {
  const std::string maps = read_file("/proc/" + std::to_string(pid) + "/maps");
  std::set<std::string> files;
  std::istringstream lines(maps);
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("gameverse-staging-");
    if (at != std::string::npos && line.find("/" + plugin + ".g", at) != std::string::npos)
      files.insert(line.substr(at));
  }
  return files.size();
}

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override { install(kEchoA, dir_.path() / "echo.so"); }
  std::filesystem::path plugin(const std::string& name) const { return dir_.path() / (name + ".so"); }
  TempDir dir_;
};

// Clients call without pause, in every kind that matters, while echo is replaced 100 times.
TEST_F(ReloadTest, HundredReloadsUnderLoadFailNoCallAndDropNoStream) {
  HostProcess host(host_config(dir_.path()));
  auto channel = host.channel();
  auto stub = pb::Echo::NewStub(channel);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> unary_ok{0};
  std::atomic<uint64_t> unary_failed{0};
  std::mutex errors_mu;
  std::vector<std::string> errors;
  auto record = [&](const std::string& what) {
    std::lock_guard lock(errors_mu);
    if (errors.size() < 10) errors.push_back(what);
  };

  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      auto own = pb::Echo::NewStub(host.channel());
      for (uint64_t i = 0; !stop; ++i) {
        grpc::Status status = echo_call(*own, std::to_string(t) + "/" + std::to_string(i));
        if (status.ok()) {
          unary_ok++;
        } else {
          unary_failed++;
          record("unary: " + std::to_string(status.error_code()) + " " + status.error_message());
        }
      }
    });
  }

  // A server stream counting 1, 2, 3, ... must see every number once, across generations.
  std::set<std::string> count_instances;
  uint64_t count_last = 0;
  clients.emplace_back([&] {
    grpc::ClientContext context;
    pb::CountRequest request;
    request.set_interval_ms(1);
    auto reader = stub->Count(&context, request);
    pb::CountReply reply;
    while (!stop && reader->Read(&reply)) {
      if (reply.value() != count_last + 1) {
        record("count: " + std::to_string(count_last) + " then " + std::to_string(reply.value()));
      }
      count_last = reply.value();
      count_instances.insert(reply.instance_id());
    }
    context.TryCancel();
    grpc::Status status = reader->Finish();
    if (!stop) record("count stream ended: " + status.error_message());
  });

  // A bidi stream: every reply carries the next sequence number, whichever generation answers.
  std::set<std::string> chat_instances;
  uint64_t chat_last = 0;
  clients.emplace_back([&] {
    grpc::ClientContext context;
    auto stream = stub->Chat(&context);
    pb::EchoRequest request;
    pb::EchoReply reply;
    while (!stop) {
      request.set_payload(std::to_string(chat_last + 1));
      if (!stream->Write(request) || !stream->Read(&reply)) {
        record("chat stream broke");
        break;
      }
      if (reply.sequence() != chat_last + 1 || reply.payload() != request.payload()) {
        record("chat: expected " + std::to_string(chat_last + 1) + ", got " +
               std::to_string(reply.sequence()));
      }
      chat_last = reply.sequence();
      chat_instances.insert(reply.instance_id());
    }
    stream->WritesDone();
    grpc::Status status = stream->Finish();
    if (!status.ok()) record("chat finished with " + status.error_message());
  });

  constexpr uint64_t kReloads = 100;
  for (uint64_t i = 1; i <= kReloads; ++i) {
    install(i % 2 ? kEchoB : kEchoA, plugin("echo"));
    host.signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return stats(*stub).handovers() == i; }, seconds(20)))
        << "reload " << i << " did not happen\n"
        << host.log().substr(0, 20000);
  }
  std::this_thread::sleep_for(milliseconds(50));  // let the streams run in the last generation
  stop = true;
  for (auto& client : clients) client.join();

  EXPECT_EQ(unary_failed, 0u);
  EXPECT_GT(unary_ok, kReloads);
  for (const auto& error : errors) ADD_FAILURE() << error;
  EXPECT_GT(count_last, 0u);
  EXPECT_GT(count_instances.size(), 10u) << "the Count stream did not move between generations";
  EXPECT_GT(chat_instances.size(), 10u) << "the Chat stream did not move between generations";
  EXPECT_TRUE(eventually([&] { return mapped_generations(host.pid(), "echo") == 1; }, seconds(20)))
      << "old generations are still mapped: " << mapped_generations(host.pid(), "echo");
  EXPECT_EQ(host.stop(), 0) << host.log();
  EXPECT_CONTAINS(host.log(), "retired: unmapped");
}

TEST_F(ReloadTest, BadNewVersionsAreRefusedAndTheOldKeepsServing) {
  HostProcess host(host_config(dir_.path()));
  auto stub = pb::Echo::NewStub(host.channel());
  const std::string serving = stats(*stub).instance_id();

  struct Bad {
    std::string what;
    std::function<void()> install;
    std::string expected;
  };
  const auto target = plugin("echo");
  const std::vector<Bad> bad = {
      {"corrupt file",
       [&] {
         std::ofstream(target.string() + ".partial") << "not a shared library";
         std::filesystem::rename(target.string() + ".partial", target);
       },
       "cannot be loaded"},
      {"ABI mismatch", [&] { install(GV_FIXTURE_DIR "/abi-major-mismatch.so", target); },
       "was built for ABI major 2"},
      {"incompatible routes", [&] { install(GV_RELOAD_FIXTURE_DIR "/echo-incompatible.so", target); },
       "/gameverse.echo.v1.Echo/Echo: gameverse.echo.v1.EchoRequest.payload (field 1) changed type from "
       "bytes to int64"},
  };
  for (const Bad& b : bad) {
    b.install();
    host.signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return host.log().find(b.expected) != std::string::npos; }))
        << b.what << ": no refusal in\n"
        << host.log();
    EXPECT_TRUE(echo_call(*stub, b.what).ok()) << b.what;
    EXPECT_EQ(stats(*stub).instance_id(), serving) << b.what << " replaced the serving generation";
  }

  // A config value that breaks the rule echo declares for it, named with its place in the file.
  // (The file is the serving one again, so only the config changes.)
  install(kEchoA, target);
  host.write_config(host_config(dir_.path(), "[plugin.config]\nmax_stream_messages = 0\n"));
  host.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return host.log().find(
               "gameverse.toml:14:23: plugin[0].config.max_stream_messages: must be at least 1, not 0") !=
           std::string::npos;
  })) << host.log();
  EXPECT_EQ(stats(*stub).instance_id(), serving);

  // A config that does not parse changes nothing.
  host.write_config("[server\n");
  host.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return host.log().find("nothing was changed") != std::string::npos; }));
  EXPECT_EQ(stats(*stub).instance_id(), serving);

  // A good version goes through after all that.
  install(kEchoB, target);
  host.write_config(host_config(dir_.path()));
  host.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return stats(*stub).instance_id() != serving; }));
  EXPECT_EQ(stats(*stub).handovers(), 1u);
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST_F(ReloadTest, ConfigAddsRemovesAndChangesPlugins) {
  install(GV_PLUGIN_DIR "/hello-c.so", plugin("hello-c"));
  HostProcess host(host_config(dir_.path()));
  auto channel = host.channel();
  auto echo = pb::Echo::NewStub(channel);
  auto hello = gameverse::hello::v1::Hello::NewStub(channel);
  auto greet = [&] {
    grpc::ClientContext context;
    gameverse::hello::v1::GreetRequest request;
    request.set_name("Ada");
    gameverse::hello::v1::GreetReply reply;
    grpc::Status status = hello->Greet(&context, request, &reply);
    return status.ok() ? reply.message() : "status " + std::to_string(status.error_code());
  };
  EXPECT_EQ(greet(), "status 12");  // not configured: UNIMPLEMENTED

  host.write_config(
      host_config(dir_.path(), "[[plugin]]\nname = \"hello-c\"\n[plugin.config]\ngreeting = \"Hej\"\n"));
  host.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return greet() == "Hej, Ada!"; })) << host.log();

  // A changed config table reloads the plugin with it.
  host.write_config(
      host_config(dir_.path(), "[plugin.config]\nmax_stream_messages = 5\n[[plugin]]\nname = \"hello-c\"\n"));
  host.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return greet() == "Hello, Ada!"; })) << host.log();
  {
    grpc::ClientContext context;
    pb::ExpandRequest request;
    request.set_count(6);
    auto reader = echo->Expand(&context, request);
    pb::EchoReply reply;
    while (reader->Read(&reply)) {
    }
    EXPECT_EQ(reader->Finish().error_message(), "count 6 exceeds max_stream_messages 5");
  }

  host.write_config(host_config(dir_.path()));
  host.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return greet() == "status 12"; })) << host.log();
  EXPECT_TRUE(echo_call(*echo, "still").ok());
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST_F(ReloadTest, ChangedFileOnDiskIsPickedUpWithoutASignal) {
  HostProcess host(host_config(dir_.path(), "", "drain_timeout_ms = 5000\n", true));
  auto stub = pb::Echo::NewStub(host.channel());
  const std::string before = stats(*stub).instance_id();
  install(kEchoB, plugin("echo"));
  ASSERT_TRUE(eventually([&] { return stats(*stub).handovers() == 1; })) << host.log();
  EXPECT_NE(stats(*stub).instance_id(), before);
  EXPECT_CONTAINS(host.log(), "files changed on disk");
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST_F(ReloadTest, DrainDeadlineEndsLeftoverCallsWithUnavailable) {
  HostProcess host(host_config(dir_.path(), "", "drain_timeout_ms = 300\n"));
  auto stub = pb::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  pb::SleepRequest request;
  request.set_duration_ms(30000);
  pb::SleepReply reply;
  std::promise<grpc::Status> done;
  stub->async()->Sleep(&context, &request, &reply, [&done](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(eventually([&] { return stats(*stub).sleeps_started() == 1; }));
  install(kEchoB, plugin("echo"));
  host.signal(SIGHUP);
  // While it drains, the admin service shows the old generation with its call in flight.
  auto admin = gameverse::host::v1::PluginAdmin::NewStub(host.channel());
  EXPECT_TRUE(eventually([&] {
    grpc::ClientContext context;
    gameverse::host::v1::GetPluginRequest request;
    request.set_name("echo");
    gameverse::host::v1::PluginInfo info;
    return admin->GetPlugin(&context, request, &info).ok() && info.generations_size() >= 2 &&
           info.generations(0).state() == "serving" && info.generations(1).state() == "draining" &&
           info.generations(1).live_calls() == 1;
  }));
  grpc::Status status = done.get_future().get();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_CONTAINS(status.error_message(), "drain of 300 ms ran out");
  EXPECT_TRUE(echo_call(*stub, "after").ok());
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// A blocking handler still running at the drain deadline: the client gets UNAVAILABLE at once,
// and the call stays the plugin's until its handler returns (it sees the cancellation), so the
// handler never touches a released call; then the old generation retires.
TEST_F(ReloadTest, DrainDeadlineWaitsForARunningBlockingHandler) {
  HostProcess host(host_config(dir_.path(), "", "drain_timeout_ms = 300\n"));
  auto stub = pb::Echo::NewStub(host.channel());
  auto admin = gameverse::host::v1::PluginAdmin::NewStub(host.channel());
  auto generations = [&] {
    grpc::ClientContext context;
    gameverse::host::v1::GetPluginRequest request;
    request.set_name("echo");
    gameverse::host::v1::PluginInfo info;
    EXPECT_TRUE(admin->GetPlugin(&context, request, &info).ok());
    return info;
  };
  grpc::ClientContext context;
  pb::SleepRequest request;
  request.set_duration_ms(30000);
  pb::SleepReply reply;
  std::promise<grpc::Status> done;
  stub->async()->Hold(&context, &request, &reply, [&done](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(eventually([&] { return generations().generations(0).live_calls() == 1; }));
  install(kEchoB, plugin("echo"));
  host.signal(SIGHUP);
  grpc::Status status = done.get_future().get();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_CONTAINS(status.error_message(), "drain of 300 ms ran out");
  EXPECT_TRUE(eventually([&] {
    const auto info = generations();
    return info.generations_size() >= 2 && info.generations(1).state() == "retired";
  })) << host.log();
  EXPECT_TRUE(echo_call(*stub, "after").ok());
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// --- the manager in process ---

plugin::PluginManager::Options options(const TempDir& dir) {
  return {dir.path() / "staging", milliseconds(2000)};
}

config::PluginConfig entry(const std::string& name, const std::filesystem::path& path) {
  config::PluginConfig e;
  e.name = name;
  e.path = path;
  e.source_file = "test.toml";
  e.key_prefix = "plugin[0]";
  return e;
}

TEST(Dependencies, LoadOrderFollowsThem) {
  TempDir dir;
  plugin::PluginManager manager(options(dir));
  std::vector<std::string> serving;
  manager.subscribe([&](const plugin::Event& e) {
    if (e.kind == plugin::Event::Kind::kServing) serving.push_back(e.plugin);
  });
  config::Config config;
  config.plugins = {entry("dep-a", GV_RELOAD_FIXTURE_DIR "/dep-a.so"),
                    entry("dep-b", GV_RELOAD_FIXTURE_DIR "/dep-b.so")};
  for (const auto& outcome : manager.load_all(config)) EXPECT_TRUE(outcome.ok()) << outcome.message;
  EXPECT_EQ(serving, (std::vector<std::string>{"dep-b", "dep-a"}));

  plugin::Outcome refused = manager.unload("dep-b");
  EXPECT_FALSE(refused.ok());
  EXPECT_CONTAINS(refused.message, "'dep-a' depends on gameverse.deps.v1.B");
  EXPECT_EQ(manager.routes()->count("/gameverse.deps.v1.B/Ping"), 1u);
  EXPECT_TRUE(manager.unload("dep-b", true).ok());
  EXPECT_EQ(manager.routes()->count("/gameverse.deps.v1.B/Ping"), 0u);
}

TEST(Dependencies, CycleIsRefusedNamingIt) {
  TempDir dir;
  plugin::PluginManager manager(options(dir));
  config::Config config;
  config.plugins = {entry("cycle-x", GV_RELOAD_FIXTURE_DIR "/cycle-x.so"),
                    entry("cycle-y", GV_RELOAD_FIXTURE_DIR "/cycle-y.so"),
                    entry("echo", GV_PLUGIN_DIR "/echo.so")};
  const auto outcomes = manager.load_all(config);
  ASSERT_EQ(outcomes.size(), 3u);
  for (const auto& outcome : outcomes) {
    if (outcome.plugin == "echo") {
      EXPECT_TRUE(outcome.ok());
    } else {
      EXPECT_FALSE(outcome.ok());
      EXPECT_CONTAINS(outcome.message, "dependency cycle: cycle-x -> cycle-y -> cycle-x");
    }
  }
}

TEST(Dependencies, MissingProviderIsNamed) {
  TempDir dir;
  plugin::PluginManager manager(options(dir));
  config::Config config;
  config.plugins = {entry("dep-a", GV_RELOAD_FIXTURE_DIR "/dep-a.so")};
  const auto outcomes = manager.load_all(config);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_CONTAINS(outcomes[0].message, "depends on gameverse.deps.v1.B, which no configured plugin serves");
}

size_t open_fds() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                           std::filesystem::directory_iterator()));
}

size_t threads() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                           std::filesystem::directory_iterator()));
}

size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0;
  size_t resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

TEST(ManyReloads, FileDescriptorsAndMemoryStayFlat) {
  TempDir dir;
  install(kEchoA, dir.path() / "echo.so");
  plugin::PluginManager manager(options(dir));
  config::Config config;
  config.plugins = {entry("echo", dir.path() / "echo.so")};
  ASSERT_TRUE(manager.load_all(config).at(0).ok());
  auto reload_to = [&](uint64_t i) {
    install(i % 2 ? kEchoB : kEchoA, dir.path() / "echo.so");
    plugin::Outcome outcome = manager.reload("echo");
    ASSERT_TRUE(outcome.ok()) << outcome.message;
    ASSERT_EQ(outcome.generation, i + 1);
  };
  for (uint64_t i = 1; i <= 20; ++i) reload_to(i);
  manager.wait_retired();
  const size_t fds_before = open_fds();
  const size_t threads_before = threads();
  [[maybe_unused]] const size_t rss_before = resident_bytes();
  for (uint64_t i = 21; i <= 500; ++i) reload_to(i);
  manager.wait_retired();
  EXPECT_LE(open_fds(), fds_before + 2);
  EXPECT_EQ(threads(), threads_before) << "threads of retired generations are still running";
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps freed memory in quarantine; only the descriptors are a fair bound here.
#else
  EXPECT_LE(resident_bytes(), rss_before + 32 * 1024 * 1024)
      << "grew from " << rss_before / 1024 << " KiB to " << resident_bytes() / 1024 << " KiB";
#endif
  const auto status = manager.status("echo");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->generations.front().number, 501u);
  EXPECT_EQ(status->generations.front().state, plugin::GenerationState::kServing);
  EXPECT_EQ(status->generations.at(1).state, plugin::GenerationState::kRetired);
}

}  // namespace
}  // namespace gameverse::testing
