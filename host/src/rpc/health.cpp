#include "rpc/health.hpp"

#include <gameverse/sdk/plugin.hpp>

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "grpc/health/v1/health.pb.h"
#include "plugin/builtin.hpp"

namespace gameverse::rpc {

namespace {

namespace sdk = gameverse::sdk;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

constexpr size_t kMaxServiceNameBytes = 1024;

// What the health plugin reaches in the host; set by serve_health_watch before it starts.
struct Wiring {
  plugin::PluginManager* manager = nullptr;
  size_t max_watchers = 0;
};

Wiring& wiring() {
  static Wiring instance;
  return instance;
}

class HealthPlugin final : public sdk::Plugin {
 public:
  explicit HealthPlugin(sdk::InitContext&)
      : manager_(*wiring().manager), max_watchers_(wiring().max_watchers) {
    listener_ = manager_.subscribe([this](const plugin::Event& event) { on_event(event); });
    std::lock_guard lock(mu_);
    served_ = plugin::services_of(*manager_.routes());
    ever_served_.insert(served_.begin(), served_.end());
  }

  ~HealthPlugin() override {
    manager_.unsubscribe(listener_);
    end_watches();
  }

  // Check stays on the host's generic path (see server.cpp); Watch streams from here.
  static void describe(sdk::PluginBuilder<HealthPlugin>& b) {
    b.service("grpc.health.v1.Health").server_stream("Watch", &HealthPlugin::watch, sdk::kPublic);
  }

  void watch(sdk::CallContext&, const HealthCheckRequest& request,
             sdk::ServerStream<HealthCheckResponse> stream) {
    uint64_t id = 0;
    std::optional<sdk::Status> end;  // the stream ends at once with this, outside the lock
    {
      std::lock_guard lock(mu_);
      if (request.service().size() > kMaxServiceNameBytes) {
        // Each watcher keeps its name: a long one would let a client hold memory.
        end = sdk::Status(sdk::StatusCode::kInvalidArgument,
                          "service: " + std::to_string(request.service().size()) + " bytes, longer than " +
                              std::to_string(kMaxServiceNameBytes) + ", the longest service name watched");
      } else if (watchers_.size() >= max_watchers_) {
        end = sdk::Status(sdk::StatusCode::kResourceExhausted,
                          "the host has " + std::to_string(watchers_.size()) +
                              " health watchers open, its limit ([server] health_watchers); try again later");
      } else if (stopping_) {
        send(stream, HealthCheckResponse::NOT_SERVING);
        end = sdk::Status::ok();
      } else {
        id = next_watcher_++;
        Watcher& watcher = watchers_.emplace(id, Watcher{request.service(), stream}).first->second;
        // Under the lock, as events are: no change can fall between this status and the next.
        if (!send_if_changed(watcher)) {
          watchers_.erase(id);
          return;
        }
      }
    }
    if (end) {
      stream.finish(*end);
      return;
    }
    // Outside the lock: the callback runs at once when the client has already gone.
    stream.on_cancel([this, id] {
      std::lock_guard lock(mu_);
      watchers_.erase(id);
    });
  }

 private:
  struct Watcher {
    std::string service;
    sdk::ServerStream<HealthCheckResponse> stream;
    ServingStatus sent = HealthCheckResponse::UNKNOWN;
  };

  static bool send(const sdk::ServerStream<HealthCheckResponse>& stream, ServingStatus status) {
    HealthCheckResponse response;
    response.set_status(status);
    return stream.write(response);
  }

  ServingStatus status_of(const std::string& service) const {
    if (stopping_) return HealthCheckResponse::NOT_SERVING;
    if (service.empty() || served_.contains(service)) return HealthCheckResponse::SERVING;
    return ever_served_.contains(service) ? HealthCheckResponse::NOT_SERVING
                                          : HealthCheckResponse::SERVICE_UNKNOWN;
  }

  // False when the client is gone or does not read (its queue is full): drop the watcher then.
  bool send_if_changed(Watcher& watcher) {
    const ServingStatus status = status_of(watcher.service);
    if (status == watcher.sent) return true;
    watcher.sent = status;
    return send(watcher.stream, status);
  }

  void on_event(const plugin::Event& event) {
    {
      std::lock_guard lock(mu_);
      if (event.kind == plugin::Event::Kind::kStopping) stopping_ = true;
      served_ = plugin::services_of(*manager_.routes());
      // Bounded by what the operator loads: a name a client asks for is never kept.
      ever_served_.insert(served_.begin(), served_.end());
      for (auto it = watchers_.begin(); it != watchers_.end();) {
        it = send_if_changed(it->second) ? std::next(it) : watchers_.erase(it);
      }
    }
    // Every watcher has its NOT_SERVING: end the streams, so that the drain does not wait for them.
    if (event.kind == plugin::Event::Kind::kStopping) end_watches();
  }

  void end_watches() {
    std::map<uint64_t, Watcher> ending;
    {
      std::lock_guard lock(mu_);
      ending.swap(watchers_);
    }
    for (auto& [id, watcher] : ending) watcher.stream.finish();
  }

  plugin::PluginManager& manager_;
  const size_t max_watchers_;
  int listener_ = 0;
  std::mutex mu_;
  bool stopping_ = false;
  std::set<std::string> served_;
  std::set<std::string> ever_served_;
  uint64_t next_watcher_ = 1;
  std::map<uint64_t, Watcher> watchers_;
};

}  // namespace

grpc::Status health_check(const plugin::RouteTable& routes, bool host_serving, std::string_view request,
                          std::string& reply) {
  HealthCheckRequest check;
  if (!check.ParseFromArray(request.data(), static_cast<int>(request.size()))) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "request does not parse as grpc.health.v1.HealthCheckRequest"};
  }
  HealthCheckResponse response;
  if (check.service().empty()) {
    response.set_status(host_serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING);
  } else {
    const std::string prefix = "/" + check.service() + "/";
    bool served = false;
    for (const auto& [method, route] : routes) {
      if (method.compare(0, prefix.size(), prefix) == 0) {
        served = true;
        break;
      }
    }
    if (!served) return {grpc::StatusCode::NOT_FOUND, "no loaded plugin serves " + check.service()};
    response.set_status(host_serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING);
  }
  reply = response.SerializeAsString();
  return grpc::Status::OK;
}

plugin::Outcome serve_health_watch(plugin::PluginManager& manager, size_t max_watchers) {
  wiring() = {&manager, max_watchers};
  return plugin::serve_builtin<HealthPlugin>(
      manager, kHealthPluginName, "grpc.health.v1.Health/Watch: the host's and each service's status",
      "health", {HealthCheckRequest::descriptor()->file()});
}

}  // namespace gameverse::rpc
