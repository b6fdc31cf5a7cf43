// Calls to services this host does not serve, forwarded over gRPC to a host that does (README
// "Services across hosts"). Where a service is served comes from the config's [[remote]] list and
// from the registry other hosts announce in (platform/service_registry.hpp). One channel per
// address, reused; the least busy healthy address takes each call; an address that stops
// answering is skipped, with a growing backoff, until it connects again.
#pragma once

#include <gameverse/abi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "platform/cluster_auth.hpp"
#include "platform/service_calls.hpp"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace gameverse::platform {

// Metadata a host puts on a call it forwards. The receiving host believes the forwarded-* keys
// only beside a valid gameverse-cluster-mac (platform/cluster_auth.hpp); a call that carries any of
// them without one is refused, so a client cannot pose as a host.
inline constexpr const char* kForwardedPrefix = "gameverse-forwarded-";
inline constexpr const char* kForwardedOriginKey =
    "gameverse-forwarded-origin";  // "for-caller" | "plugin" | "client"
inline constexpr const char* kForwardedUserKey = "gameverse-forwarded-user-bin";
inline constexpr const char* kForwardedSessionKey = "gameverse-forwarded-session-bin";
inline constexpr const char* kForwardedRoleKey = "gameverse-forwarded-role-bin";  // one per role
inline constexpr const char* kForwardedCallerPeerKey = "gameverse-forwarded-peer";
// Metadata a host sends back on every forwarded call it accepted, in the initial metadata as soon as
// it verified the call (before the plugin runs) and in the trailers: a failed call with it in
// neither never reached a host (a connection that failed), so the address is skipped and the call
// may go to another; a call that has it is never sent again, even when its connection broke.
inline constexpr const char* kServedByClusterKey = "gameverse-cluster-served";
// Trailing metadata of a forwarded call a host answered UNIMPLEMENTED because no plugin of its own
// serves the method (it was unloaded there since the registry was read): no plugin code ran, so
// the call may go to another host. A plugin's own UNIMPLEMENTED carries no such trailer.
inline constexpr const char* kNotServedHereKey = "gameverse-cluster-not-served";
// What a plugin reads (call metadata) on a call another host forwarded: that host's address, as it
// signed it. The peer stays the original caller's (its per-address limits hold across hosts).
inline constexpr const char* kForwardedByKey = "gameverse-forwarded-by";

// The forwarded origin's wire name and back; 0 for a name that is none.
std::string_view origin_wire_name(gv_call_origin origin);
gv_call_origin origin_from_wire_name(std::string_view name);

// "/pkg.Service/Method" → "pkg.Service"; empty when the method has no such form.
std::string_view service_of(std::string_view method);

struct RemoteOptions {
  std::string secret;        // [cluster] secret
  std::string ca_pem;        // empty: plaintext channels
  std::string self_address;  // this host's advertised address: never a target
  size_t max_pending_calls = 10'000;
  size_t max_channels = 256;
  std::chrono::milliseconds eject_base{1000};
  std::chrono::milliseconds eject_max{30'000};
  std::chrono::milliseconds call_timeout{30'000};  // [cluster] call_timeout_ms: for calls with no deadline
  std::map<std::string, std::vector<std::string>> static_services;  // [[remote]]

  // With ca_pem: the client certificate (and its key) presented to other hosts; empty: none.
  std::string cert_pem;
  std::string key_pem;
};

// What a service resolves to now, for gvctl remotes.
struct RemoteEndpointView {
  std::string address;
  std::string source;  // "static" | "registry"
  std::string state;   // "ready" | "idle" | "connecting" | "failing" | "ejected" | "none"
  int64_t ejected_for_ms = 0;
  int64_t lease_left_ms = 0;  // registry entries: until the announcement lapses
  uint64_t outstanding = 0;
  uint64_t calls = 0;
  uint64_t failures = 0;
};
struct RemoteServiceView {
  std::string service;
  std::vector<RemoteEndpointView> endpoints;
};

class RemoteCalls {
 public:
  explicit RemoteCalls(RemoteOptions options);
  ~RemoteCalls();  // cancels the calls in flight and waits until their callers heard
  RemoteCalls(const RemoteCalls&) = delete;
  RemoteCalls& operator=(const RemoteCalls&) = delete;

  // What the registry found: service → (address, until when its lease holds).
  using Discovered =
      std::map<std::string, std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>>>;
  void set_discovered(Discovered discovered);
  // This host's own address, never a target (a registry may still list it for a moment).
  void set_self_address(std::string address);
  std::string self_address() const;
  // A new [[remote]] list (a config reload): calls from now on resolve through it; calls in flight
  // finish where they are. Idle connections to addresses no list names any more are closed. False
  // when the list is the one in use.
  bool set_static_services(std::map<std::string, std::vector<std::string>> services);

  // Forwards a unary call to a host that serves the method's service. `origin` is the caller
  // (identified already), `kind` how it calls (GV_CALL_ORIGIN_*). `parent_ended`, when set, ends
  // the call as cancelled once it turns true. `done` runs exactly once, on some thread, possibly
  // before this returns: UNAVAILABLE naming the service when no host serves it or none answers.
  // Returns a function that cancels the call (nothing once it ended).
  using Done = std::function<void(gv_status_code code, std::string_view message, std::string_view reply)>;
  // `owner`: the plugin generation `done` belongs to (see cancel_owned); null: the host.
  std::function<void()> forward(const std::string& method, std::string request, const CallOrigin& origin,
                                gv_call_origin kind, std::shared_ptr<const std::atomic<bool>> parent_ended,
                                Done done, const void* owner = nullptr);

  // Cancels the calls `owner` forwarded and waits, until `until`, for their done callbacks to
  // return: a plugin generation's code must not run after it is unloaded. False when some are
  // still pending at `until`.
  bool cancel_owned(const void* owner, std::chrono::steady_clock::time_point until);

  // Cancels every call in flight and waits until they ended; calls forwarded later fail at once.
  void stop();

  std::vector<RemoteServiceView> snapshot() const;
  size_t pending() const;

 private:
  struct Endpoint;
  struct Pending;
  // The endpoint of `service` to send the next call to; null with `why` when there is none, and
  // `none_known` set when no list names any address for it.
  std::shared_ptr<Endpoint> pick(const std::string& service, const std::string& avoid, std::string& why,
                                 bool* none_known = nullptr);
  std::shared_ptr<Endpoint> endpoint_locked(const std::string& address, std::string& why);
  bool named_locked(const std::string& address) const;  // some list names the address
  void start(const std::shared_ptr<Pending>& call, std::shared_ptr<Endpoint> endpoint);
  // What a try's answer says of the host it went to.
  enum class Reach : uint8_t {
    kNotReached,     // no host accepted it: it may go to another
    kServed,         // a host accepted it (its plugin may have run): never sent again
    kNotServedThere  // a host accepted it, but no plugin there serves the method: it may go on
  };
  void finished(const std::shared_ptr<Pending>& call, const std::shared_ptr<Endpoint>& endpoint, Reach reach,
                bool channel_was_ready, int code, std::string message, std::string reply);
  void watch_parents();

  RemoteOptions options_;
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  bool stopped_ = false;
  Discovered discovered_;
  std::unordered_map<std::string, std::shared_ptr<Endpoint>> endpoints_;  // by address; bounded
  std::unordered_map<uint64_t, std::shared_ptr<Pending>> pending_;
  uint64_t next_id_ = 1;
  uint64_t round_robin_ = 0;
  std::thread parent_watcher_;
  CallSequence sequence_;  // the nonces this host signs its calls with
  std::condition_variable watcher_cv_;
};

}  // namespace gameverse::platform
