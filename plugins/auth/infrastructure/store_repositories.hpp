// The auth repositories over the host's document store and cache. Values are the records of
// proto/gameverse/auth/records/v1/records.proto (beside this file):
//   accounts/<id>          AccountRecord                    owner: the account id
//   usernames/<username>   AccountIndexRecord (create-only: a name is taken once)
//   devices/<device key>   AccountIndexRecord ("b2:" + BLAKE2b digest of the device id, never the id)
//   sessions/<id>          SessionRecord                    owner: the account id
//   refresh/<digest>       RefreshRecord (only the BLAKE2b digest of the token)
//   keys/<kid>             SigningKeyRecord (generated keys only; sealed with a key encryption key)
// A stored value that is not its record (a required field missing) is sdk::Error DATA_LOSS naming
// the collection and key, never a record filled with defaults.
#pragma once

#include <gameverse/sdk/plugin.hpp>

#include "domain/repositories.hpp"

namespace gameverse::auth {

class StoreAccounts final : public Accounts {
 public:
  explicit StoreAccounts(sdk::Store store) : store_(store) {}
  std::optional<Account> by_id(const std::string& id) override;
  std::optional<Account> by_username(const std::string& username) override;
  std::optional<Account> by_device(const std::string& device_id) override;
  void create(const Account& account) override;
  void update(const Account& before, const Account& after) override;

 private:
  std::optional<Account> by_index(const char* collection, const std::string& key);
  sdk::Store store_;
};

class StoreSessions final : public Sessions {
 public:
  explicit StoreSessions(sdk::Store store) : store_(store) {}
  std::optional<Session> session(const std::string& id) override;
  std::vector<Session> of_account(const std::string& account_id) override;
  std::optional<RefreshRecord> refresh(const std::string& token_hash) override;
  void start(const Session& session, const RefreshRecord& first) override;
  void rotate(const RefreshRecord& spent, const RefreshRecord& next) override;
  void revoke(const Session& session) override;
  size_t purge_ended(int64_t now_unix_ms) override;

 private:
  size_t commit_unless_changed(const sdk::Store::Batch& batch);
  sdk::Store store_;
};

// `kek`: the 32-byte key encryption key; empty: secrets are stored in plain text. A record that
// does not open (another KEK, or sealed while none is configured) is AuthError kInvalidArgument
// naming its kid.
class StoreSigningKeys final : public SigningKeys {
 public:
  StoreSigningKeys(sdk::Store store, std::string kek) : store_(store), kek_(std::move(kek)) {}
  std::vector<SigningKey> all() override;
  void add(const SigningKey& key) override;
  void remove(const std::string& kid) override;
  bool sealed() const { return !kek_.empty(); }

 private:
  sdk::Store store_;
  std::string kek_;
};

class CacheCounters final : public Counters {
 public:
  explicit CacheCounters(sdk::Cache cache) : cache_(cache) {}
  int64_t increment(const std::string& key, std::chrono::milliseconds window) override {
    return cache_.increment(key, 1, window);
  }
  int64_t add(const std::string& key, int64_t delta, std::chrono::milliseconds window) override {
    return cache_.increment(key, delta, window);
  }
  std::optional<std::string> get(const std::string& key) override { return cache_.get(key); }
  void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) override {
    cache_.set(key, value, ttl);
  }
  void erase(const std::string& key) override { cache_.erase(key); }

 private:
  sdk::Cache cache_;
};

}  // namespace gameverse::auth
