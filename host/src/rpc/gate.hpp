// The host's gate: before a call reaches a plugin, its method's access policy is checked against
// the caller's access token ("authorization: Bearer <JWT>"), and the caller becomes the call's
// principal. Tokens are verified here, with the public keys the auth plugin publishes (fetched
// in process from its GetVerificationKeys method, with the issuer and audience tokens must
// carry), and remembered until they expire or the auth plugin announces their revocation on the
// pub/sub topic tokens::kRevocationTopic.
#pragma once

#include <grpcpp/support/status.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gameverse/abi.h>
#include <gameverse/tokens.hpp>

#include "config/access.hpp"
#include "platform/platform.hpp"

namespace gameverse::rpc {

struct Caller {
  std::string user_id;  // empty: anonymous
  std::string session_id;
  std::vector<std::string> roles;
  std::vector<gv_bytes> role_bytes;  // `roles` as the ABI hands them to plugins
};

class Gate {
 public:
  static constexpr const char* kDefaultKeysMethod = "/gameverse.auth.v1.Auth/GetVerificationKeys";

  // Revocations kept at most (sessions and accounts together); past it a new one is dropped with a
  // warning and its tokens stay valid until they expire.
  static constexpr size_t kMaxRevocations = 100'000;
  // How often the keys are fetched again while tokens arrive.
  static constexpr int64_t kKeyRefreshMs = 60'000;

  Gate(const platform::Platform& platform, std::string keys_method = kDefaultKeysMethod);
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  struct Decision {
    std::optional<grpc::Status> refusal;   // set: end the call with it
    std::shared_ptr<const Caller> caller;  // null: anonymous; shared by every call with the token
  };
  // `authorization`: the call's authorization metadata (empty when it has none). A public method
  // lets everyone through (a valid token still names the caller); the others need a token that
  // verifies, and a role policy the role.
  Decision check(const std::string& method, const config::AccessPolicy& policy,
                 std::string_view authorization);

  // The [admin] token: a caller presenting it as its bearer token is the host's operator (user
  // "operator", role "operator"), whom every policy lets through. Empty: nobody is. Set it before
  // the server starts.
  void set_operator_token(std::string token);

  // Fetches the verification keys now and waits up to `timeout` for them; false when no plugin
  // serves the keys method or it failed (the message is logged).
  bool refresh_keys(std::chrono::milliseconds timeout = std::chrono::seconds(2));
  // The same without waiting, for when the key source was (re)loaded.
  void refresh_keys_soon();
  size_t key_count() const;
  // A gameverse.auth.v1.Revocation, as the pub/sub topic carries it.
  void revoke(const std::string& serialized_revocation);

 private:
  struct Verified {
    std::shared_ptr<const Caller> caller;
    int64_t expires_unix_ms;
    int64_t issued_unix_ms;
  };
  // The keys and what tokens must say of their issuer and audience, replaced together.
  struct KeySet {
    std::vector<tokens::VerifyKey> keys;
    tokens::Validation validation;
  };
  struct Revoked {
    std::mutex mu;
    std::unordered_map<std::string, int64_t> sessions;  // session id → until
    struct Account {
      int64_t issued_before_unix_ms;
      int64_t until_unix_ms;
    };
    std::unordered_map<std::string, Account> accounts;
  };
  struct TokenHash {
    using is_transparent = void;
    size_t operator()(std::string_view token) const { return std::hash<std::string_view>()(token); }
  };
  // Verified tokens, sharded to keep the lock per lookup short; looked up without a copy.
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Verified, TokenHash, std::equal_to<>> tokens;
  };
  static constexpr size_t kShards = 16;
  static constexpr size_t kTokensPerShard = 4096;

  // The caller of a token, or the status it is refused with.
  std::optional<grpc::Status> verify(std::string_view token, std::shared_ptr<const Caller>& caller);
  // Why tokens with these claims are revoked; nullopt when they are not.
  void evict_soonest_locked();  // with revoked_.mu held
  std::optional<std::string> revoked(const std::string& session_id, const std::string& user_id,
                                     int64_t issued_unix_ms);
  bool fetch_keys(std::chrono::milliseconds timeout, bool wait_for_answer);
  void store_keys(const std::string& serialized);
  void forget_tokens();

  // Key fetches answer on other threads, possibly after a timed-out wait: they reach the gate
  // through this, which the destructor clears.
  struct Alive {
    std::mutex mu;
    Gate* gate;
  };

  bool is_operator_token(std::string_view token) const;

  const platform::Platform& platform_;
  std::shared_ptr<Alive> alive_;
  std::string operator_token_;
  std::shared_ptr<const Caller> operator_;
  std::string keys_method_;
  mutable std::mutex keys_mu_;
  std::shared_ptr<const KeySet> keys_;
  std::atomic<int64_t> last_unknown_key_fetch_ms_{0};
  std::atomic<int64_t> last_key_fetch_ms_{0};
  std::atomic<int> fetches_in_flight_{0};
  std::array<Shard, kShards> shards_;
  Revoked revoked_;
  // Bumped by every revocation: a verification that began before one does not cache its token.
  std::atomic<uint64_t> revocation_epoch_{0};
};

}  // namespace gameverse::rpc
