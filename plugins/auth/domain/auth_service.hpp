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
  std::string signing_key_seed;  // base64 Ed25519 seed; empty: generated and stored
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
  AuthService(AuthSettings settings, Accounts& accounts, Sessions& sessions, SigningKeys& keys,
              Counters& counters, Clock now);

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
  // The id of the account with `username`; kNotFound when there is none.
  std::string account_id_of(const std::string& username);
  // Admins set roles, and the host's operator (the [admin] token), who makes the first admin.
  Account set_role(const TokenClaims& caller, const std::string& account_id, const std::string& role,
                   bool grant);
  std::vector<VerifyKey> verification_keys();
  // When tokens signed by a key have all expired: it may be dropped from the verification set then.
  int64_t key_not_after(const SigningKey& key) const;

 private:
  IssuedSession issue(const Account& account);
  IssuedSession issue_in(const Account& account, const Session& session, const RefreshRecord* spent);
  const SigningKey& current_key();
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
  std::string configured_kid_;  // the kid of the configured signing key; empty when keys are generated
  std::mutex keys_mu_;
  std::vector<SigningKey> key_cache_;
};

}  // namespace gameverse::auth
