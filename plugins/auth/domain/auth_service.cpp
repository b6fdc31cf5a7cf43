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

}  // namespace

AuthService::AuthService(AuthSettings settings, Accounts& accounts, Sessions& sessions, SigningKeys& keys,
                         Counters& counters, Clock now)
    : settings_(std::move(settings)),
      accounts_(accounts),
      sessions_(sessions),
      keys_(keys),
      counters_(counters),
      now_(std::move(now)),
      configured_kid_(settings_.signing_key_seed.empty()
                          ? ""
                          : signing_key_from_seed(settings_.signing_key_seed, 0).kid) {}

int64_t AuthService::key_not_after(const SigningKey& key) const {
  // The configured key signs and verifies until it is replaced; a configured key that no longer
  // is (replaced after a leak, or the config emptied) is retired at once: it neither verifies nor
  // is published, and sessions go on through their (unsigned) refresh tokens.
  if (key.kid.rfind("config-", 0) == 0) return key.kid == configured_kid_ ? INT64_MAX : 0;
  return key.created_unix_ms + ms(settings_.key_rotation) + ms(settings_.access_ttl);
}

const SigningKey& AuthService::current_key() {
  std::lock_guard lock(keys_mu_);
  const int64_t now = now_();
  if (key_cache_.empty()) key_cache_ = keys_.all();
  if (!settings_.signing_key_seed.empty()) {
    const SigningKey configured = signing_key_from_seed(settings_.signing_key_seed, now);
    auto it = std::find_if(key_cache_.begin(), key_cache_.end(),
                           [&](const SigningKey& k) { return k.kid == configured.kid; });
    if (it == key_cache_.end()) {
      keys_.add(configured);
      key_cache_.push_back(configured);
      return key_cache_.back();
    }
    return *it;
  }
  auto newest = std::max_element(
      key_cache_.begin(), key_cache_.end(),
      [](const SigningKey& a, const SigningKey& b) { return a.created_unix_ms < b.created_unix_ms; });
  if (newest != key_cache_.end() && newest->kid.rfind("config-", 0) != 0 &&
      now - newest->created_unix_ms < ms(settings_.key_rotation)) {
    return *newest;
  }
  // First start, or time to rotate: older keys keep verifying until their tokens have expired.
  SigningKey fresh = generate_signing_key(now);
  keys_.add(fresh);
  key_cache_.push_back(std::move(fresh));
  return key_cache_.back();
}

std::vector<VerifyKey> AuthService::verification_keys() {
  current_key();  // makes sure there is one
  std::lock_guard lock(keys_mu_);
  const int64_t now = now_();
  std::vector<VerifyKey> keys;
  for (const SigningKey& k : key_cache_) {
    if (key_not_after(k) > now) keys.push_back({k.kid, k.public_key});
  }
  return keys;
}

TokenClaims AuthService::authenticate(std::string_view access_token) {
  try {
    return verify_token(access_token, verification_keys(), now_());
  } catch (const AuthError& e) {
    if (std::string_view(e.what()).find("unknown key") == std::string_view::npos) throw;
    // Another host may have rotated to a key this one has not read yet.
    {
      std::lock_guard lock(keys_mu_);
      key_cache_ = keys_.all();
    }
    return verify_token(access_token, verification_keys(), now_());
  }
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
  issued.access_token = sign_token(current_key(), claims);
  issued.access_expires_unix_ms = claims.expires_unix_ms / 1000 * 1000;
  issued.refresh_expires_unix_ms = session.expires_unix_ms;
  issued.account = account;
  return issued;
}

IssuedSession AuthService::register_account(const std::string& username, const std::string& password) {
  check_username(username);
  check_password(password, username);
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

void AuthService::check_not_locked(const std::string& account_id, const std::string& address) {
  const int64_t now = now_();
  for (const auto& [key, what] : {std::pair{"lock:account:" + account_id, "the account"},
                                  std::pair{"lock:address:" + address, "this address"}}) {
    if (key.back() == ':') continue;
    if (auto until = counters_.get(key)) {
      const int64_t left = std::stoll(*until) - now;
      if (left > 0) {
        throw AuthError(K::kLocked,
                        std::string("too many failed logins: ") + what + " is locked for another " +
                            std::to_string((left + 999) / 1000) + " s",
                        left);
      }
    }
  }
}

void AuthService::count_failure(const std::string& account_id, const std::string& address) {
  const int64_t until = now_() + ms(settings_.lockout);
  if (!account_id.empty() && counters_.increment("fail:account:" + account_id, settings_.failure_window) >=
                                 settings_.max_failures_per_account) {
    counters_.set("lock:account:" + account_id, std::to_string(until), settings_.lockout);
    counters_.erase("fail:account:" + account_id);
  }
  if (!address.empty() && counters_.increment("fail:address:" + address, settings_.failure_window) >=
                              settings_.max_failures_per_address) {
    counters_.set("lock:address:" + address, std::to_string(until), settings_.lockout);
    counters_.erase("fail:address:" + address);
  }
}

IssuedSession AuthService::login(const std::string& username, const std::string& password,
                                 const std::string& address) {
  std::optional<Account> account = accounts_.by_username(username);
  check_not_locked(account ? account->id : "", address);
  const bool ok = account && !account->password_hash.empty()
                      ? settings_.hasher.verify(account->password_hash, password)
                      : (settings_.hasher.verify(decoy_hash(settings_.hasher), password), false);
  if (!ok) {
    count_failure(account ? account->id : "", address);
    throw AuthError(K::kUnauthenticated, "wrong username or password");
  }
  counters_.erase("fail:account:" + account->id);
  return issue(*account);
}

IssuedSession AuthService::authenticate_device(const std::string& device_id) {
  if (device_id.size() < 8 || device_id.size() > 128) {
    throw AuthError(K::kInvalidArgument,
                    "a device id has 8 to 128 characters; this one has " + std::to_string(device_id.size()));
  }
  if (auto account = accounts_.by_device(device_id)) return issue(*account);
  Account account;
  account.id = random_token(12);
  account.device_ids.insert(device_id);
  account.created_unix_ms = now_();
  try {
    accounts_.create(account);
  } catch (const AuthError& e) {
    if (e.kind() != K::kAlreadyExists) throw;  // the same device signed in twice at once
  }
  return issue(*accounts_.by_device(device_id));
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
    sessions_.revoke(*session);
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
  size_t ended = 0;
  for (const Session& s : sessions_.of_account(caller.subject)) {
    if (s.revoked || (!everywhere && s.id != caller.session_id)) continue;
    sessions_.revoke(s);
    ++ended;
  }
  return ended;
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
                                   const std::string& password) {
  check_username(username);
  check_password(password, username);
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
    if (a.device_ids.count(device_id) == 0)
      throw AuthError(K::kNotFound, "the device is not linked to this account");
    if (a.username.empty() && a.device_ids.size() == 1) {
      throw AuthError(
          K::kInvalidArgument,
          "unlinking the last device would leave the account no way to sign in; link a username first");
    }
    a.device_ids.erase(device_id);
  });
}

IssuedSession AuthService::change_password(const TokenClaims& caller, const std::string& current,
                                           const std::string& next) {
  Account account = load(caller.subject);
  if (account.password_hash.empty()) {
    throw AuthError(K::kInvalidArgument, "the account has no password; link a username first");
  }
  check_not_locked(account.id, "");
  if (!settings_.hasher.verify(account.password_hash, current)) {
    count_failure(account.id, "");
    throw AuthError(K::kUnauthenticated, "the current password is wrong");
  }
  check_password(next, account.username);
  const std::string hash = settings_.hasher.hash(next);
  account = update_account(account.id, [&](Account& a) { a.password_hash = hash; });
  for (const Session& s : sessions_.of_account(account.id)) {
    if (!s.revoked) sessions_.revoke(s);
  }
  return issue(account);
}

std::string AuthService::account_id_of(const std::string& username) {
  std::optional<Account> account = accounts_.by_username(username);
  if (!account) throw AuthError(K::kNotFound, "no account with the username '" + username + "'");
  return account->id;
}

Account AuthService::set_role(const TokenClaims& caller, const std::string& account_id,
                              const std::string& role, bool grant) {
  if (std::find(caller.roles.begin(), caller.roles.end(), "admin") == caller.roles.end() &&
      std::find(caller.roles.begin(), caller.roles.end(), kOperatorRole) == caller.roles.end()) {
    throw AuthError(K::kPermissionDenied,
                    std::string(grant ? "granting" : "revoking") + " roles needs the admin role");
  }
  check_role(role);
  if (!grant && role == "admin" && account_id == caller.subject) {
    throw AuthError(K::kInvalidArgument, "an admin cannot revoke their own admin role");
  }
  return update_account(account_id, [&](Account& a) {
    if (grant) {
      a.roles.insert(role);
    } else {
      a.roles.erase(role);
    }
  });
}

}  // namespace gameverse::auth
