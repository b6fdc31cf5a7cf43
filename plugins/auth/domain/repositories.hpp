// What the auth service needs from storage, implemented over the host's store and cache in
// infrastructure/. Conflicting writes throw AuthError kAlreadyExists (a taken name or device) or
// StaleWrite (someone changed the object first).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "domain/model.hpp"

namespace gameverse::auth {

struct StaleWrite : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Accounts {
 public:
  virtual ~Accounts() = default;
  virtual std::optional<Account> by_id(const std::string& id) = 0;
  virtual std::optional<Account> by_username(const std::string& username) = 0;
  virtual std::optional<Account> by_device(const std::string& device_id) = 0;
  // The account and its username and device entries, all or nothing.
  virtual void create(const Account& account) = 0;
  // Writes `after` over `before` (at before.version), moving the username and device entries.
  virtual void update(const Account& before, const Account& after) = 0;
};

class Sessions {
 public:
  virtual ~Sessions() = default;
  virtual std::optional<Session> session(const std::string& id) = 0;
  virtual std::vector<Session> of_account(const std::string& account_id) = 0;
  virtual std::optional<RefreshRecord> refresh(const std::string& token_hash) = 0;
  // A new session with its first refresh token.
  virtual void start(const Session& session, const RefreshRecord& first) = 0;
  // Marks `spent` spent (at its version) and stores `next`, at once.
  virtual void rotate(const RefreshRecord& spent, const RefreshRecord& next) = 0;
  virtual void revoke(const Session& session) = 0;
  // Deletes, page by page, sessions that expired before `now` and the refresh records of sessions
  // that are gone, expired or revoked (a spent record of a live session stays: it detects reuse).
  // Returns how many records it deleted.
  virtual size_t purge_ended(int64_t now_unix_ms) = 0;
};

// Generated signing keys (a configured key is never stored).
class SigningKeys {
 public:
  virtual ~SigningKeys() = default;
  virtual std::vector<SigningKey> all() = 0;
  virtual void add(const SigningKey& key) = 0;
  virtual void remove(const std::string& kid) = 0;
};

// Where revocations go for the verifiers of access tokens (the host's gate). At most once: a
// revocation that does not arrive leaves its tokens valid until they expire.
class Revocations {
 public:
  virtual ~Revocations() = default;
  virtual void publish(const Revocation& revocation) = 0;
};

// Counters in a window (the cache's atomic increment) and short-lived flags.
class Counters {
 public:
  virtual ~Counters() = default;
  virtual int64_t increment(const std::string& key, std::chrono::milliseconds window) = 0;
  // Adds delta (negative: takes back); a key this creates expires after window.
  virtual int64_t add(const std::string& key, int64_t delta, std::chrono::milliseconds window) = 0;
  virtual std::optional<std::string> get(const std::string& key) = 0;
  virtual void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) = 0;
  virtual void erase(const std::string& key) = 0;
};

}  // namespace gameverse::auth
