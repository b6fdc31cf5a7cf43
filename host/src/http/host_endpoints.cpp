#include "http/host_endpoints.hpp"

#include <spdlog/spdlog.h>

#include <mutex>
#include <set>

namespace gameverse::http {

DependencyWatch::DependencyWatch(Check check, std::chrono::milliseconds interval)
    : check_(std::move(check)), interval_(interval), problems_(check_()), thread_([this] { run(); }) {}

DependencyWatch::~DependencyWatch() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::vector<std::string> DependencyWatch::problems() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> problems = problems_;
  if (running_since_) {
    const auto waited = std::chrono::steady_clock::now() - *running_since_;
    if (waited > interval_) {
      problems.push_back(
          "the store or Redis has not answered for " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()) + " ms");
    }
  }
  return problems;
}

void DependencyWatch::run() {
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, interval_, [this] { return stopping_; })) {
    running_since_ = std::chrono::steady_clock::now();
    lock.unlock();
    std::vector<std::string> found = check_();
    lock.lock();
    running_since_.reset();
    problems_ = std::move(found);
  }
}

std::vector<std::string> readiness_problems(const HostEndpoints& endpoints) {
  std::vector<std::string> problems;
  for (const auto& status : endpoints.plugins->status()) {
    if (!status.enabled) continue;
    const bool serving = status.loaded && !status.generations.empty() &&
                         status.generations.front().state == plugin::GenerationState::kServing;
    if (!serving) {
      problems.push_back("plugin " + status.name + " is not serving" +
                         (status.last_error.empty() ? "" : ": " + status.last_error));
    }
  }
  if (endpoints.unreachable_dependencies) {
    for (auto& problem : endpoints.unreachable_dependencies()) problems.push_back(std::move(problem));
  }
  return problems;
}

void add_host_endpoints(Router& router, HostEndpoints endpoints) {
  router.add("GET", "/metrics", [endpoints](const Request&) {
    std::string body = endpoints.metrics->render_prometheus();
    if (endpoints.call_metrics != nullptr) endpoints.call_metrics->render(body);
    return Response{200, "text/plain; version=0.0.4; charset=utf-8", std::move(body), {}};
  });
  router.add("GET", "/healthz", [endpoints](const Request&) {
    if (endpoints.stopping->load()) return Response{503, "text/plain; charset=utf-8", "stopping\n", {}};
    return Response{200, "text/plain; charset=utf-8", "ok\n", {}};
  });
  router.add("GET", "/readyz", [endpoints](const Request&) {
    if (endpoints.stopping->load()) return Response{503, "text/plain; charset=utf-8", "stopping\n", {}};
    const auto problems = readiness_problems(endpoints);
    if (problems.empty()) return Response{200, "text/plain; charset=utf-8", "ready\n", {}};
    std::string body = "not ready:\n";
    for (const auto& problem : problems) body += problem + "\n";
    return Response{503, "text/plain; charset=utf-8", std::move(body), {}};
  });
}

void count_plugin_events(plugin::PluginManager& plugins, platform::MetricsRegistry& metrics) {
  auto served_before = std::make_shared<std::pair<std::mutex, std::set<std::string>>>();
  plugins.subscribe([&metrics, served_before](const plugin::Event& event) {
    if (event.plugin.empty()) return;
    try {
      if (event.kind == plugin::Event::Kind::kServing) {
        const uint64_t generation = metrics.register_metric(
            event.plugin,
            {GV_METRIC_GAUGE, "gameverse_plugin_generation", "The plugin's serving generation.", {}, {}});
        metrics.record(event.plugin, generation, {}, static_cast<double>(event.generation));
        bool reload = false;
        {
          std::lock_guard lock(served_before->first);
          reload = !served_before->second.insert(event.plugin).second;
        }
        const uint64_t reloads =
            metrics.register_metric(event.plugin, {GV_METRIC_COUNTER,
                                                   "gameverse_plugin_reloads_total",
                                                   "Generations that began serving after the plugin's first.",
                                                   {},
                                                   {}});
        metrics.record(event.plugin, reloads, {}, reload ? 1 : 0);
      } else if (event.kind == plugin::Event::Kind::kRefused || event.kind == plugin::Event::Kind::kFailed) {
        const uint64_t failures = metrics.register_metric(
            event.plugin, {GV_METRIC_COUNTER,
                           "gameverse_plugin_reload_failures_total",
                           "Loads, reloads or unloads refused, and generations whose calls never finished.",
                           {},
                           {}});
        metrics.record(event.plugin, failures, {}, 1);
      }
    } catch (const std::exception& e) {
      spdlog::warn("plugin metrics for '{}': {}", event.plugin, e.what());
    }
  });
}

}  // namespace gameverse::http
