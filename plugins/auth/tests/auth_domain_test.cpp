// The auth rules on in-memory repositories and a clock the test moves.
#include <gtest/gtest.h>
#include <sodium.h>

#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "domain/auth_service.hpp"
#include "domain/client_address.hpp"
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
    settings.hasher.opslimit = 1;  // fast for tests; the cost does not change the rules
    settings.hasher.memlimit = 8 * 1024;
    service_ = std::make_unique<AuthService>(
        settings, accounts_, sessions_, keys_, counters_, [this] { return now_; }, &revocations_);
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
  MemoryRevocations revocations_;
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

// Five wrong passwords for a username from one address lock that pair: the right password from
// there is refused too, until the lock expires, while the owner elsewhere is not locked out.
TEST_F(AuthRules, FailedLoginsLockTheUsernameFromThatAddressForAWhile) {
  AuthService& auth = service();
  auth.register_account("ada", "correct horse");
  for (int i = 0; i < 5; ++i) failure(K::kUnauthenticated, [&] { auth.login("ada", "wrong", "10.0.0.9"); });
  EXPECT_EQ(failure(K::kLocked, [&] { auth.login("ada", "correct horse", "10.0.0.9"); }),
            "too many failed logins for this username from this address: try again in 900 s");
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "198.51.100.1")) << "the owner elsewhere was locked out";
  advance(minutes(10));
  EXPECT_EQ(failure(K::kLocked, [&] { auth.login("ada", "correct horse", "10.0.0.9"); }),
            "too many failed logins for this username from this address: try again in 300 s");
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
            "too many failed logins from this address: try again in 900 s");
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "198.51.100.1"));
}

// A lock says nothing about whether the name exists, and costs the same for both: neither hashes
// (with the only hash worker taken, an answer that hashed would be "busy").
TEST_F(AuthRules, LockedAnswersAreTheSameForExistingAndUnknownNames) {
  AuthSettings settings;
  settings.hasher.limiter = std::make_shared<HashLimiter>(1, 0);
  AuthService& auth = service(settings);
  auth.register_account("ada", "correct horse");
  std::map<std::string, std::vector<std::string>> answers;
  for (const std::string name : {"ada", "nobody"}) {
    for (int i = 0; i < 5; ++i) {
      answers[name].push_back(failure(K::kUnauthenticated, [&] { auth.login(name, "wrong", "10.0.0.9"); }));
    }
  }
  const HashLimiter::Slot taken = settings.hasher.limiter->acquire();
  for (const std::string name : {"ada", "nobody"}) {
    answers[name].push_back(failure(K::kLocked, [&] { auth.login(name, "correct horse", "10.0.0.9"); }));
    answers[name].push_back(failure(K::kBusy, [&] { auth.login(name, "correct horse", "10.0.0.10"); }));
  }
  EXPECT_EQ(answers["ada"], answers["nobody"]);
  EXPECT_EQ(answers["ada"][5],
            "too many failed logins for this username from this address: try again in 900 s");
}

// Many addresses guessing one username slow it down to one try per delay (doubling, capped), for
// everyone but the addresses its owner signed in from: the owner is never locked out.
TEST_F(AuthRules, GuessesFromManyAddressesSlowTheUsernameDownButNotForItsOwner) {
  AuthService& auth = service();
  auth.register_account("ada", "correct horse");
  auth.login("ada", "correct horse", "192.0.2.1");  // the owner's usual address
  for (int i = 0; i < 10; ++i) {
    failure(K::kUnauthenticated, [&] { auth.login("ada", "guess", "10.1.0." + std::to_string(i)); });
  }
  failure(K::kUnauthenticated,
          [&] { auth.login("ada", "guess", "10.2.0.1"); });  // this address's one try of these 2 s
  EXPECT_EQ(
      failure(K::kLocked, [&] { auth.login("ada", "guess", "10.2.0.1"); }),
      "too many failed logins for this username: one try from this address every 2 s; try again in 2 s");
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.login("nobody", "guess", "10.2.0.1"); }),
            "wrong username or password")
      << "other names are not slowed down";
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "192.0.2.1")) << "the owner's address was slowed down";
  advance(std::chrono::seconds(2));
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.login("ada", "guess", "10.2.0.1"); }),
            "wrong username or password")
      << "the delay passed";
}

// The slow-down's one try per delay belongs to each address: an attacker taking its try at once,
// every time, does not keep the owner out from an address the account has not signed in from.
TEST_F(AuthRules, AnAttackersTryDoesNotUseUpTheOwnersTryFromANewAddress) {
  AuthService& auth = service();
  auth.register_account("ada", "correct horse");
  for (int i = 0; i < 10; ++i) {
    failure(K::kUnauthenticated, [&] { auth.login("ada", "guess", "10.1.0." + std::to_string(i)); });
  }
  failure(K::kUnauthenticated, [&] { auth.login("ada", "guess", "10.2.0.1"); });
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "198.51.100.7"))
      << "a new address of the owner waited for the attacker's slot";
  failure(K::kUnauthenticated, [&] { auth.login("ada", "guess", "10.2.0.2"); });
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "198.51.100.8"));
}

TEST_F(AuthRules, RegistrationsAndDeviceSignInsAreLimitedPerAddress) {
  AuthSettings settings;
  settings.registrations_per_address_per_hour = 2;
  settings.device_sign_ins_per_address_per_minute = 3;
  settings.device_accounts_per_address_per_hour = 1;
  AuthService& auth = service(settings);
  auth.register_account("ada", "correct horse", "203.0.113.7");
  auth.register_account("bob", "correct horse", "203.0.113.7");
  advance(minutes(20));
  EXPECT_EQ(failure(K::kLocked, [&] { auth.register_account("cyd", "correct horse", "203.0.113.7"); }),
            "too many registrations from this address: at most 2 (registrations_per_address_per_hour); "
            "retry in 2400 s");
  EXPECT_NO_THROW(auth.register_account("cyd", "correct horse", "198.51.100.1"));

  const std::string phone = "phone-0123456789abcdefXY";
  auth.authenticate_device(phone, "203.0.113.7");
  EXPECT_EQ(
      failure(K::kLocked, [&] { auth.authenticate_device("tablet-0123456789abcdefX", "203.0.113.7"); }),
      "too many new device accounts from this address: at most 1 (device_accounts_per_address_per_hour); "
      "retry in 3600 s");
  auth.authenticate_device(phone, "203.0.113.7");  // a device that has an account still signs in
  EXPECT_EQ(failure(K::kLocked, [&] { auth.authenticate_device(phone, "203.0.113.7"); }),
            "too many device sign-ins from this address: at most 3 (device_sign_ins_per_address_per_minute); "
            "retry in 60 s");
  advance(minutes(1));
  EXPECT_NO_THROW(auth.authenticate_device(phone, "203.0.113.7"));
}

// The expensive hash comes last: a name that is taken, or an account that already has one, is
// answered without waiting for a hash worker (here all taken, and the call gives up after 50 ms).
TEST_F(AuthRules, RegisterAndLinkUsernameCheckTheNameBeforeHashing) {
  AuthSettings settings;
  settings.hasher.limiter = std::make_shared<HashLimiter>(1, 1);
  AuthService& auth = service(settings);
  auth.register_account("ada", "correct horse");
  const TokenClaims device =
      auth.authenticate(auth.authenticate_device("device-0123456789abcdefXY").access_token);
  const TokenClaims named = auth.authenticate(auth.register_account("bob", "correct horse").access_token);
  const HashLimiter::Slot taken = settings.hasher.limiter->acquire();
  const HashLimiter::CallScope scope(std::chrono::system_clock::now() + std::chrono::milliseconds(50),
                                     [] { return false; });
  EXPECT_EQ(failure(K::kAlreadyExists, [&] { auth.register_account("ada", "another password"); }),
            "the username 'ada' is taken");
  EXPECT_EQ(failure(K::kAlreadyExists, [&] { auth.link_username(device, "ada", "correct horse"); }),
            "the username 'ada' is taken");
  EXPECT_EQ(failure(K::kAlreadyExists, [&] { auth.link_username(named, "bobby", "correct horse"); }),
            "the account already has the username 'bob'");
  EXPECT_EQ(
      failure(K::kBusy, [&] { auth.register_account("cyd", "correct horse"); }),
      "auth is busy checking passwords; the call ended (deadline or cancellation) while it waited for a "
      "hash worker");
}

// "Taken" tells that a username exists: LinkUsername asks under the address's registration limit,
// shared with Register, so it is not an unmetered way to list usernames.
TEST_F(AuthRules, LinkUsernameCountsAsARegistrationOfTheAddress) {
  AuthSettings settings;
  settings.registrations_per_address_per_hour = 2;
  AuthService& auth = service(settings);
  auth.register_account("ada", "correct horse", "203.0.113.7");
  const TokenClaims device =
      auth.authenticate(auth.authenticate_device("device-0123456789abcdefXY").access_token);
  EXPECT_EQ(
      failure(K::kAlreadyExists, [&] { auth.link_username(device, "ada", "correct horse", "203.0.113.7"); }),
      "the username 'ada' is taken");
  EXPECT_EQ(failure(K::kLocked, [&] { auth.link_username(device, "ada", "correct horse", "203.0.113.7"); }),
            "too many registrations from this address: at most 2 (registrations_per_address_per_hour); "
            "retry in 3600 s");
  EXPECT_EQ(
      failure(K::kLocked, [&] { auth.link_username(device, "free-name", "correct horse", "203.0.113.7"); }),
      "too many registrations from this address: at most 2 (registrations_per_address_per_hour); "
      "retry in 3600 s");
  EXPECT_EQ(auth.link_username(device, "free-name", "correct horse", "198.51.100.1").username, "free-name");
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
  EXPECT_EQ(
      failure(K::kInvalidArgument, [&] { auth.authenticate_device("device-0123456789abcd"); }),
      "a device id is a random secret the client makes once, 22 to 128 characters (128 bits or more, e.g. "
      "16 random bytes as base64url); this one has 21");
  const std::string id = "device-0123456789abcdefXY";
  const IssuedSession first = auth.authenticate_device(id);
  const IssuedSession again = auth.authenticate_device(id);
  EXPECT_EQ(first.account.id, again.account.id) << "the same device made a second account";
  EXPECT_TRUE(first.account.username.empty());
  const TokenClaims me = auth.authenticate(first.access_token);
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { auth.unlink_device(me, id); }),
            "unlinking the last device would leave the account no way to sign in; link a username first");
  auth.register_account("bob", "correct horse");
  EXPECT_EQ(failure(K::kAlreadyExists, [&] { auth.link_username(me, "bob", "correct horse"); }),
            "the username 'bob' is taken");
  const Account linked = auth.link_username(me, "ada", "correct horse");
  EXPECT_EQ(linked.username, "ada");
  EXPECT_EQ(auth.login("ada", "correct horse", "10.0.0.1").account.id, first.account.id);
  EXPECT_TRUE(auth.unlink_device(me, id).device_ids.empty());
  EXPECT_NE(auth.authenticate_device(id).account.id, first.account.id);
}

// The store never holds a device id: accounts and the device index hold its key, and the key
// itself is no device id (it does not reach the account).
TEST_F(AuthRules, DeviceIdsAreStoredOnlyHashed) {
  AuthService& auth = service();
  const std::string id = "device-0123456789abcdefXY";
  const IssuedSession session = auth.authenticate_device(id);
  EXPECT_EQ(session.account.device_ids, std::set<std::string>{device_key(id)});
  EXPECT_FALSE(accounts_.by_device(id).has_value());
  EXPECT_EQ(accounts_.by_device(device_key(id))->id, session.account.id);
  EXPECT_NE(auth.authenticate_device(device_key(id)).account.id, session.account.id);
  EXPECT_EQ(device_fingerprint(device_key(id)), token_digest(id).substr(0, 12));
  EXPECT_EQ(failure(K::kNotFound,
                    [&] { auth.unlink_device(auth.authenticate(session.access_token), device_key(id)); }),
            "the device is not linked to this account");
}

// An account stored before devices were hashed holds the plain id: it signs in once by it (even
// when shorter than new ids may be), is rewritten to the key, and can be unlinked by the id.
TEST_F(AuthRules, APlainDeviceIdFromBeforeHashingSignsInAndIsRewritten) {
  AuthService& auth = service();
  Account old;
  old.id = "old-account";
  old.username = "ada";
  old.device_ids = {"legacy-dev-1", "legacy-dev-2"};
  accounts_.create(old);
  const IssuedSession session = auth.authenticate_device("legacy-dev-1");
  EXPECT_EQ(session.account.id, "old-account");
  EXPECT_EQ(accounts_.by_id("old-account")->device_ids,
            (std::set<std::string>{device_key("legacy-dev-1"), "legacy-dev-2"}));
  EXPECT_FALSE(accounts_.by_device("legacy-dev-1").has_value());
  EXPECT_EQ(auth.authenticate_device("legacy-dev-1").account.id, "old-account");
  EXPECT_EQ(auth.unlink_device(auth.authenticate(session.access_token), "legacy-dev-2").device_ids,
            std::set<std::string>{device_key("legacy-dev-1")});
}

TEST_F(AuthRules, PurgingDropsEndedSessionsAndTheirRefreshRecords) {
  AuthSettings settings;
  settings.refresh_ttl = std::chrono::hours(1);
  AuthService& auth = service(settings);
  const IssuedSession old = auth.register_account("ada", "correct horse");
  auth.refresh(old.refresh_token);  // a spent record and a live one
  advance(std::chrono::minutes(50));
  const IssuedSession recent = auth.login("ada", "correct horse", "10.0.0.1");
  advance(std::chrono::minutes(20));  // the first session has ended
  EXPECT_EQ(auth.purge_ended_sessions(), 3u);
  EXPECT_EQ(sessions_.refresh_records(), 1u);
  EXPECT_NO_THROW(auth.refresh(recent.refresh_token));
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
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(sign_token(same_kid, forged, {})); }),
            "token signature does not verify");
  EXPECT_EQ(failure(K::kUnauthenticated, [&] { auth.authenticate(sign_token(stranger, forged, {})); }),
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
  // Rotated at 60 min: its last token expires at 75 min, and is accepted until 75 min 30 s.
  advance(std::chrono::minutes(14));
  EXPECT_EQ(auth.verification_keys().size(), 2u) << "a token is accepted until exp + clock skew";
  advance(std::chrono::seconds(30));
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

// After a leak of a generated key the operator configures a key: the generated keys still stored
// are retired at once (not published, not verifying), and sessions go on by refreshing.
TEST_F(AuthRules, ConfiguringAKeyRetiresTheGeneratedKeysAtOnce) {
  const IssuedSession session = service().register_account("ada", "correct horse");
  const std::vector<VerifyKey> generated = service_->verification_keys();
  ASSERT_EQ(generated.size(), 1u);
  service_.reset();

  AuthSettings settings;
  settings.signing_key_seed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  AuthService& auth = service(settings);
  const std::vector<VerifyKey> published = auth.verification_keys();
  ASSERT_EQ(published.size(), 1u);
  EXPECT_EQ(published[0].kid.rfind("config-", 0), 0u) << published[0].kid;
  EXPECT_NE(
      failure(K::kUnauthenticated, [&] { auth.authenticate(session.access_token); }).find("unknown key"),
      std::string::npos)
      << "a token of the generated key still verifies";
  const IssuedSession refreshed = auth.refresh(session.refresh_token);
  EXPECT_NO_THROW(auth.authenticate(refreshed.access_token));
}

// A configured key lives in memory only: the store never holds it (nor one an older version put
// there), and without it key generation can be turned off.
TEST_F(AuthRules, AConfiguredKeyIsNeverStored) {
  // Stored, as older versions did.
  keys_.add(signing_key_from_seed("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", now_));
  AuthSettings settings;
  settings.signing_key_seed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  settings.generate_keys = false;
  AuthService& auth = service(settings);
  const IssuedSession session = auth.register_account("ada", "correct horse");
  EXPECT_NO_THROW(auth.authenticate(session.access_token));
  EXPECT_EQ(auth.verification_keys().size(), 1u);
  EXPECT_TRUE(keys_.all().empty());

  AuthSettings none;
  none.generate_keys = false;
  EXPECT_EQ(failure(K::kInvalidArgument, [&] { service(none); }),
            "key generation is off (generate_keys = false) and no signing_key is configured: set signing_key "
            "(openssl rand -base64 32)");
}

// Two hosts on one store: a key the other one rotated to is published here within a second, and
// one store read a second at most serves any number of calls.
TEST_F(AuthRules, AKeyAnotherHostMadeIsPublishedWithinASecond) {
  AuthService& here = service();
  ASSERT_EQ(here.verification_keys().size(), 1u);
  const SigningKey theirs = generate_signing_key(now_);
  keys_.add(theirs);  // the other host rotated
  EXPECT_EQ(here.verification_keys().size(), 1u) << "the store is read at most once a second";
  advance(std::chrono::milliseconds(AuthService::kKeyCacheMs));
  EXPECT_EQ(here.verification_keys().size(), 2u);

  // A token of a key not read yet makes authenticate read the store at once.
  const SigningKey newer = generate_signing_key(now_);
  keys_.add(newer);
  const TokenClaims claims{"someone", "s", {"player"}, now_, now_ + 60'000};
  EXPECT_EQ(here.authenticate(sign_token(newer, claims, {})).subject, "someone");
}

TEST_F(AuthRules, GrantingChecksTheCallersStoredRolesNotTheToken) {
  AuthService& auth = service();
  const IssuedSession root = auth.register_account("root", "correct horse");
  const IssuedSession ada = auth.register_account("ada", "correct horse");
  auth.set_role(TokenClaims{"operator", "", {kOperatorRole}, now_, now_ + 60'000}, root.account.id, "admin",
                true);
  const TokenClaims root_caller = auth.authenticate(root.access_token);
  const TokenClaims ada_caller = auth.authenticate(ada.access_token);
  auth.set_role(root_caller, ada.account.id, "admin", true);
  // Demoted by ada; root's token still says admin, and is not believed.
  revocations_.published.clear();
  advance(std::chrono::seconds(2));
  auth.set_role(TokenClaims{ada_caller.subject, ada_caller.session_id, {"player", "admin"}, 0, 0},
                root.account.id, "admin", false);
  ASSERT_EQ(revocations_.published.size(), 1u);
  EXPECT_EQ(revocations_.published[0].account_id, root.account.id);
  EXPECT_EQ(revocations_.published[0].issued_before_unix_ms, now_);
  EXPECT_EQ(revocations_.published[0].until_unix_ms, now_ + 15 * 60'000 + 30'000);
  EXPECT_EQ(
      failure(K::kPermissionDenied, [&] { auth.set_role(root_caller, root.account.id, "admin", true); }),
      "granting roles needs the admin role");
}

// A revocation lasts as long as the gate accepts the tokens it concerns: their lifetime plus the
// clock skew. One session ends with a revocation of that session; all of an account's sessions
// end with one revocation of the account, however many it had (the gate keeps one entry for it).
TEST_F(AuthRules, EndedSessionsAreAnnouncedForTheGate) {
  AuthService& auth = service();
  const IssuedSession first = auth.register_account("ada", "correct horse");
  const IssuedSession second = auth.login("ada", "correct horse", "10.0.0.1");
  for (int i = 0; i < 5; ++i) auth.login("ada", "correct horse", "10.0.0.1");
  const TokenClaims caller = auth.authenticate(first.access_token);
  const int64_t until = now_ + 15 * 60'000 + 30'000;
  auto ended = [&] {
    std::set<std::string> ids;
    for (const Revocation& r : revocations_.published) {
      EXPECT_TRUE(r.account_id.empty());
      EXPECT_EQ(r.until_unix_ms, until);
      ids.insert(r.session_id);
    }
    revocations_.published.clear();
    return ids;
  };
  auto account_revocation = [&] {
    EXPECT_EQ(revocations_.published.size(), 1u);
    const Revocation r = revocations_.published.empty() ? Revocation{} : revocations_.published[0];
    revocations_.published.clear();
    EXPECT_TRUE(r.session_id.empty());
    EXPECT_EQ(r.account_id, caller.subject);
    EXPECT_EQ(r.issued_before_unix_ms, now_);
    EXPECT_EQ(r.until_unix_ms, until);
    return r;
  };
  auth.logout(caller, false);
  EXPECT_EQ(ended(), std::set<std::string>{caller.session_id});
  const TokenClaims other = auth.authenticate(second.access_token);
  const IssuedSession changed = auth.change_password(other, "correct horse", "another horse");
  const Revocation cut = account_revocation();
  // The new session's token is of the same second as the cut: its "iat" says the next second, so
  // the gate does not take it for one from before (a verifier allows the skew for that second).
  EXPECT_GT(auth.authenticate(changed.access_token).issued_unix_ms, cut.issued_before_unix_ms);
  // A spent refresh token used again ends its session.
  const TokenClaims latest = auth.authenticate(changed.access_token);
  auth.refresh(changed.refresh_token);
  failure(K::kUnauthenticated, [&] { auth.refresh(changed.refresh_token); });
  EXPECT_EQ(ended(), std::set<std::string>{latest.session_id});
  for (int i = 0; i < 5; ++i) auth.login("ada", "another horse", "10.0.0.1");
  EXPECT_EQ(auth.logout(caller, true), 5u);
  account_revocation();
  advance(std::chrono::seconds(1));
  EXPECT_EQ(auth.authenticate(auth.login("ada", "another horse", "10.0.0.1").access_token).issued_unix_ms,
            now_)
      << "a token of a later second keeps its own iat";
}

// A hash of an older Argon2 cost would verify faster than the decoy of an unknown name: a
// successful sign-in redoes it at the current cost, and failing to store it fails nothing.
TEST_F(AuthRules, ASuccessfulLoginRehashesAPasswordOfAnotherCost) {
  service().register_account("ada", "correct horse");
  const std::string old_hash = accounts_.by_username("ada")->password_hash;
  ASSERT_NE(old_hash.find("$m=8,t=1,"), std::string::npos) << old_hash;
  service_.reset();
  AuthSettings raised;
  raised.hasher.opslimit = 2;
  raised.hasher.memlimit = 16 * 1024;
  AuthService auth(
      raised, accounts_, sessions_, keys_, counters_, [this] { return now_; }, &revocations_);

  failure(K::kUnauthenticated, [&] { auth.login("ada", "wrong horse!", "10.0.0.1"); });
  EXPECT_EQ(accounts_.by_username("ada")->password_hash, old_hash) << "a failed sign-in rehashed";
  accounts_.fail_updates = true;
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "10.0.0.1")) << "a failed rehash failed the sign-in";
  EXPECT_EQ(accounts_.by_username("ada")->password_hash, old_hash);
  accounts_.fail_updates = false;
  auth.login("ada", "correct horse", "10.0.0.1");
  const std::string new_hash = accounts_.by_username("ada")->password_hash;
  EXPECT_NE(new_hash.find("$m=16,t=2,"), std::string::npos) << new_hash;
  EXPECT_FALSE(raised.hasher.needs_rehash(new_hash));
  EXPECT_NO_THROW(auth.login("ada", "correct horse", "10.0.0.1"));
}

std::string address_of(std::string_view peer, std::vector<std::string_view> forwarded = {},
                       std::string_view trusted = "") {
  return client_address(peer, forwarded, parse_networks(trusted, "trusted_proxies"));
}

// IPv4 counts per address, IPv6 per /64 (the block one subscriber gets); an IPv4-mapped IPv6
// address is its IPv4 address.
TEST(ClientAddress, IsThePeerWithIpv6CountedPerSlash64) {
  EXPECT_EQ(address_of("ipv4:203.0.113.7:50123"), "203.0.113.7");
  EXPECT_EQ(address_of("ipv6:[2001:db8:1:2:aaaa::1]:443"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_of("ipv6:[2001:db8:1:2:ffff:1:2:3]:443"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_of("ipv6:[2001:db8:1:3::1]:443"), "2001:db8:1:3::/64");
  EXPECT_EQ(address_of("ipv6:[::ffff:198.51.100.4]:443"), "198.51.100.4");
  // As gRPC writes IPv6 peers: the brackets escaped. Counted per /64 all the same, not per port.
  EXPECT_EQ(address_of("ipv6:%5B2001:db8:1:2:aaaa::1%5D:443"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_of("ipv6:%5B2001:db8:1:2::9%5D:50000"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_of("ipv6:%5b::ffff:198.51.100.4%5d:443"), "198.51.100.4");
  EXPECT_EQ(address_of("unix:/run/gameverse.sock"), "unix:/run/gameverse.sock");
  EXPECT_EQ(address_of(""), "unknown");
}

// x-forwarded-for counts only from a trusted proxy, and then its rightmost entry that is not
// itself a trusted proxy: what the client wrote to the left of it is ignored.
TEST(ClientAddress, ComesFromXForwardedForOnlyThroughATrustedProxy) {
  EXPECT_EQ(address_of("ipv4:203.0.113.7:1", {"198.51.100.9"}), "203.0.113.7") << "no proxy is trusted";
  EXPECT_EQ(address_of("ipv4:203.0.113.7:1", {"198.51.100.9"}, "10.0.0.0/8"), "203.0.113.7");
  EXPECT_EQ(address_of("ipv4:10.0.0.5:1", {"198.51.100.9"}, "10.0.0.0/8"), "198.51.100.9");
  EXPECT_EQ(address_of("ipv4:10.0.0.5:1", {"1.1.1.1, 198.51.100.9, 10.0.0.7"}, "10.0.0.0/8"), "198.51.100.9");
  EXPECT_EQ(address_of("ipv4:10.0.0.5:1", {"1.1.1.1", "198.51.100.9:4711"}, "10.0.0.0/8"), "198.51.100.9");
  EXPECT_EQ(address_of("ipv4:10.0.0.5:1", {"2001:db8:5:6::1"}, "10.0.0.0/8"), "2001:db8:5:6::/64");
  EXPECT_EQ(address_of("ipv6:[fd00::1]:1", {"[2001:db8:5:6::1]:443"}, "fd00::/8"), "2001:db8:5:6::/64");
  EXPECT_EQ(address_of("ipv4:10.0.0.5:1", {"not-an-address"}, "10.0.0.0/8"), "10.0.0.5")
      << "an entry that is no address counts as the proxy that sent it";
  EXPECT_EQ(address_of("ipv4:127.0.0.1:1", {"198.51.100.9"}, "127.0.0.1"), "198.51.100.9");
}

TEST(ClientAddress, ATrustedProxyListThatIsNotAddressesIsAnError) {
  for (const auto& [list, message] : std::vector<std::pair<std::string, std::string>>{
           {"10.0.0.0/33", "trusted_proxies: '10.0.0.0/33' has a prefix length outside 0 to 32"},
           {"fd00::/129", "trusted_proxies: 'fd00::/129' has a prefix length outside 0 to 128"},
           {"10.0.0.0/x", "trusted_proxies: '10.0.0.0/x' has a prefix length outside 0 to 32"},
           {"10.0.0.1, proxy.internal",
            "trusted_proxies: 'proxy.internal' is not an IPv4 or IPv6 address or network (e.g. 10.0.0.0/8, "
            "fd00::/8)"}}) {
    try {
      parse_networks(list, "trusted_proxies");
      ADD_FAILURE() << list << " was accepted";
    } catch (const AuthError& e) {
      EXPECT_EQ(e.kind(), AuthError::Kind::kInvalidArgument);
      EXPECT_EQ(e.what(), message);
    }
  }
  EXPECT_EQ(parse_networks(" 10.0.0.0/8 , ::1 ,", "trusted_proxies").size(), 2u);
}

// workers at once, queue waiting, the rest refused at once; a waiter takes the next free worker.
TEST(HashLimiter, BoundsHashingAndWaiting) {
  HashLimiter limiter(1, 1);
  std::optional<HashLimiter::Slot> first(limiter.acquire());
  std::atomic<bool> second_got_one = false;
  std::thread waiter([&] {
    const HashLimiter::Slot second = limiter.acquire();
    second_got_one = true;
  });
  // The waiter is queued once a third caller is refused.
  while (true) {
    try {
      limiter.check_not_full();
      std::this_thread::yield();
    } catch (const AuthError& e) {
      EXPECT_EQ(e.kind(), AuthError::Kind::kBusy);
      EXPECT_EQ(std::string(e.what()),
                "auth is busy checking passwords (hash_workers and hash_queue are taken); retry in 1 s");
      break;
    }
  }
  EXPECT_THROW(limiter.acquire(), AuthError);
  EXPECT_FALSE(second_got_one);
  first.reset();
  waiter.join();
  EXPECT_TRUE(second_got_one);
  EXPECT_NO_THROW(limiter.check_not_full());
}

TEST(HashLimiter, AWaiterGivesUpWhenItsCallIsCancelled) {
  HashLimiter limiter(1, 1);
  const HashLimiter::Slot taken = limiter.acquire();
  std::atomic<bool> cancelled = false;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    cancelled = true;
  });
  const HashLimiter::CallScope scope(std::chrono::system_clock::time_point::max(),
                                     [&] { return cancelled.load(); });
  EXPECT_THROW(limiter.acquire(), AuthError);
  canceller.join();
  EXPECT_NO_THROW(limiter.check_not_full()) << "the waiter that gave up was still counted as waiting";
}

}  // namespace
}  // namespace gameverse::auth::testing
