// How the hosts of a cluster prove themselves to each other with the [cluster] secret, which never
// goes on the wire itself: every forwarded call carries an HMAC-SHA256 keyed by the secret over
// what it claims (method, deadline, caller, origin, request id, sending host, time, nonce), and
// every registry entry carries one over (cluster, service, address). A secret of any bytes is safe:
// only hex goes into metadata and Redis.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace gameverse::platform {

// Metadata of a forwarded call that only hosts send. Plugins never see any gameverse-cluster-* key.
inline constexpr const char* kClusterPrefix = "gameverse-cluster-";
inline constexpr const char* kClusterMacKey = "gameverse-cluster-mac";            // hex HMAC-SHA256
inline constexpr const char* kClusterHostKey = "gameverse-cluster-host";          // the sending host
inline constexpr const char* kClusterTimeKey = "gameverse-cluster-time";          // Unix ms when signed
inline constexpr const char* kClusterNonceKey = "gameverse-cluster-nonce";        // hex, once per call
inline constexpr const char* kClusterDeadlineKey = "gameverse-cluster-deadline";  // Unix ms, or "none"

// A signed call is accepted this far from the receiver's clock, and its nonce only once.
inline constexpr int64_t kClusterClockSkewMs = 30'000;

// What a forwarded call's MAC covers.
struct SignedCall {
  std::string method;
  std::string deadline;  // Unix ms, or "none"
  std::string origin;    // origin_wire_name()
  std::string user;
  std::string session;
  std::vector<std::string> roles;
  std::string peer;
  std::string request_id;
  std::string host;
  std::string time;  // Unix ms
  std::string nonce;
};

// Hex HMAC-SHA256 of `call` keyed by `secret`; every field is length-prefixed, so none can run
// into the next.
std::string call_mac(std::string_view secret, const SignedCall& call);

// Constant-time comparison of two MACs.
bool same_mac(std::string_view a, std::string_view b);

// 16 random bytes, hex.
std::string new_nonce();

// The member a host stores in the registry for `address`: "address#mac".
std::string registry_member(std::string_view secret, std::string_view cluster, std::string_view service,
                            std::string_view address);
// The address a registry member names, when its MAC verifies; nullopt for anything else.
std::optional<std::string> registry_address(std::string_view secret, std::string_view cluster,
                                            std::string_view service, std::string_view member);

// Nonces of signed calls seen within the clock window, so that a call's headers cannot be sent
// again. Bounded: when full of nonces still in their window, new calls are refused.
class NonceCache {
 public:
  explicit NonceCache(size_t capacity = 262'144) : capacity_(capacity) {}
  enum class Result { kFresh, kReplayed, kFull };
  Result admit(const std::string& nonce, int64_t now_ms);

 private:
  size_t capacity_;
  std::mutex mu_;
  std::unordered_set<std::string> seen_;
  std::deque<std::pair<int64_t, std::string>> order_;  // (forget after, nonce), oldest first
};

}  // namespace gameverse::platform
