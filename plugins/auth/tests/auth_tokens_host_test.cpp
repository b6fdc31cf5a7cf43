// Access tokens and signing keys through the real host and a real gRPC client, on SQLite files the
// test reads directly: revocation reaching the gate within seconds, the issuer and audience that
// separate deployments, keys that hosts on one store share, and signing secrets at rest.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "eventually.hpp"
#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "host_process.hpp"
#include "platform/store.hpp"
#include "sign_up.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::auth::v1;

constexpr const char* kSeed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31
// Revocations travel by the host's pub/sub: on one host they take milliseconds; the tests allow
// this much, which only a broken revocation exceeds.
constexpr std::chrono::seconds kRevocationBound(5);
// The host's [admin] token: its bearer, the operator, makes the first admin.
constexpr const char* kOperatorToken = "auth-tokens-test-operator-token";

// One auth deployment: a host with the auth plugin over the SQLite file in `data_dir`.
class AuthHost {
 public:
  AuthHost(const std::filesystem::path& data_dir, const std::string& plugin_config)
      : host_("[host]\nwatch = false\ndata_dir = \"" + data_dir.string() + "\"\n[admin]\ntoken = \"" +
              kOperatorToken +
              "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
              "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n" +
              plugin_config),
        auth_(pb::Auth::NewStub(host_.channel())) {}

  pb::Session sign_up(const std::string& user) {
    const pb::Session session = gameverse::testing::sign_up(*auth_, user);
    EXPECT_FALSE(session.access_token().empty()) << host_.log();
    return session;
  }
  pb::Session login(const std::string& user, const std::string& password = kSignUpPassword) {
    grpc::ClientContext context;
    pb::LoginRequest request;
    request.set_username(user);
    request.set_password(password);
    pb::Session session;
    const grpc::Status status = auth_->Login(&context, request, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return session;
  }
  grpc::Status account(const std::string& access_token, pb::Account* out = nullptr) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + access_token);
    pb::Account ignored;
    return auth_->GetAccount(&context, pb::GetAccountRequest(), out != nullptr ? out : &ignored);
  }
  grpc::Status refresh(const std::string& refresh_token, pb::Session* out) {
    grpc::ClientContext context;
    pb::RefreshRequest request;
    request.set_refresh_token(refresh_token);
    return auth_->Refresh(&context, request, out);
  }
  grpc::Status set_role(const std::string& access_token, const std::string& account_id,
                        const std::string& role, bool grant) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + access_token);
    pb::RoleRequest request;
    request.set_account_id(account_id);
    request.set_role(role);
    pb::Account reply;
    return grant ? auth_->GrantRole(&context, request, &reply) : auth_->RevokeRole(&context, request, &reply);
  }
  pb::VerificationKeys keys() {
    grpc::ClientContext context;
    pb::VerificationKeys keys;
    EXPECT_TRUE(auth_->GetVerificationKeys(&context, pb::GetVerificationKeysRequest(), &keys).ok());
    return keys;
  }
  pb::Auth::Stub& stub() { return *auth_; }
  HostProcess& process() { return host_; }

  // True once `access_token` is refused at the gate with a message containing `reason`.
  bool refuses(const std::string& access_token, const std::string& reason) {
    return eventually(
        [&] {
          const grpc::Status status = account(access_token);
          return status.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
                 status.error_message().find(reason) != std::string::npos;
        },
        kRevocationBound);
  }

 private:
  HostProcess host_;
  std::unique_ptr<pb::Auth::Stub> auth_;
};

// The signing keys the store holds for the auth plugin, read from the SQLite file directly.
std::vector<platform::StoredObject> stored_keys(const std::filesystem::path& data_dir) {
  auto store = platform::open_sqlite_store((data_dir / "gameverse.db").string());
  platform::StoreQuery query;
  query.collection = "keys";
  query.limit = 1000;
  return store->list("auth", query).objects;
}

size_t occurrences(const std::string& haystack, const std::string& needle) {
  size_t count = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1))
    ++count;
  return count;
}

class Revocation : public ::testing::Test {
 protected:
  TempDir data_;
  AuthHost host_{data_.path(), ""};
};

TEST_F(Revocation, LogoutEndsTheSessionsAccessTokenAtTheGate) {
  const pb::Session ada = host_.sign_up("ada");
  ASSERT_TRUE(host_.account(ada.access_token()).ok());  // verified, and remembered by the gate
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + ada.access_token());
  pb::LogoutReply reply;
  ASSERT_TRUE(host_.stub().Logout(&context, pb::LogoutRequest(), &reply).ok());
  EXPECT_TRUE(host_.refuses(ada.access_token(), "the session was ended; sign in again"));
  EXPECT_TRUE(host_.account(host_.login("ada").access_token()).ok()) << "a new session is not affected";
}

TEST_F(Revocation, ChangingThePasswordEndsEveryOtherSession) {
  const pb::Session phone = host_.sign_up("ada");
  const pb::Session laptop = host_.login("ada");
  ASSERT_TRUE(host_.account(phone.access_token()).ok());
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + laptop.access_token());
  pb::ChangePasswordRequest request;
  request.set_current_password(kSignUpPassword);
  request.set_new_password("another horse");
  pb::Session changed;
  ASSERT_TRUE(host_.stub().ChangePassword(&context, request, &changed).ok());
  // One revocation of the account's tokens issued until the change.
  EXPECT_TRUE(host_.refuses(phone.access_token(), "the access token was refused"));
  EXPECT_TRUE(host_.refuses(laptop.access_token(), "the access token was refused"));
  // Issued in the same second as the revocation, but after it: accepted.
  const grpc::Status status = host_.account(changed.access_token());
  EXPECT_TRUE(status.ok()) << status.error_message();
}

// Logout everywhere ends every session's tokens at the gate with one revocation of the account; a
// sign-in right after (likely in the same second) gets a token the gate accepts.
TEST_F(Revocation, LogoutEverywhereEndsEverySessionsTokensAtTheGate) {
  const pb::Session phone = host_.sign_up("ada");
  std::vector<pb::Session> others;
  for (int i = 0; i < 3; ++i) others.push_back(host_.login("ada"));
  for (const pb::Session& s : others) ASSERT_TRUE(host_.account(s.access_token()).ok());
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + phone.access_token());
  pb::LogoutRequest request;
  request.set_everywhere(true);
  pb::LogoutReply reply;
  ASSERT_TRUE(host_.stub().Logout(&context, request, &reply).ok());
  EXPECT_EQ(reply.sessions_ended(), 4u);
  const pb::Session again = host_.login("ada");
  EXPECT_TRUE(host_.refuses(phone.access_token(), "the access token was refused"));
  for (const pb::Session& s : others)
    EXPECT_TRUE(host_.refuses(s.access_token(), "the access token was refused"));
  const grpc::Status status = host_.account(again.access_token());
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(Revocation, AReusedRefreshTokenEndsItsSessionsAccessTokens) {
  const pb::Session ada = host_.sign_up("ada");
  pb::Session rotated;
  ASSERT_TRUE(host_.refresh(ada.refresh_token(), &rotated).ok());
  ASSERT_TRUE(host_.account(rotated.access_token()).ok());
  pb::Session stolen;
  ASSERT_EQ(host_.refresh(ada.refresh_token(), &stolen).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(host_.refuses(rotated.access_token(), "the session was ended; sign in again"));
  EXPECT_TRUE(host_.refuses(ada.access_token(), "the session was ended; sign in again"));
}

// A demoted admin's token still says "admin" until it expires: it is refused at the gate, and the
// auth plugin checks the stored roles besides.
TEST_F(Revocation, ADemotedAdminsOldTokenCannotGrantRoles) {
  const pb::Session player_root = host_.sign_up("root");
  const pb::Session ada = host_.sign_up("ada");
  ASSERT_TRUE(host_.set_role(kOperatorToken, player_root.account().id(), "admin", true).ok());
  pb::Session root;
  ASSERT_TRUE(host_.refresh(player_root.refresh_token(), &root).ok());
  ASSERT_TRUE(host_.set_role(root.access_token(), ada.account().id(), "admin", true).ok());
  pb::Session ada_admin;
  ASSERT_TRUE(host_.refresh(ada.refresh_token(), &ada_admin).ok());
  ASSERT_TRUE(host_.set_role(ada_admin.access_token(), root.account().id(), "admin", false).ok());
  EXPECT_TRUE(eventually(
      [&] {
        const grpc::Status granted = host_.set_role(root.access_token(), root.account().id(), "admin", true);
        return granted.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
               granted.error_message() ==
                   "the access token was refused: the account's tokens were revoked (its roles or password "
                   "changed, or it signed out everywhere); refresh or sign in again";
      },
      kRevocationBound));
  // A token issued after the change (from the next second: "iat" counts whole seconds) carries
  // the stored roles: no admin, no grant.
  pb::Session again;
  ASSERT_TRUE(eventually([&] {
    again = host_.login("root");
    return host_.account(again.access_token()).ok();
  }));
  EXPECT_EQ(host_.set_role(again.access_token(), root.account().id(), "admin", true).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// Two hosts on one store and one Redis: a logout through one host ends the session's token at the
// other host's gate, which had verified and remembered it.
TEST(AcrossHosts, ALogoutThroughOneHostIsSeenByTheOthersGate) {
  const char* redis = std::getenv("GAMEVERSE_TEST_REDIS_URL");
  ASSERT_NE(redis, nullptr) << "GAMEVERSE_TEST_REDIS_URL is not set: run the suite with `tools/gv test`";
  const std::string shared = std::string("[redis]\nurl = \"") + redis + "\"\n[pubsub]\nbackend = \"redis\"\n";
  TempDir data;
  AuthHost a(data.path(), shared);
  AuthHost b(data.path(), shared);
  const pb::Session ada = a.sign_up("ada");
  ASSERT_TRUE(b.account(ada.access_token()).ok());
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + ada.access_token());
  pb::LogoutReply reply;
  ASSERT_TRUE(a.stub().Logout(&context, pb::LogoutRequest(), &reply).ok());
  EXPECT_TRUE(b.refuses(ada.access_token(), "the session was ended; sign in again"));
}

// Two deployments that share a signing key but not the issuer refuse each other's tokens.
TEST(Issuer, ADeploymentSharingTheSigningKeyRefusesAnothersTokens) {
  TempDir a_data, b_data;
  AuthHost a(a_data.path(), std::string("signing_key = \"") + kSeed + "\"\nissuer = \"studio-a\"\n");
  AuthHost b(b_data.path(), std::string("signing_key = \"") + kSeed + "\"\nissuer = \"studio-b\"\n");
  ASSERT_EQ(a.keys().keys(0).kid(), b.keys().keys(0).kid());
  EXPECT_EQ(a.keys().issuer(), "studio-a");
  const pb::Session theirs = b.sign_up("ada");
  ASSERT_TRUE(b.account(theirs.access_token()).ok());
  const grpc::Status refused = a.account(theirs.access_token());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      refused.error_message(),
      "the access token was refused: token issuer (iss) is not 'studio-a': issued by another deployment");
}

// Hosts A and B on one store: when A moves to a new key, B's gate accepts A's new tokens without
// a restart.
TEST(SharedStore, AKeyOneHostRotatedToIsAcceptedByTheOther) {
  TempDir data;
  AuthHost a(data.path(), "");
  AuthHost b(data.path(), "");
  const std::string old_kid = a.keys().keys(0).kid();
  ASSERT_EQ(b.keys().keys(0).kid(), old_kid);
  ASSERT_TRUE(b.account(a.sign_up("ada").access_token()).ok());
  // The key is retired (taken out of the store): A reads the store again within a second and makes
  // a new one, which B has never seen.
  platform::StoreWrite retire;
  retire.kind = platform::StoreWrite::Kind::kDelete;
  retire.collection = "keys";
  retire.key = old_kid;
  platform::open_sqlite_store((data.path() / "gameverse.db").string())->write("auth", {retire});
  pb::Session fresh;
  ASSERT_TRUE(eventually([&] {
    fresh = a.login("ada");
    return a.keys().keys_size() == 1 && a.keys().keys(0).kid() != old_kid;
  }));
  ASSERT_TRUE(eventually([&] { return b.account(fresh.access_token()).ok(); }))
      << b.account(fresh.access_token()).error_message();
}

// A configured signing key lives in memory: the store holds no secret, and a key stored by an
// older version is removed.
TEST(KeysAtRest, AConfiguredKeyIsNeverWrittenToTheStore) {
  TempDir data;
  {
    AuthHost generated(data.path(), "");
    ASSERT_EQ(stored_keys(data.path()).size(), 1u);
  }
  AuthHost configured(data.path(), std::string("signing_key = \"") + kSeed + "\"\ngenerate_keys = false\n");
  configured.sign_up("ada");
  // The generated key stays published (its tokens may be live) but the configured one is not stored.
  for (const platform::StoredObject& key : stored_keys(data.path())) {
    EXPECT_NE(key.key.rfind("config-", 0), 0u) << key.key;
  }
  ASSERT_EQ(configured.process().stop(), 0);
  std::string seed;
  for (int i = 0; i < 32; ++i) seed += static_cast<char>(i);
  for (const char* file : {"gameverse.db", "gameverse.db-wal"}) {
    const std::string bytes = read_file(data.path() / file);
    EXPECT_EQ(bytes.find(seed), std::string::npos) << "the configured seed is in " << file;
  }

  TempDir empty;
  AuthHost without_key(empty.path(), "generate_keys = false\n");
  EXPECT_CONTAINS(without_key.process().log(),
                  "key generation is off (generate_keys = false) and no signing_key is configured");
}

class KeysAtRestWithAKek : public ::testing::Test {
 protected:
  std::string kek_config(const std::string& kek_base64) {
    const auto file = kek_dir_.path() / ("kek-" + std::to_string(++keks_));
    std::ofstream(file) << kek_base64 << "\n";
    return "key_encryption_key_file = \"" + file.string() + "\"\n";
  }
  // The secret of Ed25519 in libsodium's form ends with the public key: a plain-text secret shows
  // the public key twice in its record, a sealed one once (its own field).
  size_t public_key_copies() {
    const auto keys = stored_keys(data_.path());
    EXPECT_EQ(keys.size(), 1u);
    return keys.empty() ? 0 : occurrences(keys[0].value, public_key_);
  }

  TempDir data_, kek_dir_;
  int keks_ = 0;
  std::string public_key_;
};

TEST_F(KeysAtRestWithAKek, GeneratedKeysAreSealedAndTokensVerifyAfterARestart) {
  const std::string kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";  // 32 bytes
  pb::Session ada;
  std::string kid;
  {
    AuthHost plain(data_.path(), "");  // before a KEK was configured: plain text
    ada = plain.sign_up("ada");
    kid = plain.keys().keys(0).kid();
    public_key_ = plain.keys().keys(0).public_key();
    EXPECT_EQ(public_key_copies(), 2u);
  }
  {
    AuthHost sealed(data_.path(), kek_config(kek));  // re-seals what it reads
    EXPECT_TRUE(sealed.account(ada.access_token()).ok());
    EXPECT_EQ(public_key_copies(), 1u) << "the secret is still in plain text";
  }
  AuthHost restarted(data_.path(), kek_config(kek));
  EXPECT_TRUE(restarted.account(ada.access_token()).ok());
  EXPECT_TRUE(restarted.account(restarted.login("ada").access_token()).ok());
  restarted.process().stop();

  // Another KEK: the auth plugin is refused with the kid named; the host goes on serving.
  AuthHost wrong(data_.path(), kek_config("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="));
  EXPECT_CONTAINS(wrong.process().log(),
                  "the stored signing key '" + kid +
                      "' does not decrypt with the configured key encryption key (key_encryption_key_file "
                      "or GAMEVERSE_AUTH_KEK)");
  grpc::ClientContext context;
  pb::VerificationKeys keys;
  const grpc::Status status =
      wrong.stub().GetVerificationKeys(&context, pb::GetVerificationKeysRequest(), &keys);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << status.error_message();
}

}  // namespace
}  // namespace gameverse::testing
