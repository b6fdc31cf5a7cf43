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
  PasswordHasher hasher{3, 64u << 20};  // Argon2id: 3 passes over 64 MiB (libsodium's "moderate")
  int64_t max_failures_per_account = 5;
  int64_t max_failures_per_address = 20;
  std::chrono::milliseconds failure_window{std::chrono::minutes(15)};
  std::chrono::milliseconds lockout{std::chrono::minutes(15)};
  std::string signing_key_seed;   // base64 Ed25519 seed, kept in memory only; empty: generated keys
  bool generate_keys = true;      // false: a configured signing key is required
  tokens::Validation validation;  // "iss", "aud" and the clock skew of the tokens
  std::vector<std::string> bootstrap_admins;  // usernames that are admins when they register
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

  IssuedSession register_account(const std::string& username, const std::string& password);
  // `address` is the client's, for the per-address failure limit.
  IssuedSession login(const std::string& username, const std::string& password, const std::string& address);
  IssuedSession authenticate_device(const std::string& device_id);
  IssuedSession refresh(const std::string& refresh_token);
  // The caller, from an access token: kUnauthenticated when it does not verify.
  TokenClaims authenticate(std::string_view access_token);
  size_t logout(const TokenClaims& caller, bool everywhere);
  Account account(const TokenClaims& caller);
  Account link_username(const TokenClaims& caller, const std::string& username, const std::string& password);
  Account unlink_device(const TokenClaims& caller, const std::string& device_id);
  IssuedSession change_password(const TokenClaims& caller, const std::string& current,
                                const std::string& next);
  Account set_role(const TokenClaims& caller, const std::string& account_id, const std::string& role,
                   bool grant);
  // The configured key and the stored generated keys whose tokens may not have expired. Re-read
  // from the store at most every kKeyCacheMs, so that a key another host made is published here
  // soon, and anonymous callers cannot turn each call into a store read.
  std::vector<VerifyKey> verification_keys();
  const tokens::Validation& validation() const { return settings_.validation; }
  // When tokens signed by a key have all expired: it may be dropped from the verification set then.
  int64_t key_not_after(const SigningKey& key) const;
  static constexpr int64_t kKeyCacheMs = 1000;

 private:
  IssuedSession issue(const Account& account);
  IssuedSession issue_in(const Account& account, const Session& session, const RefreshRecord* spent);
  SigningKey current_key();
  SigningKey current_key_locked(int64_t now);
  void read_keys_locked(int64_t now);
  void revoke_session(const Session& session);
  void check_not_locked(const std::string& account_id, const std::string& address);
  void count_failure(const std::string& account_id, const std::string& address);
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
