#include "platform/remote_calls.hpp"

#include <grpcpp/channel.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "logging/request_id.hpp"
#include "platform/byte_buffer.hpp"
#include "platform/cluster_auth.hpp"
#include "platform/timers.hpp"

namespace gameverse::platform {

std::string_view origin_wire_name(gv_call_origin origin) {
  switch (origin) {
    case GV_CALL_ORIGIN_FOR_CALLER: return "for-caller";
    case GV_CALL_ORIGIN_PLUGIN: return "plugin";
    case GV_CALL_ORIGIN_NETWORK: return "client";
    default: return "";
  }
}

gv_call_origin origin_from_wire_name(std::string_view name) {
  if (name == "for-caller") return GV_CALL_ORIGIN_FOR_CALLER;
  if (name == "plugin") return GV_CALL_ORIGIN_PLUGIN;
  if (name == "client") return GV_CALL_ORIGIN_NETWORK;
  return 0;
}

std::string_view service_of(std::string_view method) {
  if (method.size() < 4 || method.front() != '/') return {};
  const auto slash = method.find('/', 1);
  if (slash == std::string_view::npos || slash == 1 || slash + 1 == method.size()) return {};
  return method.substr(1, slash - 1);
}

struct RemoteCalls::Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
  // Under RemoteCalls::mu_.
  uint64_t outstanding = 0;
  uint64_t calls = 0;
  uint64_t failures = 0;
  uint32_t ejections = 0;  // in a row; a call that reaches the host clears them
  std::chrono::steady_clock::time_point ejected_until{};
  bool unnamed = false;  // dropped from [[remote]] while busy: closed when its last call ends
};

struct RemoteCalls::Pending {
  // One try on one host: gRPC holds the context and the reply until the try completes.
  struct Attempt {
    grpc::ClientContext context;
    grpc::ByteBuffer reply;
  };
  uint64_t id = 0;
  std::string method;
  std::string service;
  grpc::ByteBuffer request;
  CallOrigin origin;
  gv_call_origin kind = GV_CALL_ORIGIN_PLUGIN;
  std::shared_ptr<const std::atomic<bool>> parent_ended;
  Done done;
  const void* owner = nullptr;  // the plugin generation whose code `done` runs
  std::mutex mu;
  bool cancelled = false;
  std::vector<std::unique_ptr<Attempt>> attempts;  // at most kMaxAttempts
};

namespace {

constexpr size_t kMaxAttempts = 3;
static_assert(kClusterMaxPendingCalls * kMaxAttempts < kClusterReplayWindow,
              "a sender's calls in flight must fit the receivers' replay window");

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string state_name(grpc_connectivity_state state) {
  switch (state) {
    case GRPC_CHANNEL_READY: return "ready";
    case GRPC_CHANNEL_IDLE: return "idle";
    case GRPC_CHANNEL_CONNECTING: return "connecting";
    case GRPC_CHANNEL_TRANSIENT_FAILURE: return "failing";
    default: return "shut down";
  }
}

}  // namespace

RemoteCalls::RemoteCalls(RemoteOptions options) : options_(std::move(options)) {
  parent_watcher_ = std::thread([this] { watch_parents(); });
}

RemoteCalls::~RemoteCalls() {
  stop();
}

void RemoteCalls::set_discovered(Discovered discovered) {
  std::lock_guard lock(mu_);
  discovered_ = std::move(discovered);
}

void RemoteCalls::set_self_address(std::string address) {
  std::lock_guard lock(mu_);
  options_.self_address = std::move(address);
}

bool RemoteCalls::set_static_services(std::map<std::string, std::vector<std::string>> services) {
  std::lock_guard lock(mu_);
  if (services == options_.static_services) return false;
  options_.static_services = std::move(services);
  // A connection no list names goes now when idle, else when its last call ends (finished()).
  std::erase_if(endpoints_, [this](const auto& entry) {
    entry.second->unnamed = !named_locked(entry.first);
    return entry.second->unnamed && entry.second->outstanding == 0;
  });
  return true;
}

bool RemoteCalls::named_locked(const std::string& address) const {
  for (const auto& [service, addresses] : options_.static_services)
    if (std::find(addresses.begin(), addresses.end(), address) != addresses.end()) return true;
  for (const auto& [service, entries] : discovered_)
    for (const auto& entry : entries)
      if (entry.first == address) return true;
  return false;
}

std::string RemoteCalls::self_address() const {
  std::lock_guard lock(mu_);
  return options_.self_address;
}

size_t RemoteCalls::pending() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

std::function<void()> RemoteCalls::forward(const std::string& method, std::string request,
                                           const CallOrigin& origin, gv_call_origin kind,
                                           std::shared_ptr<const std::atomic<bool>> parent_ended, Done done,
                                           const void* owner) {
  auto call = std::make_shared<Pending>();
  call->owner = owner;
  call->method = method;
  call->service = std::string(service_of(method));
  call->origin = origin;
  call->origin.identify = nullptr;
  call->kind = kind;
  call->parent_ended = std::move(parent_ended);
  // A call with no deadline gets [cluster] call_timeout_ms: a host that holds it cannot keep it forever.
  if (call->origin.deadline_unix_ms == INT64_MAX)
    call->origin.deadline_unix_ms = now_ms() + options_.call_timeout.count();
  {
    grpc::Slice slice(request);
    call->request = grpc::ByteBuffer(&slice, 1);
  }
  {
    std::unique_lock lock(mu_);
    if (stopped_) {
      lock.unlock();
      done(GV_STATUS_UNAVAILABLE, "the host is stopping: " + method + " was not forwarded", {});
      return [] {};
    }
    if (pending_.size() >= options_.max_pending_calls) {
      lock.unlock();
      done(GV_STATUS_RESOURCE_EXHAUSTED,
           "too many calls forwarded to other hosts at once ([cluster] max_pending_calls = " +
               std::to_string(options_.max_pending_calls) + ")",
           {});
      return [] {};
    }
    call->id = next_id_++;
    call->done = std::move(done);
    pending_.emplace(call->id, call);
    if (call->parent_ended) watcher_cv_.notify_one();
  }
  std::weak_ptr<Pending> weak = call;
  if (call->origin.deadline_unix_ms != INT64_MAX && call->origin.deadline_unix_ms <= now_ms()) {
    finished(call, nullptr, Reach::kNotReached, true, GV_STATUS_DEADLINE_EXCEEDED,
             "the deadline passed before " + method + " was called", {});
    return [] {};
  }
  std::string why;
  bool none_known = false;
  if (auto endpoint = pick(call->service, "", why, &none_known)) {
    start(call, std::move(endpoint));
  } else {
    // No host anywhere serves it: UNIMPLEMENTED, as for a method no plugin here serves (abi.h).
    finished(call, nullptr, Reach::kNotReached, true,
             none_known ? GV_STATUS_UNIMPLEMENTED : GV_STATUS_UNAVAILABLE, why, {});
  }
  return [weak] {
    if (auto live = weak.lock()) {
      std::lock_guard lock(live->mu);
      live->cancelled = true;
      if (!live->attempts.empty()) live->attempts.back()->context.TryCancel();
    }
  };
}

std::shared_ptr<RemoteCalls::Endpoint> RemoteCalls::endpoint_locked(const std::string& address,
                                                                    std::string& why) {
  if (auto it = endpoints_.find(address); it != endpoints_.end()) return it->second;
  if (endpoints_.size() >= options_.max_channels) {
    // An address no list names any longer and no call uses makes room.
    for (auto it = endpoints_.begin(); it != endpoints_.end(); ++it) {
      if (!named_locked(it->first) && it->second->outstanding == 0) {
        endpoints_.erase(it);
        break;
      }
    }
    if (endpoints_.size() >= options_.max_channels) {
      why = "too many other hosts to connect to ([cluster] max_channels = " +
            std::to_string(options_.max_channels) + ")";
      return nullptr;
    }
  }
  auto endpoint = std::make_shared<Endpoint>();
  endpoint->address = address;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(options_.eject_base.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options_.eject_base.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options_.eject_max.count()));
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, -1);
  // Each address gets its own connection, not one shared with other channels to it.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options_.ca_pem.empty() ? grpc::InsecureChannelCredentials()
                              : grpc::SslCredentials(grpc::SslCredentialsOptions{
                                    options_.ca_pem, options_.key_pem, options_.cert_pem});
  endpoint->channel = grpc::CreateCustomChannel(address, credentials, args);
  endpoint->stub = std::make_unique<grpc::GenericStub>(endpoint->channel);
  endpoints_.emplace(address, endpoint);
  return endpoint;
}

std::shared_ptr<RemoteCalls::Endpoint> RemoteCalls::pick(const std::string& service, const std::string& avoid,
                                                         std::string& why, bool* none_known) {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::string> addresses;
  if (auto it = options_.static_services.find(service); it != options_.static_services.end()) {
    addresses = it->second;
  }
  if (auto it = discovered_.find(service); it != discovered_.end()) {
    for (const auto& [address, until] : it->second) {
      if (until > now && std::find(addresses.begin(), addresses.end(), address) == addresses.end())
        addresses.push_back(address);
    }
  }
  std::erase(addresses, options_.self_address);
  if (addresses.empty()) {
    if (none_known != nullptr) *none_known = true;
    why = "no host serves " + service +
          ": it is not loaded here, and neither [[remote]] nor the registry names a host for it";
    return nullptr;
  }
  std::shared_ptr<Endpoint> best;
  int best_rank = 0;
  std::shared_ptr<Endpoint> soonest;  // of the ejected ones, the one whose ejection ends first
  std::string skipped;
  const size_t offset = round_robin_++;
  for (size_t i = 0; i < addresses.size(); ++i) {
    const std::string& address = addresses[(i + offset) % addresses.size()];
    std::string refusal;
    auto endpoint = endpoint_locked(address, refusal);
    if (!endpoint) {
      why = refusal;
      continue;
    }
    const grpc_connectivity_state state = endpoint->channel->GetState(/*try_to_connect=*/true);
    if (endpoint->ejected_until > now && address != avoid &&
        (!soonest || endpoint->ejected_until < soonest->ejected_until)) {
      soonest = endpoint;
    }
    if (endpoint->ejected_until > now || address == avoid) {
      skipped += (skipped.empty() ? "" : ", ") + address + " (" +
                 (address == avoid ? std::string("failed just now")
                                   : "skipped for another " +
                                         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                            endpoint->ejected_until - now)
                                                            .count()) +
                                         " ms") +
                 ")";
      continue;
    }
    // A connection known to fail comes last; among the rest, the one with the fewest calls.
    const int rank = (state == GRPC_CHANNEL_TRANSIENT_FAILURE ? 1'000'000 : 0) +
                     static_cast<int>(std::min<uint64_t>(endpoint->outstanding, 999'999));
    if (!best || rank < best_rank) {
      best = endpoint;
      best_rank = rank;
    }
  }
  // Every address ejected: the one back soonest is tried rather than none (a sole host is not
  // lost for the whole ejection).
  if (!best && soonest && avoid.empty()) best = soonest;
  if (!best && why.empty()) why = "no host serving " + service + " answers: " + skipped;
  if (best) ++best->outstanding;
  return best;
}

void RemoteCalls::start(const std::shared_ptr<Pending>& call, std::shared_ptr<Endpoint> endpoint) {
  Pending::Attempt* attempt = nullptr;
  {
    std::lock_guard lock(call->mu);
    if (call->cancelled) {
      attempt = nullptr;
    } else {
      call->attempts.push_back(std::make_unique<Pending::Attempt>());
      attempt = call->attempts.back().get();
    }
  }
  if (attempt == nullptr) {
    finished(call, endpoint, Reach::kNotReached, true, GV_STATUS_CANCELLED, "the call was cancelled", {});
    return;
  }
  grpc::ClientContext& context = attempt->context;
  if (call->origin.deadline_unix_ms != INT64_MAX) {
    context.set_deadline(
        std::chrono::system_clock::time_point(std::chrono::milliseconds(call->origin.deadline_unix_ms)));
  }
  // The secret itself never travels: an HMAC over what the call claims does, with a nonce this host
  // never signs again (its boot id and the next counter).
  SignedCall signed_call;
  signed_call.method = call->method;
  signed_call.deadline =
      call->origin.deadline_unix_ms == INT64_MAX ? "none" : std::to_string(call->origin.deadline_unix_ms);
  signed_call.origin = std::string(origin_wire_name(call->kind));
  if (call->kind != GV_CALL_ORIGIN_PLUGIN && !call->origin.user_id.empty()) {
    signed_call.user = call->origin.user_id;
    signed_call.session = call->origin.session_id;
    signed_call.roles = call->origin.roles;
  }
  signed_call.peer = call->origin.peer;
  signed_call.request_id = call->origin.request_id;
  {
    std::lock_guard lock(mu_);
    signed_call.host = options_.self_address;
  }
  signed_call.time = std::to_string(now_ms());
  signed_call.nonce = sequence_.next();
  context.AddMetadata(kClusterMacKey, call_mac(options_.secret, signed_call));
  context.AddMetadata(kClusterHostKey, signed_call.host);
  context.AddMetadata(kClusterTimeKey, signed_call.time);
  context.AddMetadata(kClusterNonceKey, signed_call.nonce);
  context.AddMetadata(kClusterDeadlineKey, signed_call.deadline);
  context.AddMetadata(kForwardedOriginKey, signed_call.origin);
  context.AddMetadata(kForwardedCallerPeerKey, signed_call.peer);
  if (!signed_call.user.empty()) {
    context.AddMetadata(kForwardedUserKey, signed_call.user);
    context.AddMetadata(kForwardedSessionKey, signed_call.session);
    for (const auto& role : signed_call.roles) context.AddMetadata(kForwardedRoleKey, role);
  }
  if (!signed_call.request_id.empty())
    context.AddMetadata(std::string(logging::kRequestIdKey), signed_call.request_id);
  const bool was_ready = endpoint->channel->GetState(false) == GRPC_CHANNEL_READY;
  {
    // A cancel that came meanwhile reaches this try.
    std::lock_guard lock(call->mu);
    if (call->cancelled) context.TryCancel();
  }
  endpoint->stub->UnaryCall(&context, call->method, grpc::StubOptions(), &call->request, &attempt->reply,
                            [this, call, endpoint, attempt, was_ready](grpc::Status status) {
                              // The host says so as soon as it accepts the call; the trailers of a
                              // connection that broke meanwhile never come.
                              const auto& initial = attempt->context.GetServerInitialMetadata();
                              const auto& trailers = attempt->context.GetServerTrailingMetadata();
                              const bool reached = initial.find(kServedByClusterKey) != initial.end() ||
                                                   trailers.find(kServedByClusterKey) != trailers.end();
                              const Reach reach = !reached ? Reach::kNotReached
                                                  : trailers.find(kNotServedHereKey) != trailers.end()
                                                      ? Reach::kNotServedThere
                                                      : Reach::kServed;
                              finished(call, endpoint, reach, was_ready, status.error_code(),
                                       status.error_message(), status.ok() ? to_string(attempt->reply) : "");
                            });
}

void RemoteCalls::finished(const std::shared_ptr<Pending>& call, const std::shared_ptr<Endpoint>& endpoint,
                           Reach reach, bool channel_was_ready, int code, std::string message,
                           std::string reply) {
  const bool reached_host = reach != Reach::kNotReached;
  const bool unreached = endpoint && !reached_host && code == GV_STATUS_UNAVAILABLE;
  if (endpoint) {
    std::lock_guard lock(mu_);
    --endpoint->outstanding;
    ++endpoint->calls;
    if (endpoint->unnamed && endpoint->outstanding == 0) {
      if (auto it = endpoints_.find(endpoint->address); it != endpoints_.end() && it->second == endpoint)
        endpoints_.erase(it);
    }
    if (unreached) {
      ++endpoint->failures;
      // One outage is one step up, however many calls were in flight when it came: the penalty
      // grows only when a try made after the last ejection ended fails too.
      const auto now = std::chrono::steady_clock::now();
      if (endpoint->ejected_until <= now) {
        const auto backoff = std::min<std::chrono::milliseconds>(
            options_.eject_max, options_.eject_base * (1LL << std::min<uint32_t>(endpoint->ejections, 10)));
        ++endpoint->ejections;
        endpoint->ejected_until = now + backoff;
        spdlog::warn("forwarding {} to {} failed ({}); skipping that host for {} ms", call->method,
                     endpoint->address, message, backoff.count());
      }
    } else if (reached_host) {
      endpoint->ejections = 0;
      endpoint->ejected_until = {};
    }
  }
  // The call goes to another host when this try cannot have run anywhere: it could not have
  // reached its host (no connection was up), or the host said no plugin there serves the method
  // (unloaded there since the registry was read); a plugin's own UNIMPLEMENTED is its answer.
  const bool not_run = (unreached && !channel_was_ready) ||
                       (endpoint && reach == Reach::kNotServedThere && code == GV_STATUS_UNIMPLEMENTED);
  if (not_run) {
    bool again = false;
    {
      std::lock_guard lock(call->mu);
      again = !call->cancelled && call->attempts.size() < kMaxAttempts &&
              (call->origin.deadline_unix_ms == INT64_MAX || call->origin.deadline_unix_ms > now_ms());
    }
    std::string why;
    if (again) {
      if (auto next = pick(call->service, endpoint->address, why)) {
        start(call, std::move(next));
        return;
      }
    }
  }
  if (unreached)
    message = "no host serving " + call->service + " answers: " + endpoint->address + ": " + message;
  if (code < GV_STATUS_OK || code > GV_STATUS_UNAUTHENTICATED) code = GV_STATUS_UNKNOWN;
  call->done(static_cast<gv_status_code>(code), message, reply);
  {
    std::lock_guard lock(mu_);
    pending_.erase(call->id);
    idle_cv_.notify_all();
  }
}

void RemoteCalls::watch_parents() {
  std::unique_lock lock(mu_);
  while (!stopped_) {
    std::vector<std::shared_ptr<Pending>> ended;
    bool any_parent = false;
    for (const auto& [id, call] : pending_) {
      if (!call->parent_ended) continue;
      any_parent = true;
      if (call->parent_ended->load()) ended.push_back(call);
    }
    if (!ended.empty()) {
      lock.unlock();
      for (const auto& call : ended) {
        std::lock_guard call_lock(call->mu);
        if (call->cancelled) continue;
        call->cancelled = true;
        if (!call->attempts.empty()) call->attempts.back()->context.TryCancel();
      }
      lock.lock();
    }
    if (any_parent) {
      watcher_cv_.wait_for(lock, std::chrono::milliseconds(20));
    } else {
      watcher_cv_.wait(lock);
    }
  }
}

void RemoteCalls::stop() {
  std::vector<std::shared_ptr<Pending>> calls;
  {
    std::lock_guard lock(mu_);
    if (stopped_ && !parent_watcher_.joinable()) return;
    stopped_ = true;
    for (const auto& [id, call] : pending_) calls.push_back(call);
    watcher_cv_.notify_all();
  }
  for (const auto& call : calls) {
    std::lock_guard lock(call->mu);
    call->cancelled = true;
    if (!call->attempts.empty()) call->attempts.back()->context.TryCancel();
  }
  calls.clear();
  if (parent_watcher_.joinable()) parent_watcher_.join();
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return pending_.empty(); });
}

bool RemoteCalls::cancel_owned(const void* owner, std::chrono::steady_clock::time_point until) {
  if (owner == nullptr) return true;
  std::vector<std::shared_ptr<Pending>> calls;
  auto owned = [&] {
    calls.clear();
    for (const auto& [id, call] : pending_)
      if (call->owner == owner) calls.push_back(call);
    return calls.empty();
  };
  std::unique_lock lock(mu_);
  if (owned()) return true;
  lock.unlock();
  for (const auto& call : calls) {
    std::lock_guard call_lock(call->mu);
    call->cancelled = true;
    if (!call->attempts.empty()) call->attempts.back()->context.TryCancel();
  }
  calls.clear();
  lock.lock();
  return idle_cv_.wait_until(lock, until, [&] {
    const bool none = owned();
    calls.clear();
    return none;
  });
}

std::vector<RemoteServiceView> RemoteCalls::snapshot() const {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  std::map<std::string, RemoteServiceView> services;
  auto add = [&](const std::string& service, const std::string& address, const std::string& source,
                 int64_t lease_left_ms) {
    if (address == options_.self_address) return;  // this host's own announcement: served here
    RemoteServiceView& view = services[service];
    view.service = service;
    RemoteEndpointView endpoint{address, source, "none", 0, lease_left_ms, 0, 0, 0};
    if (auto it = endpoints_.find(address); it != endpoints_.end()) {
      const Endpoint& e = *it->second;
      endpoint.state = state_name(e.channel->GetState(false));
      if (e.ejected_until > now) {
        endpoint.state = "ejected";
        endpoint.ejected_for_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(e.ejected_until - now).count();
      }
      endpoint.outstanding = e.outstanding;
      endpoint.calls = e.calls;
      endpoint.failures = e.failures;
    }
    view.endpoints.push_back(std::move(endpoint));
  };
  for (const auto& [service, addresses] : options_.static_services)
    for (const auto& address : addresses) add(service, address, "static", 0);
  for (const auto& [service, entries] : discovered_) {
    for (const auto& [address, until] : entries) {
      if (until <= now) continue;
      add(service, address, "registry",
          std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count());
    }
  }
  std::vector<RemoteServiceView> out;
  for (auto& [service, view] : services) out.push_back(std::move(view));
  return out;
}

}  // namespace gameverse::platform
