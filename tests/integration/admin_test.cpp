// The admin service through gvctl, the real CLI, against the real host: every command, its
// output and its exit code; who may administer the host, and what LoadPlugin may load.
#include <gtest/gtest.h>

#include <cstdio>

#include "admin/admin_plugin.hpp"
#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "host_process.hpp"
#include "run_command.hpp"
#include "sign_up.hpp"

namespace gameverse::testing {
namespace {

// The hosts' [admin] token: the operator's credential.
constexpr const char* kToken = "admin-test-token-0123456789";

// gvctl with `arguments` as they are.
CommandRun gvctl_raw(const std::string& arguments) {
  return run_command(std::string(GV_GVCTL_BINARY) + " " + arguments);
}

// gvctl as the operator: with the host's [admin] token.
CommandRun gvctl(const HostProcess& host, const std::string& arguments) {
  return gvctl_raw("--addr " + host.address() + " --token " + kToken + " " + arguments);
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::copy_file(GV_PLUGIN_DIR "/echo.so", dir_.path() / "echo.so");
    host_ = std::make_unique<HostProcess>("[host]\nwatch = false\nplugin_dir = \"" + dir_.path().string() +
                                          "\"\n[admin]\ntoken = \"" + kToken +
                                          "\"\n[[plugin]]\nname = \"echo\"\n");
  }
  TempDir dir_;
  std::unique_ptr<HostProcess> host_;
};

TEST_F(AdminTest, ListAndStatus) {
  CommandRun list = gvctl(*host_, "list");
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_CONTAINS(list.output, "NAME");
  EXPECT_CONTAINS(list.output, "echo");
  EXPECT_CONTAINS(list.output, "serving");
  EXPECT_CONTAINS(list.output, "gameverse-admin");

  CommandRun status = gvctl(*host_, "status echo");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_CONTAINS(status.output, "method:       /gameverse.echo.v1.Echo/Count");
  CommandRun json = gvctl(*host_, "--json status echo");
  EXPECT_CONTAINS(json.output, "\"name\": \"echo\"");
  EXPECT_CONTAINS(json.output, "\"state\": \"serving\"");

  CommandRun missing = gvctl(*host_, "status nope");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_CONTAINS(missing.output, "no plugin named 'nope'");
}

TEST_F(AdminTest, GlobalOptionsGoBeforeOrAfterTheSubcommand) {
  for (const std::string arguments : {"list --json", "--json list"}) {
    CommandRun list = gvctl(*host_, arguments);
    EXPECT_EQ(list.exit_code, 0) << arguments << ": " << list.output;
    EXPECT_CONTAINS(list.output, "\"plugins\": [");
    EXPECT_CONTAINS(list.output, "\"name\": \"echo\"");
    EXPECT_EQ(list.output.find("NAME"), std::string::npos) << arguments << " printed the table";
  }
  // After the subcommand's positional argument, and every global option there.
  CommandRun status =
      gvctl_raw("status echo --json --addr " + host_->address() + " --timeout-ms 10000 --token " + kToken);
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_CONTAINS(status.output, "\"name\": \"echo\"");
  EXPECT_CONTAINS(status.output, "\"state\": \"serving\"");

  CommandRun misspelt = gvctl(*host_, "list --jsn");
  EXPECT_EQ(misspelt.exit_code, 2) << misspelt.output;
  EXPECT_CONTAINS(misspelt.output, "--jsn");
}

TEST_F(AdminTest, ReloadUnloadAndLoad) {
  CommandRun unchanged = gvctl(*host_, "reload echo");
  EXPECT_EQ(unchanged.exit_code, 0) << unchanged.output;
  EXPECT_CONTAINS(unchanged.output, "unchanged on disk (generation 1)");

  CommandRun forced = gvctl(*host_, "reload echo --force");
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_CONTAINS(forced.output, "reloaded (generation 2)");

  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/echo-incompatible.so", dir_.path() / "echo.so",
                             std::filesystem::copy_options::overwrite_existing);
  CommandRun refused = gvctl(*host_, "reload echo");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_CONTAINS(refused.output, "changed type from bytes to int64");
  EXPECT_CONTAINS(gvctl(*host_, "status echo").output, "changed type from bytes to int64");  // the last error
  CommandRun accepted = gvctl(*host_, "reload echo --force");
  EXPECT_EQ(accepted.exit_code, 0) << accepted.output;
  EXPECT_CONTAINS(accepted.output, "(generation 4)");

  EXPECT_EQ(gvctl(*host_, "unload echo").exit_code, 0);
  EXPECT_CONTAINS(gvctl(*host_, "list").output, "unloaded");
  CommandRun again = gvctl(*host_, "unload echo");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_CONTAINS(again.output, "is not loaded");

  std::filesystem::copy_file(GV_PLUGIN_DIR "/hello-c.so", dir_.path() / "hello-c.so");
  CommandRun load = gvctl(*host_, "load hello-c --path " + (dir_.path() / "hello-c.so").string() +
                                      " --config 'greeting = \"Yo\"'");
  EXPECT_EQ(load.exit_code, 0) << load.output;
  EXPECT_CONTAINS(load.output, "plugin 'hello-c' loaded (generation 1)");
  CommandRun bad_config = gvctl(*host_, "load hello-c2 --path " + (dir_.path() / "hello-c.so").string());
  EXPECT_EQ(bad_config.exit_code, 1);
  EXPECT_CONTAINS(bad_config.output, "holds plugin 'hello-c', not 'hello-c2'");

  CommandRun builtin = gvctl(*host_, "unload gameverse-admin");
  EXPECT_EQ(builtin.exit_code, 1);
  EXPECT_CONTAINS(builtin.output, "built into the host");
}

TEST_F(AdminTest, ValidateNamesEveryProblem) {
  const auto good = dir_.path() / "good.toml";
  std::ofstream(good) << "[[plugin]]\nname = \"echo\"\npath = \"echo.so\"\n";
  CommandRun valid = gvctl(*host_, "validate " + good.string());
  EXPECT_EQ(valid.exit_code, 0) << valid.output;
  EXPECT_CONTAINS(valid.output, "valid");

  const auto bad = dir_.path() / "bad.toml";
  std::ofstream(bad)
      << "[[plugin]]\nname = \"echo\"\npath = \"echo.so\"\n[plugin.config]\nmax_stream_mesages = 1\n";
  CommandRun invalid = gvctl(*host_, "validate " + bad.string());
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_CONTAINS(invalid.output, "bad.toml:5:1: plugin[0].config.max_stream_mesages: unknown key");

  // Opening a plugin runs its code: a file outside the plugin directory is named, not opened.
  const auto outside = dir_.path() / "outside.toml";
  std::ofstream(outside) << "[[plugin]]\nname = \"hello-c\"\npath = \"" GV_PLUGIN_DIR "/hello-c.so\"\n";
  CommandRun refused = gvctl(*host_, "validate " + outside.string());
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_CONTAINS(refused.output, "plugin[0].path: not checked: path '");
  EXPECT_CONTAINS(refused.output, "outside the plugin directory");
}

TEST_F(AdminTest, WatchPrintsLifecycleEvents) {
  const std::string command =
      std::string(GV_GVCTL_BINARY) + " --addr " + host_->address() + " --token " + kToken + " watch 2>&1";
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

TEST(AdminAccess, TheOperatorAlwaysLoopbackOnlyWhenAllowed) {
  using admin::access_refusal;
  for (const char* peer :
       {"ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:/run/gv.sock", "ipv4:10.1.2.3:5000"}) {
    EXPECT_EQ(access_refusal(peer, true, true, false), "") << peer;
    EXPECT_CONTAINS(access_refusal(peer, false, true, false), "needs the operator's credential");
  }
  // Loopback trust is off unless configured: behind a proxy on the same machine, everyone is loopback.
  EXPECT_CONTAINS(access_refusal("ipv4:127.0.0.1:5000", false, true, false),
                  "loopback callers need it too unless [admin] allow_loopback = true");
  EXPECT_EQ(access_refusal("ipv4:127.0.0.1:5000", false, false, true), "");
  EXPECT_EQ(access_refusal("unix:/run/gv.sock", false, false, true), "");
  EXPECT_CONTAINS(access_refusal("ipv4:10.1.2.3:5000", false, false, true), "set [admin] token");
}

// The defaults: a host with neither a token nor allow_loopback answers no one, loopback included.
TEST(AdminAccess, LoopbackWithoutTheTokenIsRefusedByDefault) {
  HostProcess host("[host]\nwatch = false\n");
  CommandRun refused = gvctl_raw("--addr " + host.address() + " list");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_CONTAINS(refused.output, "the admin service needs the operator's credential from ipv4:127.0.0.1:");
  EXPECT_CONTAINS(refused.output, "set [admin] token");

  HostProcess with_token(std::string("[host]\nwatch = false\n[admin]\ntoken = \"") + kToken + "\"\n");
  CommandRun no_token = gvctl_raw("--addr " + with_token.address() + " list");
  EXPECT_EQ(no_token.exit_code, 1) << no_token.output;
  EXPECT_CONTAINS(no_token.output, "send 'authorization: Bearer <the [admin] token>'");
  CommandRun wrong = gvctl_raw("--addr " + with_token.address() + " --token not-the-admin-token-at-all list");
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
  // The token on the command line, or in the environment.
  EXPECT_EQ(gvctl(with_token, "list").exit_code, 0);
  setenv("GAMEVERSE_ADMIN_TOKEN", kToken, 1);
  CommandRun from_env = gvctl_raw("--addr " + with_token.address() + " list");
  unsetenv("GAMEVERSE_ADMIN_TOKEN");
  EXPECT_EQ(from_env.exit_code, 0) << from_env.output;
  EXPECT_CONTAINS(from_env.output, "gameverse-admin");

  HostProcess trusting("[host]\nwatch = false\n[admin]\nallow_loopback = true\n");
  CommandRun loopback = gvctl_raw("--addr " + trusting.address() + " list");
  EXPECT_EQ(loopback.exit_code, 0) << loopback.output;
}

// Accounts' roles, the game's admin included, do not administer the host; the operator makes the
// first admin with gvctl grant-role, and registering gives no one the admin role.
TEST(AdminAccess, TheGameAdminRoleDoesNotAdministerTheHostAndTheOperatorMakesTheFirstAdmin) {
  TempDir data;
  HostProcess host("[host]\nwatch = false\ndata_dir = \"" + data.path().string() + "\"\n[admin]\ntoken = \"" +
                   kToken +
                   "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
                   "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n");
  auto auth = gameverse::auth::v1::Auth::NewStub(host.channel());
  auto grant_as = [&](const std::string& access_token, const std::string& account_id) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + access_token);
    gameverse::auth::v1::RoleRequest request;
    request.set_account_id(account_id);
    request.set_role("moderator");
    gameverse::auth::v1::Account changed;
    return auth->GrantRole(&context, request, &changed);
  };
  // The names that once were bootstrap admins are names like any other.
  const auto root = sign_up(*auth, "root");
  const auto alice = sign_up(*auth, "alice");
  const auto bob = sign_up(*auth, "bob");
  for (const auto& session : {root, alice}) {
    ASSERT_EQ(session.account().roles_size(), 1);
    EXPECT_EQ(session.account().roles(0), "player");
    EXPECT_EQ(grant_as(session.access_token(), bob.account().id()).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }

  // grant-role needs the token; then takes a username (or, with --id, an account id).
  CommandRun no_token = gvctl_raw("--addr " + host.address() + " grant-role alice admin");
  EXPECT_EQ(no_token.exit_code, 2) << no_token.output;
  EXPECT_CONTAINS(no_token.output, "pass its [admin] token with --token or GAMEVERSE_ADMIN_TOKEN");
  CommandRun granted = gvctl(host, "grant-role alice admin");
  ASSERT_EQ(granted.exit_code, 0) << granted.output << host.log();
  EXPECT_CONTAINS(granted.output, "account " + alice.account().id() + " (alice): roles admin, player");
  // A username that spells bob's id is not bob: an id is looked up as an id only with --id.
  CommandRun as_username = gvctl(host, "grant-role -- " + bob.account().id() + " moderator");
  EXPECT_EQ(as_username.exit_code, 1) << as_username.output;
  EXPECT_CONTAINS(as_username.output, "no account has the username '" + bob.account().id() + "'");
  CommandRun by_id =
      gvctl(host, "grant-role --id -- " + bob.account().id() + " moderator");  // ids may begin with '-'
  EXPECT_EQ(by_id.exit_code, 0) << by_id.output;
  EXPECT_CONTAINS(by_id.output, "(bob): roles moderator, player");
  CommandRun revoked = gvctl(host, "revoke-role bob moderator");
  EXPECT_EQ(revoked.exit_code, 0) << revoked.output;
  EXPECT_CONTAINS(revoked.output, "(bob): roles player");
  CommandRun nobody = gvctl(host, "grant-role nobody admin");
  EXPECT_EQ(nobody.exit_code, 1) << nobody.output;
  EXPECT_CONTAINS(nobody.output, "no account has the username 'nobody' (give an account id with --id)");
  CommandRun not_a_role = gvctl(host, "grant-role alice operator");
  EXPECT_EQ(not_a_role.exit_code, 1) << not_a_role.output;
  EXPECT_CONTAINS(not_a_role.output, "'operator' is not a role");

  // Alice's next access token carries admin: she grants roles now, but does not administer the host.
  grpc::ClientContext context;
  gameverse::auth::v1::RefreshRequest refresh;
  refresh.set_refresh_token(alice.refresh_token());
  gameverse::auth::v1::Session admin_alice;
  ASSERT_TRUE(auth->Refresh(&context, refresh, &admin_alice).ok());
  const grpc::Status alice_grants = grant_as(admin_alice.access_token(), bob.account().id());
  EXPECT_TRUE(alice_grants.ok()) << alice_grants.error_message();
  grpc::ClientContext admin_context;
  admin_context.AddMetadata("authorization", "Bearer " + admin_alice.access_token());
  gameverse::host::v1::ListPluginsResponse plugins;
  const grpc::Status admin_call =
      gameverse::host::v1::PluginAdmin::NewStub(host.channel())->ListPlugins(&admin_context, {}, &plugins);
  EXPECT_EQ(admin_call.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_CONTAINS(admin_call.error_message(), "game roles, admin included, do not administer the host");
}

// LoadPlugin loads files from inside [host] plugin_dir only, whichever way a path tries to leave.
TEST_F(AdminTest, LoadPluginIsConfinedToThePluginDirectory) {
  TempDir elsewhere;
  std::filesystem::copy_file(GV_PLUGIN_DIR "/hello-c.so", elsewhere.path() / "hello-c.so");
  const std::string root = std::filesystem::weakly_canonical(dir_.path()).string();
  auto refused = [&](const std::string& path) {
    CommandRun run = gvctl(*host_, "load hello-c --path '" + path + "'");
    EXPECT_EQ(run.exit_code, 1) << path << ": " << run.output;
    EXPECT_CONTAINS(run.output, ", outside the plugin directory " + root + " ([host] plugin_dir)");
    return run.output;
  };
  // An absolute path outside it.
  EXPECT_CONTAINS(
      refused((elsewhere.path() / "hello-c.so").string()),
      "resolves to " + std::filesystem::weakly_canonical(elsewhere.path() / "hello-c.so").string());
  // '..' out of it (gvctl sends paths absolute: the host resolves the dots).
  refused((dir_.path() / ".." / elsewhere.path().filename() / "hello-c.so").string());
  // A symlink inside it to a file outside.
  std::filesystem::create_symlink(elsewhere.path() / "hello-c.so", dir_.path() / "hello-c.so");
  refused((dir_.path() / "hello-c.so").string());
  // A link inside it to a directory outside, reached past a name that does not exist: tidying
  // "missing/.." away without following links would land inside, and the load would leave.
  std::filesystem::create_directory_symlink(elsewhere.path(), dir_.path() / "outside");
  refused((dir_.path() / "outside" / "hello-c.so").string());
  const CommandRun past_missing =
      gvctl(*host_, "load hello-c --path '" +
                        (dir_.path() / "missing" / ".." / "outside" / "hello-c.so").string() + "'");
  EXPECT_EQ(past_missing.exit_code, 1) << past_missing.output;
  EXPECT_CONTAINS(past_missing.output, "cannot be resolved");
  // A directory, not a file.
  std::filesystem::create_directories(dir_.path() / "plugins.d");
  EXPECT_CONTAINS(gvctl(*host_, "load hello-c --path " + (dir_.path() / "plugins.d").string()).output,
                  "which is not a file");
  // A directory that only starts with the same name.
  const auto sibling = std::filesystem::path(root + "-other");
  std::filesystem::create_directories(sibling);
  std::filesystem::copy_file(GV_PLUGIN_DIR "/hello-c.so", sibling / "hello-c.so");
  refused((sibling / "hello-c.so").string());
  std::filesystem::remove_all(sibling);
  EXPECT_EQ(gvctl(*host_, "status hello-c").exit_code, 1) << "a refused load left a plugin behind";

  // Inside, directly or through a symlink that stays inside, it loads.
  std::filesystem::remove(dir_.path() / "hello-c.so");
  std::filesystem::create_directories(dir_.path() / "v1");
  std::filesystem::copy_file(GV_PLUGIN_DIR "/hello-c.so", dir_.path() / "v1" / "hello-c.so");
  std::filesystem::create_symlink(dir_.path() / "v1" / "hello-c.so", dir_.path() / "hello-c.so");
  CommandRun loaded = gvctl(*host_, "load hello-c --path " + (dir_.path() / "hello-c.so").string());
  EXPECT_EQ(loaded.exit_code, 0) << loaded.output;
}

// The names the config refuses, LoadPlugin refuses: a name like "auth:lock" would share the
// cache keys of "auth".
TEST_F(AdminTest, LoadPluginRefusesWhatIsNotAPluginName) {
  std::filesystem::copy_file(GV_PLUGIN_DIR "/hello-c.so", dir_.path() / "hello-c.so");
  for (const std::string name : {"auth:lock", "Hello", "../hello-c", "x_y"}) {
    CommandRun run = gvctl(*host_, "load '" + name + "' --path " + (dir_.path() / "hello-c.so").string());
    EXPECT_EQ(run.exit_code, 1) << name << ": " << run.output;
    EXPECT_CONTAINS(run.output,
                    "name: '" + name + "' is not a plugin name (lower-case letters, digits and '-'");
  }
}

}  // namespace
}  // namespace gameverse::testing
