// The auth plugin in the real host, through a real gRPC client, on SQLite and on PostgreSQL (the
// server `tools/gv test` starts), with the cache in process.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "host_process.hpp"
#include "platform/store.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::auth::v1;

// The host's [admin] token: its bearer, the operator, sets roles.
constexpr const char* kOperatorToken = "auth-test-operator-token-0123";

class AuthThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`";
      postgres_url_ = url;
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + postgres_url_ + "\"\n";
    }
    suffix_ = std::to_string(std::random_device()() % 1'000'000);
    plugin_ = data_.path() / "auth.so";  // a copy of its own, so a test can rebuild it in place
    std::filesystem::copy_file(GV_PLUGIN_DIR "/auth.so", plugin_);
    start();
  }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
  }
  void start() {
    host_ = std::make_unique<HostProcess>(
        "[host]\nwatch = false\ndata_dir = \"" + data_.path().string() + "\"\n" + store_ +
        "[admin]\ntoken = \"" + kOperatorToken + "\"\n[[plugin]]\nname = \"auth\"\npath = \"" +
        plugin_.string() +
        "\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
        "max_failed_logins_per_account = 3\nlockout_s = 2\n" +
        (signing_key_.empty() ? "" : "signing_key = \"" + signing_key_ + "\"\n"));
    auth_ = pb::Auth::NewStub(host_->channel());
  }
  std::string name(const std::string& base) const { return base + suffix_; }
  // The store the host uses, opened directly: for writing what the plugin would never write.
  std::unique_ptr<platform::StoreBackend> open_store() const {
    if (GetParam() == "postgresql") return platform::open_postgres_store(postgres_url_, 1);
    return platform::open_sqlite_store((data_.path() / "gameverse.db").string());
  }

  grpc::Status login(const std::string& user, const std::string& password, pb::Session* out) {
    grpc::ClientContext context;
    pb::LoginRequest request;
    request.set_username(user);
    request.set_password(password);
    return auth_->Login(&context, request, out);
  }
  grpc::Status register_account(const std::string& user, const std::string& password, pb::Session* out) {
    grpc::ClientContext context;
    pb::RegisterRequest request;
    request.set_username(user);
    request.set_password(password);
    return auth_->Register(&context, request, out);
  }
  grpc::Status refresh(const std::string& token, pb::Session* out) {
    grpc::ClientContext context;
    pb::RefreshRequest request;
    request.set_refresh_token(token);
    return auth_->Refresh(&context, request, out);
  }
  grpc::Status account(const std::string& access_token, pb::Account* out) {
    grpc::ClientContext context;
    if (!access_token.empty()) context.AddMetadata("authorization", "Bearer " + access_token);
    return auth_->GetAccount(&context, pb::GetAccountRequest(), out);
  }

  TempDir data_;
  std::filesystem::path plugin_;
  std::string signing_key_;  // [plugin.config] signing_key, when set
  std::string store_;
  std::string postgres_url_;
  std::string suffix_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::Auth::Stub> auth_;
};

TEST_P(AuthThroughTheHost, RegisterLoginRefreshAndReuseDetection) {
  pb::Session registered;
  ASSERT_TRUE(register_account(name("ada"), "correct horse", &registered).ok());
  EXPECT_EQ(registered.account().username(), name("ada"));
  EXPECT_EQ(registered.account().roles(0), "player");
  pb::Session again;
  const grpc::Status taken = register_account(name("ada"), "correct horse", &again);
  EXPECT_EQ(taken.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(taken.error_message(), "the username '" + name("ada") + "' is taken");
  const grpc::Status weak = register_account(name("bob"), "short", &again);
  EXPECT_EQ(weak.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(weak.error_message(), "a password has at least 10 characters");

  pb::Session session;
  ASSERT_TRUE(login(name("ada"), "correct horse", &session).ok());
  pb::Account me;
  ASSERT_TRUE(account(session.access_token(), &me).ok());
  EXPECT_EQ(me.id(), registered.account().id());
  const grpc::Status anonymous = account("", &me);
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(anonymous.error_message(),
            "method /gameverse.auth.v1.Auth/GetAccount needs a signed-in caller: send "
            "the metadata authorization: Bearer <access token>");

  pb::Session rotated;
  ASSERT_TRUE(refresh(session.refresh_token(), &rotated).ok());
  EXPECT_NE(rotated.refresh_token(), session.refresh_token());
  pb::Session replay;
  const grpc::Status reused = refresh(session.refresh_token(), &replay);
  EXPECT_EQ(reused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_CONTAINS(reused.error_message(), "already used: the session is revoked");
  EXPECT_EQ(refresh(rotated.refresh_token(), &replay).error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << "the session survived the reuse of one of its tokens";
}

TEST_P(AuthThroughTheHost, WrongPasswordsLockTheAccountAndTheLockExpires) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("eve"), "correct horse", &session).ok());
  for (int i = 0; i < 3; ++i) {
    const grpc::Status wrong = login(name("eve"), "wrong horse!", &session);
    EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(wrong.error_message(), "wrong username or password");
  }
  const grpc::Status locked = login(name("eve"), "correct horse", &session);
  EXPECT_EQ(locked.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_CONTAINS(locked.error_message(), "too many failed logins: the account is locked for another ");
  EXPECT_TRUE(eventually([&] { return login(name("eve"), "correct horse", &session).ok(); },
                         std::chrono::seconds(10)))
      << "the lock did not expire";
}

TEST_P(AuthThroughTheHost, DevicesLinkAndAdminsGrantRoles) {
  pb::Session device;
  {
    grpc::ClientContext context;
    pb::DeviceRequest request;
    request.set_device_id("device-" + suffix_);
    ASSERT_TRUE(auth_->AuthenticateDevice(&context, request, &device).ok());
  }
  EXPECT_TRUE(device.account().username().empty());
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + device.access_token());
    pb::LinkUsernameRequest request;
    request.set_username(name("dev"));
    request.set_password("correct horse");
    pb::Account linked;
    ASSERT_TRUE(auth_->LinkUsername(&context, request, &linked).ok());
    EXPECT_EQ(linked.username(), name("dev"));
  }
  pb::Session player;
  ASSERT_TRUE(register_account(name("root"), "correct horse", &player).ok());
  EXPECT_EQ(player.account().roles_size(), 1) << "registering gave more than the player role";
  {
    grpc::ClientContext context;  // the operator names the account by its username
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    pb::RoleRequest request;
    request.set_username(name("root"));
    request.set_role("admin");
    pb::Account changed;
    const grpc::Status granted = auth_->GrantRole(&context, request, &changed);
    ASSERT_TRUE(granted.ok()) << granted.error_message();
    EXPECT_EQ(changed.id(), player.account().id());
  }
  pb::Session root;
  ASSERT_TRUE(refresh(player.refresh_token(), &root).ok());
  EXPECT_EQ(root.account().roles_size(), 2) << "the granted admin role is not in the next token";
  for (const auto& [token, expected] : {std::pair{device.access_token(), grpc::StatusCode::PERMISSION_DENIED},
                                        std::pair{root.access_token(), grpc::StatusCode::OK}}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    pb::RoleRequest request;
    request.set_account_id(device.account().id());
    request.set_role("moderator");
    pb::Account changed;
    EXPECT_EQ(auth_->GrantRole(&context, request, &changed).error_code(), expected);
  }
  pb::Session relogin;
  ASSERT_TRUE(login(name("dev"), "correct horse", &relogin).ok());
  EXPECT_EQ(relogin.account().id(), device.account().id());
  EXPECT_EQ(relogin.account().roles_size(), 2);
}

// The first admin is made by the operator (gvctl grant-role): a config that still lists
// bootstrap_admins refuses the plugin, naming the key and its line.
TEST(AuthConfig, BootstrapAdminsIsRefused) {
  TempDir data;
  HostProcess host("[host]\nwatch = false\ndata_dir = \"" + data.path().string() +
                   "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
                   "/auth.so\"\n[plugin.config]\nbootstrap_admins = \"root\"\n");
  EXPECT_CONTAINS(
      host.log(),
      "gameverse.toml:8:1: plugin[0].config.bootstrap_admins: unknown key; plugin 'auth' declares:");
}

// Sessions and signing keys live in the host's store: a restarted host verifies the tokens and
// refreshes the sessions it issued before.
TEST_P(AuthThroughTheHost, SessionsSurviveARestartOfTheHost) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("sam"), "correct horse", &session).ok());
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  start();
  pb::Account me;
  const grpc::Status verified = account(session.access_token(), &me);
  ASSERT_TRUE(verified.ok()) << verified.error_message();
  EXPECT_EQ(me.username(), name("sam"));
  pb::Session rotated;
  EXPECT_TRUE(refresh(session.refresh_token(), &rotated).ok());
  pb::VerificationKeys keys;
  grpc::ClientContext context;
  ASSERT_TRUE(auth_->GetVerificationKeys(&context, pb::GetVerificationKeysRequest(), &keys).ok());
  ASSERT_GE(keys.keys_size(), 1);
  EXPECT_EQ(keys.keys(0).algorithm(), "EdDSA");
  EXPECT_EQ(keys.keys(0).public_key().size(), 32u);
}

// After a leak the operator configures another key and restarts: the gate refuses tokens of the
// old key at once, only the new key is published, and the session goes on by refreshing.
TEST_P(AuthThroughTheHost, AReplacedConfiguredKeyIsRefusedAtTheGate) {
  auto configured_kids = [&] {
    pb::VerificationKeys keys;
    grpc::ClientContext context;
    EXPECT_TRUE(auth_->GetVerificationKeys(&context, pb::GetVerificationKeysRequest(), &keys).ok());
    std::vector<std::string> kids;
    for (const auto& key : keys.keys()) {
      if (key.kid().rfind("config-", 0) == 0) kids.push_back(key.kid());
    }
    return kids;
  };
  signing_key_ = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  start();
  pb::Session session;
  ASSERT_TRUE(register_account(name("lee"), "correct horse", &session).ok());
  pb::Account me;
  ASSERT_TRUE(account(session.access_token(), &me).ok());
  const std::vector<std::string> leaked = configured_kids();
  ASSERT_EQ(leaked.size(), 1u);

  signing_key_ = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  start();
  const grpc::Status refused = account(session.access_token(), &me);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << refused.error_message();
  const std::vector<std::string> now_published = configured_kids();
  ASSERT_EQ(now_published.size(), 1u);  // the new configured key only
  EXPECT_NE(now_published[0], leaked[0]);
  pb::Session refreshed;
  ASSERT_TRUE(refresh(session.refresh_token(), &refreshed).ok());
  EXPECT_TRUE(account(refreshed.access_token(), &me).ok());
}

// A reload of the auth plugin itself: tokens issued by the old generation verify in the new one.
TEST_P(AuthThroughTheHost, TokensVerifyAcrossAReloadOfThePlugin) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("rex"), "correct horse", &session).ok());
  std::ofstream(plugin_, std::ios::app | std::ios::binary) << '\n';  // a new build of the same code
  host_->signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return host_->log().find("plugin 'auth' generation 2") != std::string::npos;
  })) << host_->log();
  pb::Account me;
  const grpc::Status verified = account(session.access_token(), &me);
  EXPECT_TRUE(verified.ok()) << verified.error_message();
  pb::Session rotated;
  EXPECT_TRUE(refresh(session.refresh_token(), &rotated).ok());
}

// The plugin's records are proto2 with required fields: a stored account that lacks one is
// DATA_LOSS naming the collection and key, never an account read with defaults.
TEST_P(AuthThroughTheHost, AStoredAccountMissingARequiredFieldIsDataLoss) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("cor"), "correct horse", &session).ok());
  const std::string id = session.account().id();
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  // An AccountRecord with its username (field 1) only: created_unix_ms (field 5) is required.
  const std::string username = name("cor");
  platform::StoreWrite partial;
  partial.collection = "accounts";
  partial.key = id;
  partial.value = "\x0a" + std::string(1, static_cast<char>(username.size())) + username;
  partial.owner = id;
  open_store()->write("auth", {partial});
  start();

  const std::string expected =
      "collection 'accounts' key '" + id +
      "' holds a gameverse.auth.records.v1.AccountRecord without its required fields";
  pb::Account me;
  const grpc::Status by_token = account(session.access_token(), &me);
  EXPECT_EQ(by_token.error_code(), grpc::StatusCode::DATA_LOSS) << by_token.error_message();
  EXPECT_EQ(by_token.error_message(), expected);
  // Signing in reaches the same account through the username's index record.
  const grpc::Status by_name = login(name("cor"), "correct horse", &session);
  EXPECT_EQ(by_name.error_code(), grpc::StatusCode::DATA_LOSS) << by_name.error_message();
  EXPECT_EQ(by_name.error_message(), expected);
  pb::Session other;
  EXPECT_TRUE(register_account(name("dan"), "correct horse", &other).ok()) << "the host stopped serving";
}

INSTANTIATE_TEST_SUITE_P(Backends, AuthThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
