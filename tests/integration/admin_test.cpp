// The admin service through gvctl, the real CLI, against the real host: every command, its
// output and its exit code.
#include <gtest/gtest.h>

#include <cstdio>

#include "admin/admin_plugin.hpp"
#include "expect_contains.hpp"
#include "host_process.hpp"

namespace gameverse::testing {
namespace {

struct CliRun {
  int exit_code;
  std::string output;  // stdout and stderr
};

// gvctl with `arguments` as they are.
CliRun gvctl_raw(const std::string& arguments) {
  const std::string command = std::string(GV_GVCTL_BINARY) + " " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  CliRun run{-1, ""};
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) run.output += buffer;
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

CliRun gvctl(const HostProcess& host, const std::string& arguments) {
  return gvctl_raw("--addr " + host.address() + " " + arguments);
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::copy_file(GV_PLUGIN_DIR "/echo.so", dir_.path() / "echo.so");
    host_ = std::make_unique<HostProcess>("[host]\nwatch = false\nplugin_dir = \"" + dir_.path().string() +
                                          "\"\n[[plugin]]\nname = \"echo\"\n");
  }
  TempDir dir_;
  std::unique_ptr<HostProcess> host_;
};

TEST_F(AdminTest, ListAndStatus) {
  CliRun list = gvctl(*host_, "list");
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_CONTAINS(list.output, "NAME");
  EXPECT_CONTAINS(list.output, "echo");
  EXPECT_CONTAINS(list.output, "serving");
  EXPECT_CONTAINS(list.output, "gameverse-admin");

  CliRun status = gvctl(*host_, "status echo");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_CONTAINS(status.output, "method:       /gameverse.echo.v1.Echo/Count");
  CliRun json = gvctl(*host_, "--json status echo");
  EXPECT_CONTAINS(json.output, "\"name\": \"echo\"");
  EXPECT_CONTAINS(json.output, "\"state\": \"serving\"");

  CliRun missing = gvctl(*host_, "status nope");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_CONTAINS(missing.output, "no plugin named 'nope'");
}

TEST_F(AdminTest, GlobalOptionsGoBeforeOrAfterTheSubcommand) {
  for (const std::string arguments : {"list --json", "--json list"}) {
    CliRun list = gvctl(*host_, arguments);
    EXPECT_EQ(list.exit_code, 0) << arguments << ": " << list.output;
    EXPECT_CONTAINS(list.output, "\"plugins\": [");
    EXPECT_CONTAINS(list.output, "\"name\": \"echo\"");
    EXPECT_EQ(list.output.find("NAME"), std::string::npos) << arguments << " printed the table";
  }
  // After the subcommand's positional argument, and every global option there.
  CliRun status = gvctl_raw("status echo --json --addr " + host_->address() + " --timeout-ms 10000");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_CONTAINS(status.output, "\"name\": \"echo\"");
  EXPECT_CONTAINS(status.output, "\"state\": \"serving\"");

  CliRun misspelt = gvctl(*host_, "list --jsn");
  EXPECT_EQ(misspelt.exit_code, 2) << misspelt.output;
  EXPECT_CONTAINS(misspelt.output, "--jsn");
}

TEST_F(AdminTest, ReloadUnloadAndLoad) {
  CliRun unchanged = gvctl(*host_, "reload echo");
  EXPECT_EQ(unchanged.exit_code, 0) << unchanged.output;
  EXPECT_CONTAINS(unchanged.output, "unchanged on disk (generation 1)");

  CliRun forced = gvctl(*host_, "reload echo --force");
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_CONTAINS(forced.output, "reloaded (generation 2)");

  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/echo-incompatible.so", dir_.path() / "echo.so",
                             std::filesystem::copy_options::overwrite_existing);
  CliRun refused = gvctl(*host_, "reload echo");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_CONTAINS(refused.output, "changed type from bytes to int64");
  EXPECT_CONTAINS(gvctl(*host_, "status echo").output, "changed type from bytes to int64");  // the last error
  CliRun accepted = gvctl(*host_, "reload echo --force");
  EXPECT_EQ(accepted.exit_code, 0) << accepted.output;
  EXPECT_CONTAINS(accepted.output, "(generation 4)");

  EXPECT_EQ(gvctl(*host_, "unload echo").exit_code, 0);
  EXPECT_CONTAINS(gvctl(*host_, "list").output, "unloaded");
  CliRun again = gvctl(*host_, "unload echo");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_CONTAINS(again.output, "is not loaded");

  CliRun load = gvctl(
      *host_, std::string("load hello-c --path ") + GV_PLUGIN_DIR "/hello-c.so --config 'greeting = \"Yo\"'");
  EXPECT_EQ(load.exit_code, 0) << load.output;
  EXPECT_CONTAINS(load.output, "plugin 'hello-c' loaded (generation 1)");
  CliRun bad_config = gvctl(*host_, std::string("load hello-c2 --path ") + GV_PLUGIN_DIR "/hello-c.so");
  EXPECT_EQ(bad_config.exit_code, 1);
  EXPECT_CONTAINS(bad_config.output, "holds plugin 'hello-c', not 'hello-c2'");

  CliRun builtin = gvctl(*host_, "unload gameverse-admin");
  EXPECT_EQ(builtin.exit_code, 1);
  EXPECT_CONTAINS(builtin.output, "built into the host");
}

TEST_F(AdminTest, ValidateNamesEveryProblem) {
  const auto good = dir_.path() / "good.toml";
  std::ofstream(good) << "[[plugin]]\nname = \"echo\"\npath = \"echo.so\"\n";
  CliRun valid = gvctl(*host_, "validate " + good.string());
  EXPECT_EQ(valid.exit_code, 0) << valid.output;
  EXPECT_CONTAINS(valid.output, "valid");

  const auto bad = dir_.path() / "bad.toml";
  std::ofstream(bad)
      << "[[plugin]]\nname = \"echo\"\npath = \"echo.so\"\n[plugin.config]\nmax_stream_mesages = 1\n";
  CliRun invalid = gvctl(*host_, "validate " + bad.string());
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_CONTAINS(invalid.output, "bad.toml:5:1: plugin[0].config.max_stream_mesages: unknown key");
}

TEST_F(AdminTest, WatchPrintsLifecycleEvents) {
  const std::string command = std::string(GV_GVCTL_BINARY) + " --addr " + host_->address() + " watch 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  // The watch is subscribed once its first event arrives; keep reloading until one does.
  std::atomic<bool> seen{false};
  std::thread reloader([&] {
    for (int i = 0; i < 200 && !seen; ++i) {
      gvctl(*host_, "reload echo --force");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  char line[4096];
  std::string first;
  if (fgets(line, sizeof line, pipe) != nullptr) first = line;
  seen = true;
  reloader.join();
  EXPECT_CONTAINS(first, "echo");
  EXPECT_TRUE(first.find("serving") != std::string::npos || first.find("draining") != std::string::npos ||
              first.find("retired") != std::string::npos)
      << first;
  EXPECT_EQ(host_->stop(), 0) << host_->log();  // ends the watch stream: the host finishes it before draining
  while (fgets(line, sizeof line, pipe) != nullptr) {
  }
  EXPECT_EQ(WEXITSTATUS(pclose(pipe)), 0);
}

TEST(AdminAccess, LoopbackAlwaysOthersOnlyWithTheToken) {
  using admin::access_refusal;
  EXPECT_EQ(access_refusal("ipv4:127.0.0.1:5000", {}, ""), "");
  EXPECT_EQ(access_refusal("ipv6:[::1]:5000", {}, ""), "");
  EXPECT_EQ(access_refusal("unix:/run/gv.sock", {}, ""), "");
  EXPECT_CONTAINS(access_refusal("ipv4:10.1.2.3:5000", {}, ""), "answers loopback only");
  const std::string token = "0123456789abcdef";
  EXPECT_EQ(access_refusal("ipv4:10.1.2.3:5000", {"Bearer 0123456789abcdef"}, token), "");
  EXPECT_CONTAINS(access_refusal("ipv4:10.1.2.3:5000", {"Bearer 0123456789abcdeX"}, token),
                  "needs 'authorization");
  EXPECT_CONTAINS(access_refusal("ipv4:10.1.2.3:5000", {}, token), "needs 'authorization");
  // [admin] allow_loopback = false: loopback callers, too, need the token.
  EXPECT_CONTAINS(access_refusal("ipv4:127.0.0.1:5000", {}, token, false), "needs 'authorization");
  EXPECT_EQ(access_refusal("ipv4:127.0.0.1:5000", {"Bearer 0123456789abcdef"}, token, false), "");
}

}  // namespace
}  // namespace gameverse::testing
