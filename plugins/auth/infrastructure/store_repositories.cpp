#include "infrastructure/store_repositories.hpp"

#include <gameverse/sdk/json.hpp>

#include <sodium.h>

namespace gameverse::auth {

namespace {

using nlohmann::json;
using K = AuthError::Kind;

json to_json(const Account& a) {
  return {{"username", a.username},
          {"password_hash", a.password_hash},
          {"roles", a.roles},
          {"device_ids", a.device_ids},
          {"created_unix_ms", a.created_unix_ms}};
}

Account account_of(const std::string& id, const sdk::Store::Object& object) {
  const json j = sdk::parse_json(object.value, "account " + id);
  Account a;
  a.id = id;
  a.username = j.value("username", "");
  a.password_hash = j.value("password_hash", "");
  a.roles = j.value("roles", std::set<std::string>{});
  a.device_ids = j.value("device_ids", std::set<std::string>{});
  a.created_unix_ms = j.value("created_unix_ms", int64_t{0});
  a.version = object.version;
  return a;
}

Session session_of(const sdk::Store::Object& object) {
  const json j = sdk::parse_json(object.value, "session " + object.key);
  return {object.key,
          object.owner,
          j.value("created_unix_ms", int64_t{0}),
          j.value("expires_unix_ms", int64_t{0}),
          j.value("revoked", false),
          object.version};
}

json to_json(const Session& s) {
  return {
      {"created_unix_ms", s.created_unix_ms}, {"expires_unix_ms", s.expires_unix_ms}, {"revoked", s.revoked}};
}

std::string hex(const std::string& bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  out.pop_back();
  return out;
}

std::string unhex(const std::string& text) {
  std::string out(text.size() / 2, '\0');
  size_t length = 0;
  sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), nullptr,
                 &length, nullptr);
  out.resize(length);
  return out;
}

}  // namespace

std::optional<Account> StoreAccounts::by_id(const std::string& id) {
  auto object = store_.get("accounts", id);
  if (!object) return std::nullopt;
  return account_of(id, *object);
}

std::optional<Account> StoreAccounts::by_index(const char* collection, const std::string& key) {
  auto entry = store_.get(collection, key);
  if (!entry) return std::nullopt;
  return by_id(entry->value);
}

std::optional<Account> StoreAccounts::by_username(const std::string& username) {
  return by_index("usernames", username);
}

std::optional<Account> StoreAccounts::by_device(const std::string& device_id) {
  return by_index("devices", device_id);
}

void StoreAccounts::create(const Account& account) {
  sdk::Store::Batch batch;
  batch.put("accounts", account.id, to_json(account).dump(), 0, account.id);
  if (!account.username.empty()) batch.put("usernames", account.username, account.id, 0, account.id);
  for (const auto& device : account.device_ids) batch.put("devices", device, account.id, 0, account.id);
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
  batch.put("accounts", after.id, to_json(after).dump(), before.version, after.id);
  if (after.username != before.username) {
    if (!after.username.empty()) batch.put("usernames", after.username, after.id, 0, after.id);
    if (!before.username.empty()) batch.erase("usernames", before.username);
  }
  for (const auto& device : before.device_ids) {
    if (after.device_ids.count(device) == 0) batch.erase("devices", device);
  }
  for (const auto& device : after.device_ids) {
    if (before.device_ids.count(device) == 0) batch.put("devices", device, after.id, 0, after.id);
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
  auto object = store_.get("sessions", id);
  if (!object) return std::nullopt;
  return session_of(*object);
}

std::vector<Session> StoreSessions::of_account(const std::string& account_id) {
  std::vector<Session> out;
  sdk::Store::Query query;
  query.collection = "sessions";
  query.owner = account_id;
  query.limit = 1000;
  do {
    sdk::Store::Page page = store_.list(query);
    for (const auto& object : page.objects) out.push_back(session_of(object));
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());
  return out;
}

std::optional<RefreshRecord> StoreSessions::refresh(const std::string& token_hash) {
  auto object = store_.get("refresh", token_hash);
  if (!object) return std::nullopt;
  const json j = sdk::parse_json(object->value, "refresh record");
  return RefreshRecord{token_hash, j.value("session", ""), j.value("spent", false), object->version};
}

void StoreSessions::start(const Session& session, const RefreshRecord& first) {
  sdk::Store::Batch batch;
  batch.put("sessions", session.id, to_json(session).dump(), 0, session.account_id);
  batch.put("refresh", first.token_hash, json{{"session", session.id}, {"spent", false}}.dump(), 0,
            session.account_id);
  store_.commit(batch);
}

void StoreSessions::rotate(const RefreshRecord& spent, const RefreshRecord& next) {
  sdk::Store::Batch batch;
  batch.put("refresh", spent.token_hash, json{{"session", spent.session_id}, {"spent", true}}.dump(),
            spent.version);
  batch.put("refresh", next.token_hash, json{{"session", next.session_id}, {"spent", false}}.dump(), 0);
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
  store_.put("sessions", session.id, to_json(revoked).dump(), sdk::Store::kAnyVersion, session.account_id);
}

std::vector<SigningKey> StoreSigningKeys::all() {
  std::vector<SigningKey> keys;
  sdk::Store::Query query;
  query.collection = "keys";
  query.limit = 1000;
  do {
    sdk::Store::Page page = store_.list(query);
    for (const auto& object : page.objects) {
      const json j = sdk::parse_json(object.value, "signing key " + object.key);
      keys.push_back({object.key, unhex(j.value("public", "")), unhex(j.value("secret", "")),
                      j.value("created_unix_ms", int64_t{0})});
    }
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());
  return keys;
}

void StoreSigningKeys::add(const SigningKey& key) {
  const json j = {{"public", hex(key.public_key)},
                  {"secret", hex(key.secret_key)},
                  {"created_unix_ms", key.created_unix_ms}};
  try {
    store_.put("keys", key.kid, j.dump(), 0);
  } catch (const sdk::Error& e) {
    if (e.code() != sdk::StatusCode::kAlreadyExists) throw;  // another host stored the same configured key
  }
}

}  // namespace gameverse::auth
