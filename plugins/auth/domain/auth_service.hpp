// The auth rules: registration, password and device sign-in, refresh rotation with reuse
// detection, logout, password change, roles, lockout, and the signing keys with rotation.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>

#include "domain/crypto.hpp"
#include "domain/repositories.hpp"

namespace gameverse::auth {

struct AuthSettings {
  std::chrono::milliseconds access_ttl{std::chrono::minutes(15)};
  std::chrono::milliseconds refresh_ttl{std::chrono::hours(24 * 30)};
  std::chrono::milliseconds key_rotation{std::chrono::hours(24 * 7)};  // a new signing key this often
  // Argon2id: 3 passes over 64 MiB (libsodium's "moderate"); the API bounds it with a HashLimiter.
  PasswordHasher hasher{3, 64u << 20, nullptr};
  // Wrong passwords (README: "Signing in: limits and lockout"). Failures are counted per username
  // and client address, per client address, and per username from anywhere; unknown usernames
  // are counted like existing ones.
  int64_t max_failures_per_account = 5;   // per username from one client address: that pair is locked
  int64_t max_failures_per_address = 20;  // per client address, any username: the address is locked
  std::chrono::milliseconds failure_window{std::chrono::minutes(15)};
  std::chrono::milliseconds lockout{std::chrono::minutes(15)};
  // Per username from anywhere: past this many failures in the window, a client address where the
  // account has not signed in lately gets its own one try per delay, from 1 s doubling per failure up to
  // slow_down_max; addresses the account signed in from within known_address_ttl are not slowed.
  int64_t slow_down_after_failures = 10;
  std::chrono::milliseconds slow_down_max{std::chrono::minutes(1)};
  std::chrono::milliseconds known_address_ttl{std::chrono::hours(24 * 30)};
  // Per client address.
  int64_t registrations_per_address_per_hour = 20;
  int64_t device_sign_ins_per_address_per_minute = 60;
  int64_t device_accounts_per_address_per_hour = 20;
  std::string signing_key_seed;   // base64 Ed25519 seed, kept in memory only; empty: generated keys
  bool generate_keys = true;      // false: a configured signing key is required
  tokens::Validation validation;  // "iss", "aud" and the clock skew of the tokens
};

struct IssuedSession {
  std::string access_token;
  int64_t access_expires_unix_ms = 0;
  std::string refresh_token;
  int64_t refresh_expires_unix_ms = 0;
  Account account;
};

class AuthService {
 public:
  using Clock = std::function<int64_t()>;  // unix ms
  // kInvalidArgument when the settings cannot sign: a bad signing key, or none with generation off.
  // `revocations`: where ended sessions and changed roles are announced; null: nowhere.
  AuthService(AuthSettings settings, Accounts& accounts, Sessions& sessions, SigningKeys& keys,
              Counters& counters, Clock now, Revocations* revocations = nullptr);

  // `address`: the client's (client_address.hpp), for the limits per client address.
  IssuedSession register_account(const std::string& username, const std::string& password,
                                 const std::string& address = "");
  IssuedSession login(const std::string& username, const std::string& password, const std::string& address);
  IssuedSession authenticate_device(const std::string& device_id, const std::string& address = "");
  IssuedSession refresh(const std::string& refresh_token);
  // The caller, from an access token: kUnauthenticated when it does not verify.
  TokenClaims authenticate(std::string_view access_token);
  size_t logout(const TokenClaims& caller, bool everywhere);
  Account account(const TokenClaims& caller);
  // Counts as a registration of `address` (registrations_per_address_per_hour), like Register.
  Account link_username(const TokenClaims& caller, const std::string& username, const std::string& password,
                        const std::string& address = "");
  Account unlink_device(const TokenClaims& caller, const std::string& device_id);
  IssuedSession change_password(const TokenClaims& caller, const std::string& current,
                                const std::string& next);
  // The id of the account with `username`; kNotFound when there is none.
  std::string account_id_of(const std::string& username);
  // Admins set roles, and the host's operator (the [admin] token), who makes the first admin.
  Account set_role(const TokenClaims& caller, const std::string& account_id, const std::string& role,
                   bool grant);
  // The configured key and the stored generated keys whose tokens may not have expired. Re-read
  // from the store at most every kKeyCacheMs, so that a key another host made is published here
  // soon, and anonymous callers cannot turn each call into a store read.
  std::vector<VerifyKey> verification_keys();
  const tokens::Validation& validation() const { return settings_.validation; }
  // Deletes sessions whose refresh chain has ended and the refresh records nobody can use any
  // more; returns how many records went.
  size_t purge_ended_sessions();
  // When tokens signed by a key have all expired: it may be dropped from the verification set then.
  int64_t key_not_after(const SigningKey& key) const;
  static constexpr int64_t kKeyCacheMs = 1000;

 private:
  IssuedSession issue(const Account& account);
  IssuedSession issue_in(const Account& account, const Session& session, const RefreshRecord* spent);
  SigningKey current_key();
  SigningKey current_key_locked(int64_t now);
  void read_keys_locked(int64_t now);
  // How long after it is issued an access token may still be accepted: its lifetime + clock skew.
  int64_t tokens_accepted_for() const;
  // One session ended, announced for that session.
  void revoke_session(const Session& session);
  // Every token of the account issued until now refused (one announcement for the account).
  void revoke_account_tokens(const std::string& account_id);
  // Ends every session of the account with one account revocation; returns how many ended.
  size_t end_all_sessions(const std::string& account_id);
  // After a successful sign-in: a hash made at another Argon2 cost is redone at the current one.
  void rehash_if_outdated(const Account& account, const std::string& password);
  // One password attempt on `username` from `address`: begin_attempt refuses it (kLocked, the
  // same whether the username exists or not) or counts it, before any hashing; finish_attempt
  // verifies the password (against a decoy hash when `hash` is null, so an unknown name costs the
  // same) and books the outcome.
  struct Attempt {
    std::string name;     // digest of the username: the same size and kind for every name
    std::string address;  // empty: not counted per address
    int64_t pair_count = 0;
    int64_t address_count = 0;
  };
  Attempt begin_attempt(const std::string& username, const std::string& address);
  bool finish_attempt(const Attempt& attempt, const std::string* hash, const std::string& password);
  void abandon_attempt(const Attempt& attempt);  // takes back what begin_attempt counted
  // kLocked when `address` made more than `max` of `what` in the window (fixed, from its first).
  void limit_rate(const std::string& what, const std::string& address, int64_t max,
                  std::chrono::milliseconds window, const std::string& setting);
  Account load(const std::string& account_id);
  Account update_account(const std::string& account_id, const std::function<void(Account&)>& change);

  AuthSettings settings_;
  Accounts& accounts_;
  Sessions& sessions_;
  SigningKeys& keys_;
  Counters& counters_;
  Clock now_;
  Revocations* revocations_;
  std::optional<SigningKey> configured_key_;
  std::mutex keys_mu_;
  std::vector<SigningKey> key_cache_;  // the stored (generated) keys
  int64_t key_cache_read_unix_ms_ = 0;
};

}  // namespace gameverse::auth
