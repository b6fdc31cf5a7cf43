// The host's own HTTP endpoints: /metrics (Prometheus), /healthz (live) and /readyz (ready).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http/http_server.hpp"
#include "platform/metrics.hpp"
#include "plugin/manager.hpp"
#include "rpc/call_metrics.hpp"

namespace gameverse::http {

struct HostEndpoints {
  const platform::MetricsRegistry* metrics = nullptr;
  const rpc::CallMetrics* call_metrics = nullptr;  // null: calls are not counted per method
  const plugin::PluginManager* plugins = nullptr;
  const std::atomic<bool>* stopping = nullptr;  // true once shutdown begins: /healthz answers 503
  // What the host depends on that is unreachable (the store, Redis), one line each; empty when all answer.
  std::function<std::vector<std::string>()> unreachable_dependencies;
};

// Checks what the host depends on (the store, Redis) on a thread of its own, once per `interval`,
// so that a store that hangs never holds the HTTP thread (and /healthz with it): problems()
// returns the last check's findings, and names a check that has not returned within `interval`.
class DependencyWatch {
 public:
  using Check = std::function<std::vector<std::string>()>;
  // Runs the first check before it returns.
  DependencyWatch(Check check, std::chrono::milliseconds interval);
  ~DependencyWatch();
  DependencyWatch(const DependencyWatch&) = delete;
  DependencyWatch& operator=(const DependencyWatch&) = delete;

  std::vector<std::string> problems() const;

 private:
  void run();

  Check check_;
  std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::optional<std::chrono::steady_clock::time_point> running_since_;
  std::vector<std::string> problems_;
  std::thread thread_;
};

// Adds GET /metrics, /healthz and /readyz. `endpoints`' pointers must outlive the router's server.
void add_host_endpoints(Router& router, HostEndpoints endpoints);

// What /readyz reports as not ready: every enabled plugin that does not serve, and every
// unreachable dependency; empty when ready.
std::vector<std::string> readiness_problems(const HostEndpoints& endpoints);

// Counts the manager's events as metrics, per plugin: the serving generation, reloads (generations
// that began serving after the plugin's first) and refused or failed loads and reloads.
void count_plugin_events(plugin::PluginManager& plugins, platform::MetricsRegistry& metrics);

}  // namespace gameverse::http
