#include "infrastructure/store_repositories.hpp"

#include <map>

#include "domain/crypto.hpp"
#include "gameverse/auth/records/v1/records.pb.h"

namespace gameverse::auth {

namespace {

namespace stored = records::v1;
using K = AuthError::Kind;

// Domain types ↔ stored records. The key (and, for sessions, the owner) carries the id, so a record
// does not repeat it; the version is the store's.

stored::AccountRecord to_record(const Account& a) {
  stored::AccountRecord r;
  if (!a.username.empty()) r.set_username(a.username);
  if (!a.password_hash.empty()) r.set_password_hash(a.password_hash);
  for (const auto& role : a.roles) r.add_roles(role);
  for (const auto& device : a.device_ids) r.add_device_ids(device);
  r.set_created_unix_ms(a.created_unix_ms);
  return r;
}

Account from_record(const sdk::Record<stored::AccountRecord>& record) {
  const stored::AccountRecord& r = record.value;
  Account a;
  a.id = record.key;
  a.username = r.username();
  a.password_hash = r.password_hash();
  a.roles = {r.roles().begin(), r.roles().end()};
  a.device_ids = {r.device_ids().begin(), r.device_ids().end()};
  a.created_unix_ms = r.created_unix_ms();
  a.version = record.version;
  return a;
}

stored::AccountIndexRecord index_of(const std::string& account_id) {
  stored::AccountIndexRecord r;
  r.set_account_id(account_id);
  return r;
}

stored::SessionRecord to_record(const Session& s) {
  stored::SessionRecord r;
  r.set_created_unix_ms(s.created_unix_ms);
  r.set_expires_unix_ms(s.expires_unix_ms);
  r.set_revoked(s.revoked);
  return r;
}

Session from_record(const sdk::Record<stored::SessionRecord>& record) {
  const stored::SessionRecord& r = record.value;
  return {record.key, record.owner, r.created_unix_ms(), r.expires_unix_ms(), r.revoked(), record.version};
}

stored::RefreshRecord to_record(const RefreshRecord& refresh) {
  stored::RefreshRecord r;
  r.set_session_id(refresh.session_id);
  r.set_spent(refresh.spent);
  return r;
}

RefreshRecord from_record(const sdk::Record<stored::RefreshRecord>& record) {
  return {record.key, record.value.session_id(), record.value.spent(), record.version};
}

stored::SigningKeyRecord to_record(const SigningKey& key, const std::string& kek) {
  stored::SigningKeyRecord r;
  r.set_public_key(key.public_key);
  if (kek.empty()) {
    r.set_secret_key(key.secret_key);
  } else {
    r.set_sealed_secret_key(seal_secret(kek, key.kid, key.secret_key));
  }
  r.set_created_unix_ms(key.created_unix_ms);
  return r;
}

SigningKey from_record(const sdk::Record<stored::SigningKeyRecord>& record, const std::string& kek) {
  const stored::SigningKeyRecord& r = record.value;
  std::string secret;
  if (r.has_sealed_secret_key()) {
    if (kek.empty()) {
      throw AuthError(K::kInvalidArgument, "the stored signing key '" + record.key +
                                               "' is encrypted, but no key encryption key is configured "
                                               "(key_encryption_key_file or GAMEVERSE_AUTH_KEK)");
    }
    secret = open_secret(kek, record.key, r.sealed_secret_key());
  } else if (r.has_secret_key()) {
    secret = r.secret_key();
  } else {
    throw sdk::Error(sdk::StatusCode::kDataLoss, "keys/" + record.key + ": SigningKeyRecord has no secret");
  }
  return {record.key, r.public_key(), secret, r.created_unix_ms()};
}

}  // namespace

std::optional<Account> StoreAccounts::by_id(const std::string& id) {
  auto record = store_.get<stored::AccountRecord>("accounts", id);
  if (!record) return std::nullopt;
  return from_record(*record);
}

std::optional<Account> StoreAccounts::by_index(const char* collection, const std::string& key) {
  auto entry = store_.get<stored::AccountIndexRecord>(collection, key);
  if (!entry) return std::nullopt;
  return by_id(entry->value.account_id());
}

std::optional<Account> StoreAccounts::by_username(const std::string& username) {
  return by_index("usernames", username);
}

std::optional<Account> StoreAccounts::by_device(const std::string& device_id) {
  return by_index("devices", device_id);
}

void StoreAccounts::create(const Account& account) {
  sdk::Store::Batch batch;
  batch.put("accounts", account.id, to_record(account), 0, account.id);
  if (!account.username.empty())
    batch.put("usernames", account.username, index_of(account.id), 0, account.id);
  for (const auto& device : account.device_ids)
    batch.put("devices", device, index_of(account.id), 0, account.id);
  try {
    store_.commit(batch);
  } catch (const sdk::Error& e) {
    if (e.code() != sdk::StatusCode::kAlreadyExists) throw;
    if (!account.username.empty() && store_.get("usernames", account.username)) {
      throw AuthError(K::kAlreadyExists, "the username '" + account.username + "' is taken");
    }
    throw AuthError(K::kAlreadyExists, "the device is already registered");
  }
}

void StoreAccounts::update(const Account& before, const Account& after) {
  sdk::Store::Batch batch;
  batch.put("accounts", after.id, to_record(after), before.version, after.id);
  if (after.username != before.username) {
    if (!after.username.empty()) batch.put("usernames", after.username, index_of(after.id), 0, after.id);
    if (!before.username.empty()) batch.erase("usernames", before.username);
  }
  for (const auto& device : before.device_ids) {
    if (after.device_ids.count(device) == 0) batch.erase("devices", device);
  }
  for (const auto& device : after.device_ids) {
    if (before.device_ids.count(device) == 0) batch.put("devices", device, index_of(after.id), 0, after.id);
  }
  try {
    store_.commit(batch);
  } catch (const sdk::Error& e) {
    if (e.code() == sdk::StatusCode::kAborted) throw StaleWrite(e.what());
    if (e.code() == sdk::StatusCode::kAlreadyExists) {
      throw AuthError(K::kAlreadyExists,
                      "the username '" + after.username + "' or a device is already taken");
    }
    throw;
  }
}

std::optional<Session> StoreSessions::session(const std::string& id) {
  auto record = store_.get<stored::SessionRecord>("sessions", id);
  if (!record) return std::nullopt;
  return from_record(*record);
}

std::vector<Session> StoreSessions::of_account(const std::string& account_id) {
  std::vector<Session> out;
  sdk::Store::Query query;
  query.collection = "sessions";
  query.owner = account_id;
  query.limit = 1000;
  do {
    auto page = store_.list<stored::SessionRecord>(query);
    for (const auto& record : page.records) out.push_back(from_record(record));
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());
  return out;
}

std::optional<RefreshRecord> StoreSessions::refresh(const std::string& token_hash) {
  auto record = store_.get<stored::RefreshRecord>("refresh", token_hash);
  if (!record) return std::nullopt;
  return from_record(*record);
}

void StoreSessions::start(const Session& session, const RefreshRecord& first) {
  sdk::Store::Batch batch;
  batch.put("sessions", session.id, to_record(session), 0, session.account_id);
  batch.put("refresh", first.token_hash, to_record(first), 0, session.account_id);
  store_.commit(batch);
}

void StoreSessions::rotate(const RefreshRecord& spent, const RefreshRecord& next) {
  RefreshRecord now_spent = spent;
  now_spent.spent = true;
  sdk::Store::Batch batch;
  batch.put("refresh", spent.token_hash, to_record(now_spent), spent.version);
  batch.put("refresh", next.token_hash, to_record(next), 0);
  try {
    store_.commit(batch);
  } catch (const sdk::Error& e) {
    if (e.code() == sdk::StatusCode::kAborted) throw StaleWrite(e.what());
    throw;
  }
}

void StoreSessions::revoke(const Session& session) {
  Session revoked = session;
  revoked.revoked = true;
  store_.put("sessions", session.id, to_record(revoked), sdk::Store::kAnyVersion, session.account_id);
}

size_t StoreSessions::commit_unless_changed(const sdk::Store::Batch& batch) {
  if (batch.empty()) return 0;
  try {
    store_.commit(batch);
    return batch.size();
  } catch (const sdk::Error& e) {
    // A record changed or went meanwhile (a refresh, another host purging): the next run sees it.
    if (e.code() == sdk::StatusCode::kAborted || e.code() == sdk::StatusCode::kNotFound) return 0;
    throw;
  }
}

size_t StoreSessions::purge_ended(int64_t now_unix_ms) {
  constexpr uint32_t kPage = 200;  // records read, and deleted in one batch, at a time
  size_t deleted = 0;
  // Sessions first, so that the refresh records of sessions that just went go in the same run.
  sdk::Store::Query query;
  query.collection = "sessions";
  query.limit = kPage;
  do {
    auto page = store_.list<stored::SessionRecord>(query);
    sdk::Store::Batch batch;
    for (const auto& record : page.records) {
      if (record.value.expires_unix_ms() <= now_unix_ms) batch.erase("sessions", record.key, record.version);
    }
    deleted += commit_unless_changed(batch);
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());

  query = {};
  query.collection = "refresh";
  query.limit = kPage;
  do {
    auto page = store_.list<stored::RefreshRecord>(query);
    std::map<std::string, bool> session_ended;  // by id, for this page
    sdk::Store::Batch batch;
    for (const auto& record : page.records) {
      const std::string& id = record.value.session_id();
      auto known = session_ended.find(id);
      if (known == session_ended.end()) {
        const std::optional<Session> s = session(id);
        known = session_ended.emplace(id, !s || s->revoked || s->expires_unix_ms <= now_unix_ms).first;
      }
      if (known->second) batch.erase("refresh", record.key, record.version);
    }
    deleted += commit_unless_changed(batch);
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());
  return deleted;
}

std::vector<SigningKey> StoreSigningKeys::all() {
  std::vector<SigningKey> keys;
  sdk::Store::Query query;
  query.collection = "keys";
  query.limit = 1000;
  do {
    auto page = store_.list<stored::SigningKeyRecord>(query);
    for (const auto& record : page.records) {
      keys.push_back(from_record(record, kek_));
      // Stored in plain text (before a key encryption key was configured): sealed now. Another
      // host doing the same at once makes this write stale, which is fine.
      if (!kek_.empty() && record.value.has_secret_key()) {
        try {
          store_.put("keys", record.key, to_record(keys.back(), kek_), record.version);
        } catch (const sdk::Error& e) {
          if (e.code() != sdk::StatusCode::kAborted) throw;
        }
      }
    }
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());
  return keys;
}

void StoreSigningKeys::add(const SigningKey& key) {
  try {
    store_.put("keys", key.kid, to_record(key, kek_), 0);
  } catch (const sdk::Error& e) {
    if (e.code() != sdk::StatusCode::kAlreadyExists) throw;  // a kid is random: only a retried write
  }
}

void StoreSigningKeys::remove(const std::string& kid) {
  store_.erase("keys", kid);
}

}  // namespace gameverse::auth
