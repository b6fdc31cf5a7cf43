// How the hosts of a cluster prove themselves to each other with the [cluster] secret, which never
// goes on the wire itself: every forwarded call carries an HMAC-SHA256 keyed by the secret over
// what it claims (method, deadline, caller, origin, request id, sending host, time, nonce), and
// every registry entry carries one over (cluster, service, address). A secret of any bytes is safe:
// only hex goes into metadata and Redis.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gameverse::platform {

// Metadata of a forwarded call that only hosts send. Plugins never see any gameverse-cluster-* key.
inline constexpr const char* kClusterPrefix = "gameverse-cluster-";
inline constexpr const char* kClusterMacKey = "gameverse-cluster-mac";            // hex HMAC-SHA256
inline constexpr const char* kClusterHostKey = "gameverse-cluster-host";          // the sending host
inline constexpr const char* kClusterTimeKey = "gameverse-cluster-time";          // Unix ms when signed
inline constexpr const char* kClusterNonceKey = "gameverse-cluster-nonce";        // "<boot id>.<counter>"
inline constexpr const char* kClusterDeadlineKey = "gameverse-cluster-deadline";  // Unix ms, or "none"

// A signed call is accepted this far from the receiver's clock, and its nonce only once.
inline constexpr int64_t kClusterClockSkewMs = 30'000;
// How far behind the highest counter a sender has sent a call may still arrive (calls overtake
// each other on the way): more than [cluster] max_pending_calls (10,000 by default) times the
// tries a call may take.
inline constexpr uint64_t kClusterReplayWindow = 65'536;
// The most [cluster] max_pending_calls may be: its calls, each tried up to three times, stay
// within the window (remote_calls.cpp checks it against its number of tries).
inline constexpr int64_t kClusterMaxPendingCalls = 20'000;

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

// The nonces one sending host signs its calls with: "<boot id>.<counter>", where the boot id is 16
// random bytes (hex) made when the object is, and the counter counts up from 1. Thread-safe.
class CallSequence {
 public:
  CallSequence();
  std::string next();
  const std::string& boot_id() const { return boot_id_; }

 private:
  std::string boot_id_;
  std::atomic<uint64_t> counter_{0};
};

// The member a host stores in the registry for `address`: "address#mac".
std::string registry_member(std::string_view secret, std::string_view cluster, std::string_view service,
                            std::string_view address);
// The address a registry member names, when its MAC verifies; nullopt for anything else.
std::optional<std::string> registry_address(std::string_view secret, std::string_view cluster,
                                            std::string_view service, std::string_view member);

// The counters each sender (sending host and boot id) signed its calls with, so that a call's
// headers cannot be sent again: per sender, the highest counter seen and which of the
// kClusterReplayWindow counters below it came. A counter is accepted once, and never below the
// window. No cap on calls per second; the senders are bounded: only calls whose MAC verified get
// here, and a sender is forgotten only after 2 * kClusterClockSkewMs without a call, when every
// call it signed is refused by its time anyway. Full of senders seen more recently, a new sender's
// calls are refused.
class ReplayGuard {
 public:
  explicit ReplayGuard(size_t max_senders = 1024) : max_senders_(max_senders) {}
  // Empty when the call with `nonce` from `host` is new; otherwise why it is refused.
  std::string admit(std::string_view host, std::string_view nonce, int64_t now_ms);
  size_t senders() const;

 private:
  struct Sender {
    uint64_t highest = 0;
    int64_t last_seen_ms = 0;
    std::vector<uint64_t> seen;  // bit (counter % kClusterReplayWindow)
  };
  size_t max_senders_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Sender> senders_;  // by "<host> <boot id>"
};

}  // namespace gameverse::platform
