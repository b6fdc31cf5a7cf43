// The host's gate with the real auth plugin as the token issuer and echo as the service: access
// policies (declared by the plugin, overridden by config), the principal reaching the plugin,
// roles, and every kind of bad token, through a real gRPC client.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <gameverse/tokens.hpp>

#include <nlohmann/json.hpp>

#include <random>

#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "host_process.hpp"
#include "sign_up.hpp"

namespace gameverse::testing {
namespace {

namespace auth = gameverse::auth::v1;
namespace tokens = gameverse::tokens;
namespace echo = gameverse::echo::v1;

using tokens::base64url;

// The auth plugin's signing key, so that a test can forge a token the gate trusts.
constexpr const char* kSigningSeed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31

// The host's [admin] token: its bearer is the operator.
constexpr const char* kOperatorToken = "operator-token-0123456789abcdef";

class Gate : public ::testing::Test {
 protected:
  void SetUp() override {
    host_ = std::make_unique<HostProcess>(
        "[host]\nwatch = false\ndata_dir = \"" + data_.path().string() + "\"\n[admin]\ntoken = \"" +
        kOperatorToken +
        "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
        "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
        "access_token_ttl_s = 4\nclock_skew_s = 0\nsigning_key = \"" +
        kSigningSeed +
        "\"\n"
        "[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
        "/echo.so\"\n[plugin.access]\n\"/gameverse.echo.v1.Echo/WhoAmI\" = \"authenticated\"\n"
        "\"/gameverse.echo.v1.Echo/Stats\" = \"role:moderator\"\n");
    auth_ = auth::Auth::NewStub(host_->channel());
    echo_ = echo::Echo::NewStub(host_->channel());
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "host log:\n" << host_->log();
  }
  grpc::Status who_am_i(const std::string& token, echo::WhoAmIReply* reply) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    return echo_->WhoAmI(&context, echo::WhoAmIRequest(), reply);
  }
  grpc::Status stats(const std::string& token) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    echo::StatsReply reply;
    return echo_->Stats(&context, echo::StatsRequest(), &reply);
  }

  TempDir data_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<auth::Auth::Stub> auth_;
  std::unique_ptr<echo::Echo::Stub> echo_;
};

TEST_F(Gate, PublicMethodsAreOpenAndTheOthersNeedAToken) {
  grpc::ClientContext context;
  echo::EchoRequest request;
  request.set_payload("anyone");
  echo::EchoReply reply;
  EXPECT_TRUE(echo_->Echo(&context, request, &reply).ok()) << "a public method refused an anonymous caller";

  echo::WhoAmIReply me;
  const grpc::Status anonymous = who_am_i("", &me);
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      anonymous.error_message(),
      "method /gameverse.echo.v1.Echo/WhoAmI needs a signed-in caller: send the metadata authorization: "
      "Bearer <access token>");

  const auth::Session ada = sign_up(*auth_, "ada");
  const grpc::Status signed_in = who_am_i(ada.access_token(), &me);
  ASSERT_TRUE(signed_in.ok()) << signed_in.error_message();
  EXPECT_EQ(me.user_id(), ada.account().id()) << "the principal did not reach the plugin";
  EXPECT_FALSE(me.session_id().empty());
  ASSERT_EQ(me.roles_size(), 1);
  EXPECT_EQ(me.roles(0), "player");
}

TEST_F(Gate, RolesAreCheckedAndGrantedRolesCountAfterTheNextSignIn) {
  const auth::Session ada = sign_up(*auth_, "ada");
  const grpc::Status player = stats(ada.access_token());
  EXPECT_EQ(player.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(player.error_message(),
            "method /gameverse.echo.v1.Echo/Stats needs the role 'moderator'; the caller has: player");
  EXPECT_EQ(stats("").error_code(), grpc::StatusCode::UNAUTHENTICATED);

  const auth::Session root = sign_up(*auth_, "root", "admin", kOperatorToken);
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + root.access_token());
    auth::RoleRequest request;
    request.set_account_id(ada.account().id());
    request.set_role("moderator");
    auth::Account changed;
    const grpc::Status granted = auth_->GrantRole(&context, request, &changed);
    ASSERT_TRUE(granted.ok()) << granted.error_message();
  }
  {
    grpc::ClientContext context;  // GrantRole is role:admin at the gate
    context.AddMetadata("authorization", "Bearer " + ada.access_token());
    auth::RoleRequest request;
    request.set_account_id(ada.account().id());
    request.set_role("admin");
    auth::Account changed;
    EXPECT_EQ(auth_->GrantRole(&context, request, &changed).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  grpc::ClientContext context;
  auth::RefreshRequest request;
  request.set_refresh_token(ada.refresh_token());
  auth::Session refreshed;
  ASSERT_TRUE(auth_->Refresh(&context, request, &refreshed).ok());
  const grpc::Status moderator = stats(refreshed.access_token());
  EXPECT_TRUE(moderator.ok()) << moderator.error_message();
}

TEST_F(Gate, BadTokensAreRefusedWithTheirReason) {
  const auth::Session ada = sign_up(*auth_, "ada");
  const std::string token = ada.access_token();
  const size_t dot1 = token.find('.'), dot2 = token.rfind('.');
  const std::string payload = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string claims;
  ASSERT_TRUE(tokens::from_base64(payload, sodium_base64_VARIANT_URLSAFE_NO_PADDING, claims));
  const std::string as_admin = claims.substr(0, claims.find("\"player\"")) + "\"admin\"" +
                               claims.substr(claims.find("\"player\"") + 8);
  const std::map<std::string, std::string> cases = {
      {"not-a-jwt", "malformed token: a JWT has three dot-separated parts"},
      {base64url(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".",
       "token algorithm 'none' is not accepted"},
      {token.substr(0, dot1) + "." + base64url(as_admin) + token.substr(dot2),
       "token signature does not verify"},
      {base64url(R"({"alg":"EdDSA","kid":"forged"})") + "." + payload + token.substr(dot2),
       "token signed with an unknown key 'forged'"},
  };
  echo::WhoAmIReply me;
  for (const auto& [bad, reason] : cases) {
    // An unknown key is fetched in the background first; meanwhile the call gets UNAVAILABLE.
    grpc::Status refused;
    ASSERT_TRUE(eventually([&] {
      refused = who_am_i(bad, &me);
      return refused.error_code() != grpc::StatusCode::UNAVAILABLE;
    }));
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << bad;
    EXPECT_CONTAINS(refused.error_message(), "the access token was refused: " + reason);
  }
  // On a public method a bad token does not refuse the call: the caller is anonymous.
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer not-a-jwt");
  echo::EchoRequest request;
  echo::EchoReply reply;
  EXPECT_TRUE(echo_->Echo(&context, request, &reply).ok());
  // Access tokens live 4 s here (3 to 4: JWTs count whole seconds).
  std::this_thread::sleep_for(std::chrono::milliseconds(4100));
  const grpc::Status expired = who_am_i(token, &me);
  EXPECT_EQ(expired.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(expired.error_message(), "the access token was refused: token expired");
}

// The [admin] token makes its bearer the operator, whom every policy lets through; a token that
// only differs is an access token like any other, and refused as one.
TEST_F(Gate, TheAdminTokenMakesTheOperator) {
  echo::WhoAmIReply me;
  const grpc::Status status = who_am_i(kOperatorToken, &me);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(me.user_id(), "operator");
  EXPECT_EQ(me.session_id(), "");
  ASSERT_EQ(me.roles_size(), 1);
  EXPECT_EQ(me.roles(0), "operator");
  EXPECT_TRUE(stats(kOperatorToken).ok()) << "role:moderator refused the operator";
  std::string almost = kOperatorToken;
  almost.back() ^= 1;
  const grpc::Status refused = stats(almost);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_CONTAINS(refused.error_message(), "the access token was refused: malformed token");
}

// "operator" is reserved: a validly signed access token that claims it (as an account id and as
// a role) gets neither the role nor the operator's way in, at the gate or at the admin service.
TEST_F(Gate, AnAccessTokenClaimingTheOperatorRoleIsNotTheOperator) {
  const auth::Session ada = sign_up(*auth_, "ada");
  const std::string token = ada.access_token();
  std::string header;
  ASSERT_TRUE(tokens::from_base64(token.substr(0, token.find('.')), sodium_base64_VARIANT_URLSAFE_NO_PADDING,
                                  header));
  const std::string kid = nlohmann::json::parse(header).at("kid").get<std::string>();
  std::string seed;
  ASSERT_TRUE(tokens::from_base64(kSigningSeed, sodium_base64_VARIANT_ORIGINAL, seed));
  std::string public_key(crypto_sign_PUBLICKEYBYTES, '\0');
  std::string secret_key(crypto_sign_SECRETKEYBYTES, '\0');
  crypto_sign_seed_keypair(reinterpret_cast<unsigned char*>(public_key.data()),
                           reinterpret_cast<unsigned char*>(secret_key.data()),
                           reinterpret_cast<const unsigned char*>(seed.data()));
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const std::string forged =
      tokens::sign(kid, secret_key, {"operator", "s", {"operator", "moderator"}, now, now + 60'000});

  echo::WhoAmIReply me;
  const grpc::Status status = who_am_i(forged, &me);
  ASSERT_TRUE(status.ok()) << "the forged token does not verify, so it proves nothing: "
                           << status.error_message();
  ASSERT_EQ(me.roles_size(), 1);
  EXPECT_EQ(me.roles(0), "moderator") << "the gate kept the reserved role from the token";
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + forged);
  auth::RoleRequest request;
  request.set_account_id(ada.account().id());
  request.set_role("admin");
  auth::Account changed;
  EXPECT_EQ(auth_->GrantRole(&context, request, &changed).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stats(forged).error_code(), grpc::StatusCode::OK);  // its moderator role still counts
  grpc::ClientContext admin_context;
  admin_context.AddMetadata("authorization", "Bearer " + forged);
  gameverse::host::v1::ListPluginsResponse plugins;
  const grpc::Status admin =
      gameverse::host::v1::PluginAdmin::NewStub(host_->channel())->ListPlugins(&admin_context, {}, &plugins);
  EXPECT_EQ(admin.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << "the forged operator administers the host";
}

// Without a plugin that publishes keys, nothing but public methods can be reached, and the
// refusal says why.
TEST(GateWithoutAuth, SaysThatNoPluginPublishesKeys) {
  HostProcess host("[host]\nwatch = false\n[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
                   "/echo.so\"\n[plugin.access]\n\"/gameverse.echo.v1.Echo/WhoAmI\" = \"authenticated\"\n");
  auto stub = echo::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + base64url(R"({"alg":"EdDSA","kid":"k"})") + ".e30.c2ln");
  echo::WhoAmIReply reply;
  const grpc::Status refused = stub->WhoAmI(&context, echo::WhoAmIRequest(), &reply);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(refused.error_message(),
            "the access token was refused: the host cannot verify access tokens: no plugin serves "
            "/gameverse.auth.v1.Auth/GetVerificationKeys");
}

TEST(GateConfig, AnOverrideForAMethodThePluginDoesNotServeRefusesThePlugin) {
  HostProcess host("[host]\nwatch = false\n[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
                   "/echo.so\"\n[plugin.access]\n\"/gameverse.echo.v1.Echo/Shout\" = \"public\"\n");
  EXPECT_CONTAINS(host.log(), "names /gameverse.echo.v1.Echo/Shout, which this plugin does not serve");
}

}  // namespace
}  // namespace gameverse::testing
