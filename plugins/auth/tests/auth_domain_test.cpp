// The auth rules on in-memory repositories and a clock the test moves.
#include <gtest/gtest.h>
#include <sodium.h>

#include <nlohmann/json.hpp>

#include "domain/auth_service.hpp"
#include "in_memory_repositories.hpp"

namespace gameverse::auth::testing {
namespace {

using std::chrono::minutes;
using K = AuthError::Kind;

using tokens::base64url;

std::string decoded(const std::string& part) {
  std::string raw;
  EXPECT_TRUE(tokens::from_base64(part, sodium_base64_VARIANT_URLSAFE_NO_PADDING, raw)) << part;
  return raw;
}

class AuthRules : public ::testing::Test {
 protected:
  AuthRules() : counters_(now_) {}
  AuthService& service(AuthSettings settings = {}) {
    settings.hasher = {1, 8 * 1024};  // fast for tests; the cost does not change the rules
    service_ = std::make_unique<AuthService>(settings, accounts_, sessions_, keys_, counters_,
                                             [this] { return now_; });
    return *service_;
  }
  // Expects `f` to throw AuthError of `kind` and returns its message.
  template <class F>
  std::string failure(K kind, F&& f) {
    try {
      f();
    } catch (const AuthError& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "no AuthError";
    return "";
  }

  void advance(std::chrono::milliseconds by) { now_ += by.count(); }

  int64_t now_ = 1'800'000'000'000;
  MemoryAccounts accounts_;
  MemorySessions sessions_;
  MemoryKeys keys_;
  MemoryCounters counters_;
  std::unique_ptr<AuthService> service_;
};

TEST_F(AuthRules, RegisterChecksNamesAndPasswordsAndNeverStoresThePassword) {
  AuthService& auth = service();
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.register_account("ab", "long enough pass"); }),
            "a username has 3 to 32 characters; this one has 2");
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.register_account("Ada", "long enough pass"); }),
            "a username starts with a letter a-z");
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.register_account("ada lovelace", "long enough pass"); }),
            "a username has only a-z, 0-9, '_', '.' and '-'; ' ' is not allowed");
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.register_account("ada", "short"); }),
            "a password has at least 10 characters");
  const IssuedSession session = auth.register_account("ada", "correct horse");
  EXPECT_EQ(failure(K::kAlreadyExists, [&] { auth.register_account("ada", "another password"); }),
            "the username 'ada' is taken");
  const Account stored = *accounts_.by_username("ada");
  EXPECT_EQ(stored.password_hash.rfind("$argon2id$", 0), 0u) << stored.password_hash;
  EXPECT_EQ(stored.password_hash.find("correct horse"), std::string::npos);
  EXPECT_EQ(stored.roles, std::set<std::string>{"player"});
  EXPECT_EQ(auth.authenticate(session.access_token).subject, stored.id);
  // No name makes an admin: the first admin is the operator's doing.
  EXPECT_EQ(auth.register_account("root", "correct horse").account.roles, std::set<std::string>{"player"});
}

TEST_F(AuthRules, LoginSaysNothingAboutWhichPartWasWrong) {
  AuthService& auth = service();
  auth.register_account("ada", "correct horse");
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.login("ada", "wrong horse!", "10.0.0.1"); }),
            "wrong username or password");
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.login("nobody", "wrong horse!", "10.0.0.1"); }),
            "wrong username or password");
  EXPECT_EQ(auth.login("ada", "correct horse", "10.0.0.1").account.username, "ada");
}

TEST_F(AuthRules, FailedLoginsLockTheAccountForAWhileAndTheLockExpires) {
  AuthService& auth = service();
  auth.register_account("ada", "correct horse");
  for (int i = 0; i < 5; ++i)
    failure(K::kUnauthenticated, [&] { auth.login("ada", "wrong", "10.0.0." + std::to_string(i)); });
  // Locked: even the right password is refused, and the message says for how long.
  EXPECT_EQ(failure(K::kLocked, [&] { auth.login("ada", "correct horse", "10.0.0.9"); }),
            "too many failed logins: the account is locked for another 900 s");
  advance(minutes(10));
  EXPECT_EQ(failure(K::kLocked, [&] { auth.login("ada", "correct horse", "10.0.0.9"); }),
            "too many failed logins: the account is locked for another 300 s");
  advance(minutes(5));
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "10.0.0.9"));
}

TEST_F(AuthRules, FailedLoginsFromOneAddressLockThatAddress) {
  AuthService& auth = service();
  auth.register_account("ada", "correct horse");
  for (int i = 0; i < 20; ++i) {
    failure(K::kUnauthenticated, [&] { auth.login("user" + std::to_string(i), "guess", "203.0.113.7"); });
  }
  EXPECT_EQ(failure(K::kLocked, [&] { auth.login("ada", "correct horse", "203.0.113.7"); }),
            "too many failed logins: this address is locked for another 900 s");
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "198.51.100.1"));
}

TEST_F(AuthRules, RefreshRotatesAndAReusedTokenRevokesTheWholeSession) {
  AuthService& auth = service();
  const IssuedSession first = auth.register_account("ada", "correct horse");
  const IssuedSession second = auth.refresh(first.refresh_token);
  EXPECT_NE(second.refresh_token, first.refresh_token);
  const IssuedSession third = auth.refresh(second.refresh_token);
  EXPECT_EQ(auth.authenticate(third.access_token).session_id,
            auth.authenticate(first.access_token).session_id);
  // A thief replays the first token: the whole family dies, the legitimate one's too.
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.refresh(first.refresh_token); }),
            "this refresh token was already used: the session is revoked; sign in again");
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.refresh(third.refresh_token); }),
            "the session was ended; sign in again");
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.refresh("made-up"); }),
            "unknown refresh token; sign in again");
}

TEST_F(AuthRules, SessionsEndWithLogoutAndWhenTheyExpire) {
  AuthSettings settings;
  settings.refresh_ttl = std::chrono::hours(1);
  AuthService& auth = service(settings);
  const IssuedSession phone = auth.register_account("ada", "correct horse");
  const IssuedSession laptop = auth.login("ada", "correct horse", "10.0.0.1");
  const IssuedSession tablet = auth.login("ada", "correct horse", "10.0.0.1");
  EXPECT_EQ(auth.logout(auth.authenticate(phone.access_token), false), 1u);
  failure(K::kUnauthenticated, [&] { auth.refresh(phone.refresh_token); });
  EXPECT_NO_THROW(auth.refresh(laptop.refresh_token));
  EXPECT_EQ(auth.logout(auth.authenticate(tablet.access_token), true), 2u);
  failure(K::kUnauthenticated, [&] { auth.refresh(tablet.refresh_token); });
  const IssuedSession later = auth.login("ada", "correct horse", "10.0.0.1");
  advance(std::chrono::hours(2));
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.refresh(later.refresh_token); }),
            "the session expired; sign in again");
}

TEST_F(AuthRules, ChangingThePasswordEndsEverySessionButTheNewOne) {
  AuthService& auth = service();
  const IssuedSession first = auth.register_account("ada", "correct horse");
  const IssuedSession other = auth.login("ada", "correct horse", "10.0.0.1");
  const TokenClaims me = auth.authenticate(first.access_token);
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.change_password(me, "wrong", "battery staple"); }),
            "the current password is wrong");
  const IssuedSession fresh = auth.change_password(me, "correct horse", "battery staple");
  failure(K::kUnauthenticated, [&] { auth.refresh(other.refresh_token); });
  EXPECT_NO_THROW(auth.refresh(fresh.refresh_token));
  failure(K::kUnauthenticated, [&] { auth.login("ada", "correct horse", "10.0.0.1"); });
  EXPECT_NO_THROW(auth.login("ada", "battery staple", "10.0.0.1"));
}

TEST_F(AuthRules, DevicesSignInAndLinkToAUsername) {
  AuthService& auth = service();
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.authenticate_device("short"); }),
            "a device id has 8 to 128 characters; this one has 5");
  const IssuedSession first = auth.authenticate_device("device-0001");
  const IssuedSession again = auth.authenticate_device("device-0001");
  EXPECT_EQ(first.account.id, again.account.id) << "the same device made a second account";
  EXPECT_TRUE(first.account.username.empty());
  const TokenClaims me = auth.authenticate(first.access_token);
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.unlink_device(me, "device-0001"); }),
            "unlinking the last device would leave the account no way to sign in; link a username first");
  auth.register_account("bob", "correct horse");
  EXPECT_EQ(failure(K::kAlreadyExists, [&] { auth.link_username(me, "bob", "correct horse"); }),
            "the username 'bob' is taken");
  const Account linked = auth.link_username(me, "ada", "correct horse");
  EXPECT_EQ(linked.username, "ada");
  EXPECT_EQ(auth.login("ada", "correct horse", "10.0.0.1").account.id, first.account.id);
  EXPECT_TRUE(auth.unlink_device(me, "device-0001").device_ids.empty());
  EXPECT_NE(auth.authenticate_device("device-0001").account.id, first.account.id);
}

TEST_F(AuthRules, OnlyAdminsAndTheOperatorGrantAndRevokeRoles) {
  AuthService& auth = service();
  auth.register_account("root", "correct horse");
  const IssuedSession ada = auth.register_account("ada", "correct horse");
  // The host's operator (the gate's principal for the [admin] token) makes the first admin.
  const TokenClaims host_operator{"operator", "", {kOperatorRole}, now_, now_ + 60'000};
  EXPECT_EQ(failure(K::kNotFound, [&] { auth.account_id_of("nobody"); }),
            "no account with the username 'nobody'");
  EXPECT_TRUE(auth.set_role(host_operator, auth.account_id_of("root"), "admin", true).roles.count("admin"));
  const TokenClaims admin = auth.authenticate(auth.login("root", "correct horse", "10.0.0.1").access_token);
  const TokenClaims player = auth.authenticate(ada.access_token);
  EXPECT_EQ(failure(K::kPermissionDenied, [&] { auth.set_role(player, player.subject, "admin", true); }),
            "granting roles needs the admin role");
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.set_role(admin, player.subject, "god", true); }),
            "'god' is not a role (player, moderator or admin)");
  EXPECT_TRUE(auth.set_role(admin, player.subject, "moderator", true).roles.count("moderator"));
  const IssuedSession promoted = auth.login("ada", "correct horse", "10.0.0.1");
  const auto roles = auth.authenticate(promoted.access_token).roles;
  EXPECT_NE(std::find(roles.begin(), roles.end(), "moderator"), roles.end())
      << "new tokens carry the new role";
  EXPECT_FALSE(auth.set_role(admin, player.subject, "moderator", false).roles.count("moderator"));
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.set_role(admin, admin.subject, "admin", false); }),
            "an admin cannot revoke their own admin role");
}

TEST_F(AuthRules, BadTokensAreRefusedWithTheirReason) {
  AuthService& auth = service();
  const IssuedSession session = auth.register_account("ada", "correct horse");
  const std::string token = session.access_token;
  const size_t dot1 = token.find('.'), dot2 = token.rfind('.');
  const std::string header = token.substr(0, dot1), payload = token.substr(dot1 + 1, dot2 - dot1 - 1);

  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate("not-a-token"); }),
            "malformed token: a JWT has three dot-separated parts");
  // alg: none, with the signature stripped.
  const std::string none = base64url(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(none); }),
            "token algorithm 'none' is not accepted; tokens are EdDSA");
  const std::string hs256 =
      base64url(R"({"alg":"HS256","typ":"JWT"})") + "." + payload + "." + token.substr(dot2 + 1);
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(hs256); }),
            "token algorithm 'HS256' is not accepted; tokens are EdDSA");
  // A payload changed to claim the admin role: the signature no longer matches.
  nlohmann::json claims = nlohmann::json::parse(decoded(payload));
  claims["roles"] = {"player", "admin"};
  const std::string tampered = header + "." + base64url(claims.dump()) + "." + token.substr(dot2 + 1);
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(tampered); }),
            "token signature does not verify");
  // Signed by a key the service never made.
  const SigningKey stranger = generate_signing_key(now_);
  TokenClaims forged{"someone", "s", {"admin"}, now_, now_ + 60'000};
  SigningKey same_kid = stranger;
  same_kid.kid = nlohmann::json::parse(decoded(header))["kid"];
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(sign_token(same_kid, forged)); }),
            "token signature does not verify");
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(sign_token(stranger, forged)); }),
            "token signed with an unknown key '" + stranger.kid + "'");
  advance(minutes(16));
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(token); }), "token expired");
}

TEST_F(AuthRules, KeysRotateAndOldKeysVerifyUntilTheirTokensExpire) {
  AuthSettings settings;
  settings.key_rotation = std::chrono::hours(1);
  AuthService& auth = service(settings);
  const IssuedSession before = auth.register_account("ada", "correct horse");
  advance(std::chrono::minutes(61));  // the key is due for rotation
  const IssuedSession after = auth.login("ada", "correct horse", "10.0.0.1");
  EXPECT_EQ(keys_.all().size(), 2u);
  auto kid = [](const std::string& token) {
    return token.substr(0, token.find('.'));  // the header carries the kid
  };
  EXPECT_NE(kid(before.access_token), kid(after.access_token));
  EXPECT_EQ(auth.verification_keys().size(), 2u) << "the old key must still verify";
  advance(std::chrono::minutes(15));  // every token of the old key has expired
  EXPECT_EQ(auth.verification_keys().size(), 1u);
}

TEST_F(AuthRules, AConfiguredKeyIsUsedAndSurvivesARestart) {
  AuthSettings settings;
  settings.signing_key_seed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // 32 bytes
  const IssuedSession session = service(settings).register_account("ada", "correct horse");
  service_.reset();
  // A new service on the same storage: the same key, so the token still verifies.
  EXPECT_NO_THROW(service(settings).authenticate(session.access_token));
  AuthSettings bad;
  bad.signing_key_seed = "c2hvcnQ=";
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { service(bad).authenticate(session.access_token); }),
            "the signing key is 5 bytes; an Ed25519 seed is 32 (openssl rand -base64 32)");
}

// After a leak the operator configures another key: the old one neither signs nor verifies any
// more, at once, and is no longer published to the gate; sessions go on by refreshing.
TEST_F(AuthRules, AReplacedConfiguredKeyIsRetiredAtOnce) {
  AuthSettings leaked;
  leaked.signing_key_seed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  const IssuedSession session = service(leaked).register_account("ada", "correct horse");
  ASSERT_EQ(service_->verification_keys().size(), 1u);
  const std::string leaked_kid = service_->verification_keys()[0].kid;
  service_.reset();

  AuthSettings replaced;
  replaced.signing_key_seed = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
  AuthService& auth = service(replaced);
  const auto published = auth.verification_keys();
  ASSERT_EQ(published.size(), 1u);
  EXPECT_NE(published[0].kid, leaked_kid);
  failure(K::kUnauthenticated, [&] { auth.authenticate(session.access_token); });
  // The refresh token is not signed: the session goes on with a token of the new key.
  const IssuedSession refreshed = auth.refresh(session.refresh_token);
  EXPECT_NO_THROW(auth.authenticate(refreshed.access_token));

  // Leaving the config empty again retires the configured key too: generated keys take over.
  service_.reset();
  AuthService& generated = service();
  for (const auto& key : generated.verification_keys()) EXPECT_NE(key.kid.rfind("config-", 0), 0u) << key.kid;
  failure(K::kUnauthenticated, [&] { generated.authenticate(refreshed.access_token); });
}

}  // namespace
}  // namespace gameverse::auth::testing
