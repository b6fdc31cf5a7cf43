// The auth domain: accounts, sessions, refresh tokens, signing keys, and the failures a caller
// sees. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gameverse/domain_error.hpp>
#include <gameverse/tokens.hpp>

namespace gameverse::auth {

// What went wrong, in terms a caller can act on. Messages never say why a password was wrong.
// Its own kinds tell a lockout from a busy hasher; both are RESOURCE_EXHAUSTED with a retry-after.
class AuthError : public DomainError {
 public:
  enum class Kind {
    kInvalidArgument,
    kAlreadyExists,
    kNotFound,
    kUnauthenticated,
    kPermissionDenied,
    kLocked,  // too many attempts from this client, or for this name: RESOURCE_EXHAUSTED, retry later
    kBusy     // every hash worker is taken: RESOURCE_EXHAUSTED, retry soon
  };
  AuthError(Kind kind, const std::string& message, int64_t retry_after_ms = 0)
      : DomainError(failure_of(kind), message, retry_after_ms), kind_(kind) {}
  // The auth kind; DomainError::kind() is the status kind it maps to.
  Kind kind() const { return kind_; }

 private:
  static DomainError::Kind failure_of(Kind kind) {
    switch (kind) {
      case Kind::kInvalidArgument: return DomainError::Kind::kInvalidArgument;
      case Kind::kAlreadyExists: return DomainError::Kind::kAlreadyExists;
      case Kind::kNotFound: return DomainError::Kind::kNotFound;
      case Kind::kUnauthenticated: return DomainError::Kind::kUnauthenticated;
      case Kind::kPermissionDenied: return DomainError::Kind::kPermissionDenied;
      case Kind::kLocked:
      case Kind::kBusy: return DomainError::Kind::kResourceExhausted;
    }
    return DomainError::Kind::kInvalidArgument;
  }
  Kind kind_;
};

// The role the host's gate gives the caller with its [admin] token (the operator), never a role
// of an account: it sets any role, and so makes the first admin.
inline constexpr const char* kOperatorRole = "operator";

inline const std::set<std::string>& known_roles() {
  static const std::set<std::string> roles{"player", "moderator", "admin"};
  return roles;
}

struct Account {
  std::string id;
  std::string username;       // empty: a device-only account
  std::string password_hash;  // Argon2id, in libsodium's string form; empty without a username
  std::set<std::string> roles{"player"};
  // The keys of the account's devices (device_key), never the device ids themselves. Records
  // written before devices were hashed may still hold a plain id, until it next signs in.
  std::set<std::string> device_ids;
  int64_t created_unix_ms = 0;
  int64_t version = 0;  // the store's, for optimistic updates
};

// A signed-in session: one per login, refreshed by a chain ("family") of single-use tokens.
struct Session {
  std::string id;
  std::string account_id;
  int64_t created_unix_ms = 0;
  int64_t expires_unix_ms = 0;  // the refresh chain ends here
  bool revoked = false;
  int64_t version = 0;
};

// One refresh token of a session, stored by the hash of the token.
struct RefreshRecord {
  std::string token_hash;
  std::string session_id;
  bool spent = false;
  int64_t version = 0;
};

struct SigningKey {
  std::string kid;
  std::string public_key;  // 32 bytes, Ed25519
  std::string secret_key;  // 64 bytes, Ed25519 (libsodium's seed + public key form)
  int64_t created_unix_ms = 0;
};

// Access tokens to refuse before they expire: a session's (session_id), or an account's issued at
// or before a time (account_id, issued_before_unix_ms). until_unix_ms: when all have expired.
struct Revocation {
  std::string session_id;
  std::string account_id;
  int64_t issued_before_unix_ms = 0;
  int64_t until_unix_ms = 0;
};

// The claims of an access token (the format is gameverse/tokens.hpp, shared with the host's gate).
using TokenClaims = tokens::Claims;

// Usernames: 3 to 32 of a-z, 0-9, '_', '.', '-', starting with a letter. Throws kInvalidArgument
// naming the rule.
void check_username(const std::string& username);
// Passwords: 10 to 128 bytes, not the username.
void check_password(const std::string& password, const std::string& username);
void check_role(const std::string& role);

}  // namespace gameverse::auth
