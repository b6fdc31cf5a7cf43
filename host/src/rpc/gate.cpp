#include "rpc/gate.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <gameverse/tokens.hpp>

#include <condition_variable>
#include <functional>

#include "gameverse/auth/v1/auth.pb.h"
#include "platform/pubsub.hpp"
#include "platform/service_calls.hpp"
#include "platform/store.hpp"

namespace gameverse::rpc {

Gate::Gate(const platform::Platform& platform, std::string keys_method)
    : platform_(platform),
      alive_(std::make_shared<Alive>()),
      keys_method_(std::move(keys_method)),
      keys_(std::make_shared<KeySet>()) {
  alive_->gate = this;
  if (platform_.pubsub != nullptr) {
    // Ended with cancel_all in the destructor.
    platform_.pubsub->subscribe(this, tokens::kRevocationTopic,
                                [this](const std::string&, const std::string& payload) { revoke(payload); });
    platform_.pubsub->set_active(this, true);
  }
}

Gate::~Gate() {
  if (platform_.pubsub != nullptr) platform_.pubsub->cancel_all(this, true);
  std::lock_guard lock(alive_->mu);
  alive_->gate = nullptr;
}

void Gate::set_operator_token(std::string token) {
  operator_token_ = std::move(token);
  auto caller = std::make_shared<Caller>();
  caller->user_id = std::string(config::kOperatorRole);
  caller->roles = {std::string(config::kOperatorRole)};
  caller->role_bytes = {{reinterpret_cast<const uint8_t*>(caller->roles[0].data()), caller->roles[0].size()}};
  operator_ = std::move(caller);
}

bool Gate::is_operator_token(std::string_view token) const {
  return !operator_token_.empty() && token.size() == operator_token_.size() &&
         CRYPTO_memcmp(token.data(), operator_token_.data(), token.size()) == 0;
}

size_t Gate::key_count() const {
  std::lock_guard lock(keys_mu_);
  return keys_->keys.size();
}

void Gate::revoke(const std::string& serialized) {
  gameverse::auth::v1::Revocation revocation;
  if (!revocation.ParseFromString(serialized) ||
      (revocation.session_id().empty() && revocation.account_id().empty())) {
    spdlog::warn("gate: a message on {} is not a Revocation; ignored", tokens::kRevocationTopic);
    return;
  }
  const int64_t now = platform::now_unix_ms();
  if (revocation.until_unix_ms() <= now) return;  // its tokens have all expired
  {
    std::lock_guard lock(revoked_.mu);
    if (revoked_.sessions.size() + revoked_.accounts.size() >= kMaxRevocations) {
      std::erase_if(revoked_.sessions, [now](const auto& entry) { return entry.second <= now; });
      std::erase_if(revoked_.accounts,
                    [now](const auto& entry) { return entry.second.until_unix_ms <= now; });
    }
    if (revoked_.sessions.size() + revoked_.accounts.size() >= kMaxRevocations) evict_soonest_locked();
    if (!revocation.session_id().empty()) {
      int64_t& until = revoked_.sessions[revocation.session_id()];
      until = std::max(until, revocation.until_unix_ms());
    }
    if (!revocation.account_id().empty()) {
      auto [it, added] = revoked_.accounts.try_emplace(
          revocation.account_id(),
          Revoked::Account{revocation.issued_before_unix_ms(), revocation.until_unix_ms()});
      if (!added) {
        it->second.issued_before_unix_ms =
            std::max(it->second.issued_before_unix_ms, revocation.issued_before_unix_ms());
        it->second.until_unix_ms = std::max(it->second.until_unix_ms, revocation.until_unix_ms());
      }
    }
  }
  // After the set holds it and the epoch moved on, no verification caches a matching token again:
  // drop those cached already.
  ++revocation_epoch_;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    std::erase_if(shard.tokens, [&](const auto& entry) {
      const Caller& caller = *entry.second.caller;
      return revoked(caller.session_id, caller.user_id, entry.second.issued_unix_ms).has_value();
    });
  }
}

// Full of revocations still in force: the tenth that ends soonest goes, so that the newest (the
// one an operator just made after an incident) always takes effect. The tokens of those evicted
// last until they expire, which is at most the time those revocations had left.
void Gate::evict_soonest_locked() {
  std::vector<int64_t> ends;
  ends.reserve(revoked_.sessions.size() + revoked_.accounts.size());
  for (const auto& [id, until] : revoked_.sessions) ends.push_back(until);
  for (const auto& [id, account] : revoked_.accounts) ends.push_back(account.until_unix_ms);
  auto cut = ends.begin() + static_cast<std::ptrdiff_t>(ends.size() / 10);
  std::nth_element(ends.begin(), cut, ends.end());
  const int64_t below = *cut;
  std::erase_if(revoked_.sessions, [below](const auto& entry) { return entry.second < below; });
  std::erase_if(revoked_.accounts, [below](const auto& entry) { return entry.second.until_unix_ms < below; });
  if (revoked_.sessions.size() + revoked_.accounts.size() >= kMaxRevocations) {
    // All end at the same time: drop any tenth.
    for (size_t n = kMaxRevocations / 10; n > 0 && !revoked_.sessions.empty(); --n)
      revoked_.sessions.erase(revoked_.sessions.begin());
  }
  spdlog::warn(
      "gate: {} revocations were kept; those ending before {} ms are dropped, so their tokens last "
      "until they expire",
      kMaxRevocations, below);
}

std::optional<std::string> Gate::revoked(const std::string& session_id, const std::string& user_id,
                                         int64_t issued_unix_ms) {
  const int64_t now = platform::now_unix_ms();
  std::lock_guard lock(revoked_.mu);
  if (!session_id.empty()) {
    auto it = revoked_.sessions.find(session_id);
    if (it != revoked_.sessions.end() && now < it->second) return "the session was ended; sign in again";
  }
  auto it = revoked_.accounts.find(user_id);
  // "iat" has whole seconds: a token of the same second as the change counts as before it.
  if (it != revoked_.accounts.end() && now < it->second.until_unix_ms &&
      issued_unix_ms <= it->second.issued_before_unix_ms) {
    return "the account's tokens were revoked (its roles or password changed, or it signed out everywhere); "
           "refresh or sign in again";
  }
  return std::nullopt;
}

void Gate::store_keys(const std::string& serialized) {
  gameverse::auth::v1::VerificationKeys message;
  if (!message.ParseFromString(serialized)) {
    spdlog::error("gate: {} answered with bytes that are not VerificationKeys", keys_method_);
    return;
  }
  auto keys = std::make_shared<KeySet>();
  if (!message.issuer().empty()) keys->validation.issuer = message.issuer();
  if (!message.audience().empty()) keys->validation.audience = message.audience();
  if (message.has_clock_skew_ms()) keys->validation.clock_skew_ms = message.clock_skew_ms();
  for (const auto& k : message.keys()) {
    if (k.algorithm() != "EdDSA" || k.public_key().size() != crypto_sign_PUBLICKEYBYTES) {
      spdlog::warn("gate: skipping verification key '{}': algorithm '{}', {} bytes",
                   tokens::printable(k.kid()), tokens::printable(k.algorithm()), k.public_key().size());
      continue;
    }
    keys->keys.push_back({k.kid(), k.public_key()});
  }
  bool dropped = false;
  {
    std::lock_guard lock(keys_mu_);
    for (const tokens::VerifyKey& old : keys_->keys) {
      dropped |= std::none_of(keys->keys.begin(), keys->keys.end(),
                              [&](const tokens::VerifyKey& k) { return k.kid == old.kid; });
    }
    dropped |= keys->validation.issuer != keys_->validation.issuer ||
               keys->validation.audience != keys_->validation.audience ||
               keys->validation.clock_skew_ms != keys_->validation.clock_skew_ms;
    keys_ = std::move(keys);
  }
  if (dropped) forget_tokens();  // a retired key no longer vouches for the tokens it signed
}

void Gate::forget_tokens() {
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    shard.tokens.clear();
  }
}

bool Gate::refresh_keys(std::chrono::milliseconds timeout) {
  return fetch_keys(timeout, true);
}

// Without waiting: the answer arrives on the key source's thread.
void Gate::refresh_keys_soon() {
  fetch_keys(std::chrono::seconds(2), false);
}

bool Gate::fetch_keys(std::chrono::milliseconds timeout, bool wait_for_answer) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool ok = false;
    std::shared_ptr<Alive> alive;
  };
  auto wait = std::make_shared<Wait>();
  wait->alive = alive_;
  ++fetches_in_flight_;
  last_key_fetch_ms_ = platform::now_unix_ms();
  // The context outlives a timed-out wait: the callback holds its own reference.
  auto* context = new std::shared_ptr<Wait>(wait);
  platform::call_unary(
      platform_, "host", nullptr, keys_method_, "", static_cast<uint64_t>(timeout.count()),
      [](void* ctx, gv_status_code code, gv_bytes message, gv_bytes response) {
        std::unique_ptr<std::shared_ptr<Wait>> owned(static_cast<std::shared_ptr<Wait>*>(ctx));
        Wait& w = **owned;
        if (code == GV_STATUS_OK) {
          std::lock_guard alive(w.alive->mu);
          if (w.alive->gate != nullptr) {
            w.alive->gate->store_keys(
                std::string(reinterpret_cast<const char*>(response.data), response.size));
          }
        } else if (code != GV_STATUS_UNIMPLEMENTED) {
          spdlog::warn("gate: fetching verification keys failed: {}",
                       std::string_view(reinterpret_cast<const char*>(message.data), message.size));
        }
        {
          std::lock_guard alive(w.alive->mu);
          if (w.alive->gate != nullptr) --w.alive->gate->fetches_in_flight_;
        }
        std::lock_guard lock(w.mu);
        w.done = true;
        w.ok = code == GV_STATUS_OK;
        w.cv.notify_all();
      },
      context);
  if (!wait_for_answer) return true;
  std::unique_lock lock(wait->mu);
  wait->cv.wait_for(lock, timeout, [&] { return wait->done; });
  return wait->ok;
}

std::optional<grpc::Status> Gate::verify(std::string_view token, std::shared_ptr<const Caller>& caller) {
  const int64_t now = platform::now_unix_ms();
  // Fetched again now and then: a key the auth plugin stopped publishing (retired, or replaced by
  // a configured one on another host) stops vouching within that time, cached tokens included.
  if (int64_t last = last_key_fetch_ms_.load(std::memory_order_relaxed);
      now - last >= kKeyRefreshMs && last_key_fetch_ms_.compare_exchange_strong(last, now)) {
    refresh_keys_soon();
  }
  Shard& shard = shards_[TokenHash()(token) % kShards];
  {
    std::lock_guard lock(shard.mu);
    auto it = shard.tokens.find(token);
    if (it != shard.tokens.end()) {
      if (now < it->second.expires_unix_ms) {
        caller = it->second.caller;
        return std::nullopt;
      }
      shard.tokens.erase(it);
    }
  }
  const uint64_t epoch = revocation_epoch_.load();
  std::shared_ptr<const KeySet> keys;
  {
    std::lock_guard lock(keys_mu_);
    keys = keys_;
  }
  auto refused = [](const std::string& why) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "the access token was refused: " + why);
  };
  tokens::Claims claims;
  try {
    claims = tokens::verify(token, keys->keys, now, keys->validation);
  } catch (const tokens::TokenError& e) {
    if (e.kind != tokens::TokenError::Kind::kUnknownKey) return refused(e.what());
    // A key this host has not fetched yet (a rotation, or the auth plugin started after the
    // host): fetched in the background, at most once a second, so that no completion-queue thread
    // waits for it; the caller retries.
    int64_t last = last_unknown_key_fetch_ms_.load();
    if (now - last >= 1000 && last_unknown_key_fetch_ms_.compare_exchange_strong(last, now))
      refresh_keys_soon();
    if (fetches_in_flight_.load() > 0) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "verification keys are being refreshed; retry");
    }
    if (keys->keys.empty()) {
      return refused("the host cannot verify access tokens: no plugin serves " + keys_method_);
    }
    return refused(e.what());
  }
  if (auto why = revoked(claims.session_id, claims.subject, claims.issued_unix_ms)) return refused(*why);
  auto verified = std::make_shared<Caller>();
  verified->user_id = claims.subject;
  verified->session_id = claims.session_id;
  verified->roles = claims.roles;
  std::erase(verified->roles, config::kOperatorRole);  // only the [admin] token makes the operator
  for (const auto& role : verified->roles) {
    verified->role_bytes.push_back({reinterpret_cast<const uint8_t*>(role.data()), role.size()});
  }
  caller = verified;
  std::lock_guard lock(shard.mu);
  if (revocation_epoch_.load() != epoch) return std::nullopt;  // checked against an older revocation set
  if (shard.tokens.size() >= kTokensPerShard) {
    std::erase_if(shard.tokens, [now](const auto& entry) { return entry.second.expires_unix_ms <= now; });
    if (shard.tokens.size() >= kTokensPerShard) shard.tokens.clear();
  }
  shard.tokens.emplace(std::string(token),
                       Verified{std::move(verified), claims.expires_unix_ms, claims.issued_unix_ms});
  return std::nullopt;
}

Gate::Decision Gate::check(const std::string& method, const config::AccessPolicy& policy,
                           std::string_view authorization) {
  Decision decision;
  std::string_view token;
  if (authorization.size() > 7 &&
      (authorization.rfind("Bearer ", 0) == 0 || authorization.rfind("bearer ", 0) == 0)) {
    token = authorization.substr(7);
  }
  if (is_operator_token(token)) {
    decision.caller = operator_;  // whom every policy lets through: see AccessPolicy::refusal
    token = {};                   // not an access token: nothing below verifies it
  }
  if (policy.kind == config::AccessPolicy::Kind::kPublic) {
    if (!token.empty() && verify(token, decision.caller)) decision.caller.reset();  // a bad token: anonymous
    return decision;
  }
  if (!token.empty()) {
    if (auto refusal = verify(token, decision.caller)) {
      decision.refusal = std::move(refusal);
      return decision;
    }
  }
  if (auto refusal = policy.refusal(method, decision.caller ? &decision.caller->roles : nullptr)) {
    if (refusal->kind == config::AccessRefusal::Kind::kUnauthenticated) {
      decision.refusal =
          grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                       refusal->message + ": send the metadata authorization: Bearer <access token>");
    } else {
      decision.refusal = grpc::Status(grpc::StatusCode::PERMISSION_DENIED, refusal->message);
    }
  }
  return decision;
}

}  // namespace gameverse::rpc
