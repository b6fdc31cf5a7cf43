#include "domain/auth_service.hpp"

#include <algorithm>

namespace gameverse::auth {

namespace {

using K = AuthError::Kind;

int64_t ms(std::chrono::milliseconds d) {
  return static_cast<int64_t>(d.count());
}

// A hash to verify against when the username does not exist, so that an unknown name costs as
// long as a wrong password and the two cannot be told apart.
const std::string& decoy_hash(const PasswordHasher& hasher) {
  static const std::string hash = hasher.hash(random_token(16));
  return hash;
}

AuthError bad_device_id(const std::string& device_id) {
  return AuthError(K::kInvalidArgument,
                   "a device id is a random secret the client makes once, 22 to 128 characters (128 bits or "
                   "more, e.g. 16 random bytes as base64url); this one has " +
                       std::to_string(device_id.size()));
}

}  // namespace

AuthService::AuthService(AuthSettings settings, Accounts& accounts, Sessions& sessions, SigningKeys& keys,
                         Counters& counters, Clock now, Revocations* revocations)
    : settings_(std::move(settings)),
      accounts_(accounts),
      sessions_(sessions),
      keys_(keys),
      counters_(counters),
      now_(std::move(now)),
      revocations_(revocations) {
  if (!settings_.signing_key_seed.empty()) {
    configured_key_ = signing_key_from_seed(settings_.signing_key_seed, now_());
  } else if (!settings_.generate_keys) {
    throw AuthError(K::kInvalidArgument,
                    "key generation is off (generate_keys = false) and no signing_key is configured: "
                    "set signing_key (openssl rand -base64 32)");
  }
}

int64_t AuthService::key_not_after(const SigningKey& key) const {
  // The configured key signs and verifies until it is replaced. Every other key is retired at once
  // while a key is configured: one configured before (replaced after a leak), and the generated
  // keys too, since configuring a key is the operator's answer to a leaked generated one. A retired
  // key neither verifies nor is published; sessions go on through their (unsigned) refresh tokens.
  if (configured_key_) return key.kid == configured_key_->kid ? INT64_MAX : 0;
  if (key.kid.rfind("config-", 0) == 0) return 0;  // the config was emptied
  // A generated key signs for one rotation; its last tokens are accepted until exp + clock skew.
  return key.created_unix_ms + ms(settings_.key_rotation) + tokens_accepted_for();
}

int64_t AuthService::tokens_accepted_for() const {
  return ms(settings_.access_ttl) + settings_.validation.clock_skew_ms;
}

void AuthService::read_keys_locked(int64_t now) {
  std::vector<SigningKey> stored = keys_.all();
  // Older versions stored the configured key too; a configured key lives in memory only.
  std::erase_if(stored, [&](const SigningKey& k) {
    if (k.kid.rfind("config-", 0) != 0) return false;
    keys_.remove(k.kid);
    return true;
  });
  key_cache_ = std::move(stored);
  key_cache_read_unix_ms_ = now;
}

SigningKey AuthService::current_key() {
  std::lock_guard lock(keys_mu_);
  return current_key_locked(now_());
}

SigningKey AuthService::current_key_locked(int64_t now) {
  if (configured_key_) return *configured_key_;
  if (key_cache_read_unix_ms_ == 0 || now - key_cache_read_unix_ms_ >= kKeyCacheMs) read_keys_locked(now);
  auto newest = std::max_element(
      key_cache_.begin(), key_cache_.end(),
      [](const SigningKey& a, const SigningKey& b) { return a.created_unix_ms < b.created_unix_ms; });
  if (newest != key_cache_.end() && now - newest->created_unix_ms < ms(settings_.key_rotation)) {
    return *newest;
  }
  // First start, or time to rotate: older keys keep verifying until their tokens have expired.
  SigningKey fresh = generate_signing_key(now);
  keys_.add(fresh);
  key_cache_.push_back(fresh);
  return fresh;
}

std::vector<VerifyKey> AuthService::verification_keys() {
  std::lock_guard lock(keys_mu_);
  const int64_t now = now_();
  current_key_locked(now);  // makes sure there is one
  if (now - key_cache_read_unix_ms_ >= kKeyCacheMs) read_keys_locked(now);
  std::vector<VerifyKey> keys;
  if (configured_key_) keys.push_back({configured_key_->kid, configured_key_->public_key});
  for (const SigningKey& k : key_cache_) {
    if (key_not_after(k) > now) keys.push_back({k.kid, k.public_key});
  }
  return keys;
}

TokenClaims AuthService::authenticate(std::string_view access_token) {
  try {
    return verify_token(access_token, verification_keys(), now_(), settings_.validation);
  } catch (const AuthError& e) {
    if (std::string_view(e.what()).find("unknown key") == std::string_view::npos) throw;
    // Another host may have rotated to a key this one has not read yet.
    {
      std::lock_guard lock(keys_mu_);
      read_keys_locked(now_());
    }
    return verify_token(access_token, verification_keys(), now_(), settings_.validation);
  }
}

void AuthService::revoke_session(const Session& session) {
  sessions_.revoke(session);
  // Its access tokens are all past exp + clock skew one lifetime from now.
  if (revocations_ != nullptr) revocations_->publish({session.id, "", 0, now_() + tokens_accepted_for()});
}

void AuthService::revoke_account_tokens(const std::string& account_id) {
  const int64_t now = now_();
  // Remembered for issue_in: a token issued in this same second would count as before the cut.
  counters_.set("revoked:" + account_id, std::to_string(now),
                std::chrono::milliseconds(tokens_accepted_for()));
  if (revocations_ != nullptr) revocations_->publish({"", account_id, now, now + tokens_accepted_for()});
}

IssuedSession AuthService::issue(const Account& account) {
  const int64_t now = now_();
  Session session{random_token(16), account.id, now, now + ms(settings_.refresh_ttl), false, 0};
  return issue_in(account, session, nullptr);
}

IssuedSession AuthService::issue_in(const Account& account, const Session& session,
                                    const RefreshRecord* spent) {
  const int64_t now = now_();
  IssuedSession issued;
  issued.refresh_token = random_token(32);
  const RefreshRecord next{token_digest(issued.refresh_token), session.id, false, 0};
  if (spent == nullptr) {
    sessions_.start(session, next);
  } else {
    sessions_.rotate(*spent, next);
  }
  TokenClaims claims{account.id,
                     session.id,
                     {account.roles.begin(), account.roles.end()},
                     now,
                     now + ms(settings_.access_ttl)};
  // "iat" has whole seconds, and the gate refuses the account's tokens issued at or before a
  // revocation of all of them: one issued in the second of that revocation says the next second.
  if (auto revoked = counters_.get("revoked:" + account.id)) {
    const int64_t cut = std::stoll(*revoked);
    if (now / 1000 * 1000 <= cut) claims.issued_unix_ms = (cut / 1000 + 1) * 1000;
  }
  issued.access_token = sign_token(current_key(), claims, settings_.validation);
  issued.access_expires_unix_ms = claims.expires_unix_ms / 1000 * 1000;
  issued.refresh_expires_unix_ms = session.expires_unix_ms;
  issued.account = account;
  return issued;
}

IssuedSession AuthService::register_account(const std::string& username, const std::string& password,
                                            const std::string& address) {
  check_username(username);
  check_password(password, username);
  // Busy first: a call told to retry does not use up its address's registrations.
  if (settings_.hasher.limiter) settings_.hasher.limiter->check_not_full();
  limit_rate("registrations", address, settings_.registrations_per_address_per_hour, std::chrono::hours(1),
             "registrations_per_address_per_hour");
  if (accounts_.by_username(username))
    throw AuthError(K::kAlreadyExists, "the username '" + username + "' is taken");
  Account account;
  account.id = random_token(12);
  account.username = username;
  account.password_hash = settings_.hasher.hash(password);
  account.created_unix_ms = now_();
  accounts_.create(account);
  return issue(*accounts_.by_id(account.id));
}

void AuthService::limit_rate(const std::string& what, const std::string& address, int64_t max,
                             std::chrono::milliseconds window, const std::string& setting) {
  if (address.empty()) return;
  const std::string key = "rate:" + what + ":" + address;
  const int64_t now = now_();
  const int64_t count = counters_.increment(key, window);
  if (count == 1) counters_.set(key + ":since", std::to_string(now), window);
  if (count <= max) return;
  int64_t left = ms(window);
  if (auto since = counters_.get(key + ":since"))
    left = std::max<int64_t>(0, std::stoll(*since) + ms(window) - now);
  throw AuthError(K::kLocked,
                  "too many " + what + " from this address: at most " + std::to_string(max) + " (" + setting +
                      "); retry in " + std::to_string((left + 999) / 1000) + " s",
                  left);
}

AuthService::Attempt AuthService::begin_attempt(const std::string& username, const std::string& address) {
  Attempt attempt{token_digest(username), address};
  const std::string pair = attempt.name + "|" + address;
  const int64_t now = now_();
  auto refuse = [&](const std::string& lock_key, const std::string& who) {
    int64_t left = ms(settings_.lockout);
    if (auto until = counters_.get(lock_key)) left = std::max<int64_t>(1, std::stoll(*until) - now);
    return AuthError(
        K::kLocked,
        "too many failed logins " + who + ": try again in " + std::to_string((left + 999) / 1000) + " s",
        left);
  };
  // Locks: of this username from this address, and of this address.
  if (counters_.get("lock:pair:" + pair))
    throw refuse("lock:pair:" + pair, "for this username from this address");
  if (!address.empty() && counters_.get("lock:address:" + address))
    throw refuse("lock:address:" + address, "from this address");
  // Counted before the password is checked, so that concurrent attempts cannot all pass a check
  // made before any of them was counted: each gets its own number.
  attempt.pair_count = counters_.increment("fail:pair:" + pair, settings_.failure_window);
  if (!address.empty())
    attempt.address_count = counters_.increment("fail:address:" + address, settings_.failure_window);
  if (attempt.pair_count > settings_.max_failures_per_account) {
    throw refuse("lock:pair:" + pair, "for this username from this address");
  }
  if (attempt.address_count > settings_.max_failures_per_address) {
    throw refuse("lock:address:" + address, "from this address");
  }
  // A lock set while this attempt was being counted: the failure that set it also reset the count
  // this attempt may have started again from. Refused like one that found the lock.
  if (counters_.get("lock:pair:" + pair)) {
    abandon_attempt(attempt);
    throw refuse("lock:pair:" + pair, "for this username from this address");
  }
  if (!address.empty() && counters_.get("lock:address:" + address)) {
    abandon_attempt(attempt);
    throw refuse("lock:address:" + address, "from this address");
  }
  // The slow-down of a username many addresses guess at, which its owner's addresses skip.
  const std::optional<std::string> failures = counters_.get("fail:name:" + attempt.name);
  const int64_t over = (failures ? std::stoll(*failures) : 0) - settings_.slow_down_after_failures;
  if (over >= 0 && !counters_.get("known:" + pair)) {
    const int64_t delay =
        std::min<int64_t>(ms(settings_.slow_down_max), int64_t{1000} << std::min<int64_t>(over, 20));
    // One try per delay for each address: another address holding its slot keeps nobody out here.
    if (counters_.increment("slow:" + pair, std::chrono::milliseconds(delay)) > 1) {
      abandon_attempt(attempt);
      throw AuthError(K::kLocked,
                      "too many failed logins for this username: one try from this address every " +
                          std::to_string(delay / 1000) + " s; try again in " + std::to_string(delay / 1000) +
                          " s",
                      delay);
    }
  }
  if (settings_.hasher.limiter) {
    try {
      settings_.hasher.limiter->check_not_full();  // busy: refused before anything else is read
    } catch (const AuthError&) {
      abandon_attempt(attempt);
      throw;
    }
  }
  return attempt;
}

void AuthService::abandon_attempt(const Attempt& attempt) {
  counters_.add("fail:pair:" + attempt.name + "|" + attempt.address, -1, settings_.failure_window);
  if (!attempt.address.empty())
    counters_.add("fail:address:" + attempt.address, -1, settings_.failure_window);
}

bool AuthService::finish_attempt(const Attempt& attempt, const std::string* hash,
                                 const std::string& password) {
  const std::string pair = attempt.name + "|" + attempt.address;
  bool ok = false;
  try {
    ok = hash != nullptr ? settings_.hasher.verify(*hash, password)
                         : (settings_.hasher.verify(decoy_hash(settings_.hasher), password), false);
  } catch (const AuthError&) {
    abandon_attempt(attempt);  // busy: not an attempt at all
    throw;
  }
  if (ok) {
    counters_.erase("fail:pair:" + pair);
    if (!attempt.address.empty()) {
      counters_.add("fail:address:" + attempt.address, -1, settings_.failure_window);
      counters_.set("known:" + pair, "1", settings_.known_address_ttl);
    }
    return true;
  }
  counters_.increment("fail:name:" + attempt.name, settings_.failure_window);
  const std::string until = std::to_string(now_() + ms(settings_.lockout));
  if (attempt.pair_count >= settings_.max_failures_per_account) {
    counters_.set("lock:pair:" + pair, until, settings_.lockout);
    counters_.erase("fail:pair:" + pair);
  }
  if (!attempt.address.empty() && attempt.address_count >= settings_.max_failures_per_address) {
    counters_.set("lock:address:" + attempt.address, until, settings_.lockout);
    counters_.erase("fail:address:" + attempt.address);
  }
  return false;
}

IssuedSession AuthService::login(const std::string& username, const std::string& password,
                                 const std::string& address) {
  const Attempt attempt = begin_attempt(username, address);
  std::optional<Account> account = accounts_.by_username(username);
  const bool has_password = account && !account->password_hash.empty();
  if (!finish_attempt(attempt, has_password ? &account->password_hash : nullptr, password)) {
    throw AuthError(K::kUnauthenticated, "wrong username or password");
  }
  rehash_if_outdated(*account, password);
  return issue(*account);
}

void AuthService::rehash_if_outdated(const Account& account, const std::string& password) {
  // A hash of an older Argon2 cost verifies faster than the decoy of an unknown name (made at the
  // current cost), which would tell the name exists: it is redone at the current cost.
  if (!settings_.hasher.needs_rehash(account.password_hash)) return;
  try {
    const std::string hash = settings_.hasher.hash(password);
    update_account(account.id, [&](Account& a) {
      if (a.password_hash == account.password_hash) a.password_hash = hash;  // not a changed password
    });
  } catch (const std::exception&) {
    // Best effort (busy hash workers, a concurrent change, the store): the next sign-in tries again.
  }
}

IssuedSession AuthService::authenticate_device(const std::string& device_id, const std::string& address) {
  if (device_id.size() < 8 || device_id.size() > 128) {
    throw bad_device_id(device_id);
  }
  limit_rate("device sign-ins", address, settings_.device_sign_ins_per_address_per_minute,
             std::chrono::minutes(1), "device_sign_ins_per_address_per_minute");
  const std::string key = device_key(device_id);
  if (auto account = accounts_.by_device(key)) return issue(*account);
  // A device stored before devices were hashed: found by its plain id once, then stored hashed.
  if (!is_device_key(device_id)) {
    std::optional<Account> legacy = accounts_.by_device(device_id);
    if (legacy && legacy->device_ids.count(device_id) != 0) {
      return issue(update_account(legacy->id, [&](Account& a) {
        if (a.device_ids.erase(device_id) != 0) a.device_ids.insert(key);
      }));
    }
  }
  if (device_id.size() < 22) {
    throw bad_device_id(device_id);
  }
  limit_rate("new device accounts", address, settings_.device_accounts_per_address_per_hour,
             std::chrono::hours(1), "device_accounts_per_address_per_hour");
  Account account;
  account.id = random_token(12);
  account.device_ids.insert(key);
  account.created_unix_ms = now_();
  try {
    accounts_.create(account);
  } catch (const AuthError& e) {
    if (e.kind() != K::kAlreadyExists) throw;  // the same device signed in twice at once
  }
  std::optional<Account> created = accounts_.by_device(key);
  if (!created) throw AuthError(K::kNotFound, "the device's account was removed meanwhile; sign in again");
  return issue(*created);
}

IssuedSession AuthService::refresh(const std::string& refresh_token) {
  std::optional<RefreshRecord> record = sessions_.refresh(token_digest(refresh_token));
  if (!record) throw AuthError(K::kUnauthenticated, "unknown refresh token; sign in again");
  std::optional<Session> session = sessions_.session(record->session_id);
  if (!session || session->revoked)
    throw AuthError(K::kUnauthenticated, "the session was ended; sign in again");
  if (now_() >= session->expires_unix_ms)
    throw AuthError(K::kUnauthenticated, "the session expired; sign in again");
  auto reuse = [&] {
    revoke_session(*session);
    return AuthError(K::kUnauthenticated,
                     "this refresh token was already used: the session is revoked; sign in again");
  };
  if (record->spent) throw reuse();
  try {
    return issue_in(load(session->account_id), *session, &*record);
  } catch (const StaleWrite&) {
    throw reuse();  // spent by a concurrent refresh
  }
}

size_t AuthService::logout(const TokenClaims& caller, bool everywhere) {
  if (everywhere) return end_all_sessions(caller.subject);
  for (const Session& s : sessions_.of_account(caller.subject)) {
    if (s.revoked || s.id != caller.session_id) continue;
    revoke_session(s);
    return 1;
  }
  return 0;
}

size_t AuthService::end_all_sessions(const std::string& account_id) {
  size_t ended = 0;
  for (const Session& s : sessions_.of_account(account_id)) {
    if (s.revoked) continue;
    sessions_.revoke(s);
    ++ended;
  }
  // One revocation of the account's tokens, however many sessions it had: the gate keeps one entry.
  revoke_account_tokens(account_id);
  return ended;
}

size_t AuthService::purge_ended_sessions() {
  return sessions_.purge_ended(now_());
}

Account AuthService::load(const std::string& account_id) {
  std::optional<Account> account = accounts_.by_id(account_id);
  if (!account) throw AuthError(K::kNotFound, "no account " + account_id);
  return *account;
}

Account AuthService::account(const TokenClaims& caller) {
  return load(caller.subject);
}

Account AuthService::update_account(const std::string& account_id,
                                    const std::function<void(Account&)>& change) {
  for (int attempt = 0;; ++attempt) {
    const Account before = load(account_id);
    Account after = before;
    change(after);
    try {
      accounts_.update(before, after);
      return load(account_id);
    } catch (const StaleWrite&) {
      if (attempt == 3) throw AuthError(K::kAlreadyExists, "the account kept changing; try again");
    }
  }
}

Account AuthService::link_username(const TokenClaims& caller, const std::string& username,
                                   const std::string& password, const std::string& address) {
  check_username(username);
  check_password(password, username);
  // What makes the link fail is checked before the costly hash, and again in the update.
  const Account before = load(caller.subject);
  if (!before.username.empty())
    throw AuthError(K::kAlreadyExists, "the account already has the username '" + before.username + "'");
  // "Taken" tells that a username exists: asking costs a registration of the address, as in Register.
  if (settings_.hasher.limiter) settings_.hasher.limiter->check_not_full();
  limit_rate("registrations", address, settings_.registrations_per_address_per_hour, std::chrono::hours(1),
             "registrations_per_address_per_hour");
  if (accounts_.by_username(username))
    throw AuthError(K::kAlreadyExists, "the username '" + username + "' is taken");
  const std::string hash = settings_.hasher.hash(password);
  return update_account(caller.subject, [&](Account& a) {
    if (!a.username.empty())
      throw AuthError(K::kAlreadyExists, "the account already has the username '" + a.username + "'");
    a.username = username;
    a.password_hash = hash;
  });
}

Account AuthService::unlink_device(const TokenClaims& caller, const std::string& device_id) {
  return update_account(caller.subject, [&](Account& a) {
    // Stored by its key; a record from before devices were hashed may hold the plain id.
    std::string key = device_key(device_id);
    if (a.device_ids.count(key) == 0 && !is_device_key(device_id)) key = device_id;
    if (a.device_ids.count(key) == 0)
      throw AuthError(K::kNotFound, "the device is not linked to this account");
    if (a.username.empty() && a.device_ids.size() == 1) {
      throw AuthError(
          K::kInvalidArgument,
          "unlinking the last device would leave the account no way to sign in; link a username first");
    }
    a.device_ids.erase(key);
  });
}

IssuedSession AuthService::change_password(const TokenClaims& caller, const std::string& current,
                                           const std::string& next) {
  Account account = load(caller.subject);
  if (account.password_hash.empty()) {
    throw AuthError(K::kInvalidArgument, "the account has no password; link a username first");
  }
  if (!finish_attempt(begin_attempt(account.username, ""), &account.password_hash, current)) {
    throw AuthError(K::kUnauthenticated, "the current password is wrong");
  }
  check_password(next, account.username);
  const std::string hash = settings_.hasher.hash(next);
  account = update_account(account.id, [&](Account& a) { a.password_hash = hash; });
  end_all_sessions(account.id);
  return issue(account);
}

std::string AuthService::account_id_of(const std::string& username) {
  std::optional<Account> account = accounts_.by_username(username);
  if (!account) throw AuthError(K::kNotFound, "no account with the username '" + username + "'");
  return account->id;
}

Account AuthService::set_role(const TokenClaims& caller, const std::string& account_id,
                              const std::string& role, bool grant) {
  // The operator (the host's admin token) may; otherwise the caller's roles as stored now, not as
  // their token says: a demoted admin's token still names the role until it expires.
  const bool operator_caller =
      std::find(caller.roles.begin(), caller.roles.end(), kOperatorRole) != caller.roles.end();
  const std::optional<Account> stored_caller =
      operator_caller ? std::nullopt : accounts_.by_id(caller.subject);
  if (!operator_caller && (!stored_caller || stored_caller->roles.count("admin") == 0)) {
    throw AuthError(K::kPermissionDenied,
                    std::string(grant ? "granting" : "revoking") + " roles needs the admin role");
  }
  check_role(role);
  if (!grant && role == "admin" && account_id == caller.subject) {
    throw AuthError(K::kInvalidArgument, "an admin cannot revoke their own admin role");
  }
  Account changed = update_account(account_id, [&](Account& a) {
    if (grant) {
      a.roles.insert(role);
    } else {
      a.roles.erase(role);
    }
  });
  // Tokens that still name the revoked role are refused from now on; a refresh gives one with the
  // roles as they are.
  if (!grant) revoke_account_tokens(account_id);
  return changed;
}

}  // namespace gameverse::auth
