// In-memory repositories with the store's semantics (create-only entries, versions that must
// match), so that the domain's rules are tested without a host.
#pragma once

#include <map>

#include "domain/repositories.hpp"

namespace gameverse::auth::testing {

class MemoryAccounts final : public Accounts {
 public:
  bool fail_updates = false;  // every update throws, as a store that is down would
  std::optional<Account> by_id(const std::string& id) override {
    auto it = accounts_.find(id);
    return it == accounts_.end() ? std::nullopt : std::optional<Account>(it->second);
  }
  std::optional<Account> by_username(const std::string& username) override {
    return by_index(usernames_, username);
  }
  std::optional<Account> by_device(const std::string& device_id) override {
    return by_index(devices_, device_id);
  }
  void create(const Account& account) override {
    if (!account.username.empty() && usernames_.count(account.username)) {
      throw AuthError(AuthError::Kind::kAlreadyExists, "the username '" + account.username + "' is taken");
    }
    for (const auto& d : account.device_ids) {
      if (devices_.count(d))
        throw AuthError(AuthError::Kind::kAlreadyExists, "the device is already registered");
    }
    Account stored = account;
    stored.version = 1;
    accounts_[account.id] = stored;
    if (!account.username.empty()) usernames_[account.username] = account.id;
    for (const auto& d : account.device_ids) devices_[d] = account.id;
  }
  void update(const Account& before, const Account& after) override {
    if (fail_updates) throw std::runtime_error("the store is unavailable");
    if (accounts_.at(before.id).version != before.version) throw StaleWrite("changed meanwhile");
    if (after.username != before.username && !after.username.empty() && usernames_.count(after.username)) {
      throw AuthError(AuthError::Kind::kAlreadyExists, "the username '" + after.username + "' is taken");
    }
    if (!before.username.empty() && after.username != before.username) usernames_.erase(before.username);
    if (!after.username.empty()) usernames_[after.username] = after.id;
    for (const auto& d : before.device_ids) devices_.erase(d);
    for (const auto& d : after.device_ids) devices_[d] = after.id;
    Account stored = after;
    stored.version = before.version + 1;
    accounts_[after.id] = stored;
  }

 private:
  std::optional<Account> by_index(const std::map<std::string, std::string>& index, const std::string& key) {
    auto it = index.find(key);
    return it == index.end() ? std::nullopt : by_id(it->second);
  }
  std::map<std::string, Account> accounts_;
  std::map<std::string, std::string> usernames_, devices_;
};

class MemorySessions final : public Sessions {
 public:
  std::optional<Session> session(const std::string& id) override {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? std::nullopt : std::optional<Session>(it->second);
  }
  std::vector<Session> of_account(const std::string& account_id) override {
    std::vector<Session> out;
    for (const auto& [id, s] : sessions_) {
      if (s.account_id == account_id) out.push_back(s);
    }
    return out;
  }
  std::optional<RefreshRecord> refresh(const std::string& token_hash) override {
    auto it = refresh_.find(token_hash);
    return it == refresh_.end() ? std::nullopt : std::optional<RefreshRecord>(it->second);
  }
  void start(const Session& session, const RefreshRecord& first) override {
    sessions_[session.id] = session;
    refresh_[first.token_hash] = first;
    refresh_[first.token_hash].version = 1;
  }
  void rotate(const RefreshRecord& spent, const RefreshRecord& next) override {
    RefreshRecord& stored = refresh_.at(spent.token_hash);
    if (stored.version != spent.version) throw StaleWrite("spent meanwhile");
    stored.spent = true;
    ++stored.version;
    refresh_[next.token_hash] = next;
    refresh_[next.token_hash].version = 1;
  }
  void revoke(const Session& session) override { sessions_.at(session.id).revoked = true; }
  size_t purge_ended(int64_t now_unix_ms) override {
    size_t deleted =
        std::erase_if(sessions_, [&](const auto& s) { return s.second.expires_unix_ms <= now_unix_ms; });
    return deleted + std::erase_if(refresh_, [&](const auto& r) {
             auto s = sessions_.find(r.second.session_id);
             return s == sessions_.end() || s->second.revoked;
           });
  }
  size_t refresh_records() const { return refresh_.size(); }

 private:
  std::map<std::string, Session> sessions_;
  std::map<std::string, RefreshRecord> refresh_;
};

class MemoryKeys final : public SigningKeys {
 public:
  std::vector<SigningKey> all() override { return keys_; }
  void add(const SigningKey& key) override { keys_.push_back(key); }
  void remove(const std::string& kid) override {
    std::erase_if(keys_, [&](const SigningKey& k) { return k.kid == kid; });
  }

 private:
  std::vector<SigningKey> keys_;
};

class MemoryRevocations final : public Revocations {
 public:
  void publish(const Revocation& revocation) override { published.push_back(revocation); }
  std::vector<Revocation> published;
};

// Counters whose windows follow the test's clock.
class MemoryCounters final : public Counters {
 public:
  explicit MemoryCounters(const int64_t& now) : now_(now) {}
  int64_t increment(const std::string& key, std::chrono::milliseconds window) override {
    return add(key, 1, window);
  }
  int64_t add(const std::string& key, int64_t delta, std::chrono::milliseconds window) override {
    Entry& e = live(key);
    if (e.value.empty()) e = {"0", now_ + window.count()};
    e.value = std::to_string(std::stoll(e.value) + delta);
    return std::stoll(e.value);
  }
  std::optional<std::string> get(const std::string& key) override {
    Entry& e = live(key);
    return e.value.empty() ? std::nullopt : std::optional<std::string>(e.value);
  }
  void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) override {
    entries_[key] = {value, now_ + ttl.count()};
  }
  void erase(const std::string& key) override { entries_.erase(key); }

 private:
  struct Entry {
    std::string value;
    int64_t expires = 0;
  };
  Entry& live(const std::string& key) {
    Entry& e = entries_[key];
    if (!e.value.empty() && e.expires <= now_) e = {};
    return e;
  }
  const int64_t& now_;
  std::map<std::string, Entry> entries_;
};

}  // namespace gameverse::auth::testing
