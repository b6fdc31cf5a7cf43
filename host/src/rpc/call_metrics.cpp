#include "rpc/call_metrics.hpp"

#include <algorithm>

#include "platform/metrics.hpp"

namespace gameverse::rpc {

void CallMetrics::Method::end(int code, std::chrono::nanoseconds latency) {
  const size_t at =
      code >= 0 && static_cast<size_t>(code) < kCodes ? static_cast<size_t>(code) : 2;  // UNKNOWN
  const double seconds = std::chrono::duration<double>(latency).count();
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(kBucketSeconds.begin(), kBucketSeconds.end(), seconds) - kBucketSeconds.begin());
  latency_buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ns.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, latency.count())),
                           std::memory_order_relaxed);
  ended_by_code[at].fetch_add(1, std::memory_order_relaxed);
}

CallMetrics::Method* CallMetrics::method(std::string_view name) {
  std::lock_guard lock(mu_);
  if (auto it = by_name_.find(std::string(name)); it != by_name_.end()) return it->second;
  Method* made = &methods_.emplace_back(std::string(name));
  by_name_.emplace(made->name, made);
  return made;
}

void CallMetrics::render(std::string& out) const {
  std::vector<const Method*> methods;
  {
    std::lock_guard lock(mu_);
    for (const Method& method : methods_) methods.push_back(&method);
  }
  methods.push_back(&unrouted_);
  std::sort(methods.begin(), methods.end(),
            [](const Method* a, const Method* b) { return a->name < b->name; });
  auto label = [](const Method& method) {
    return "method=\"" + platform::escape_label_value(method.name) + "\"";
  };

  out +=
      "# HELP gameverse_rpc_calls_started_total gRPC calls started, per method.\n"
      "# TYPE gameverse_rpc_calls_started_total counter\n";
  for (const Method* m : methods) {
    out += "gameverse_rpc_calls_started_total{" + label(*m) + "} " +
           std::to_string(m->started.load(std::memory_order_relaxed)) + "\n";
  }
  out +=
      "# HELP gameverse_rpc_calls_total gRPC calls ended, per method and status code.\n"
      "# TYPE gameverse_rpc_calls_total counter\n";
  std::vector<uint64_t> ended(methods.size(), 0);
  for (size_t i = 0; i < methods.size(); ++i) {
    for (size_t code = 0; code < kCodes; ++code) {
      const uint64_t count = methods[i]->ended_by_code[code].load(std::memory_order_relaxed);
      ended[i] += count;
      if (count == 0 && code != 0) continue;
      out += "gameverse_rpc_calls_total{" + label(*methods[i]) + ",code=\"" +
             platform::status_code_name(static_cast<int>(code)) + "\"} " + std::to_string(count) + "\n";
    }
  }
  // Ends were read before starts: a call counts as started before it can end, so this is never negative.
  out +=
      "# HELP gameverse_rpc_calls_in_flight gRPC calls started and not yet ended, per method.\n"
      "# TYPE gameverse_rpc_calls_in_flight gauge\n";
  for (size_t i = 0; i < methods.size(); ++i) {
    const uint64_t started = methods[i]->started.load(std::memory_order_relaxed);
    out += "gameverse_rpc_calls_in_flight{" + label(*methods[i]) + "} " +
           std::to_string(started > ended[i] ? started - ended[i] : 0) + "\n";
  }
  out +=
      "# HELP gameverse_rpc_call_duration_seconds gRPC call latency, from the request to the end of the "
      "call, per method.\n"
      "# TYPE gameverse_rpc_call_duration_seconds histogram\n";
  for (const Method* m : methods) {
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= kBucketSeconds.size(); ++b) {
      cumulative += m->latency_buckets[b].load(std::memory_order_relaxed);
      out +=
          "gameverse_rpc_call_duration_seconds_bucket{" + label(*m) + ",le=\"" +
          (b < kBucketSeconds.size() ? platform::prometheus_number(kBucketSeconds[b]) : std::string("+Inf")) +
          "\"} " + std::to_string(cumulative) + "\n";
    }
    out += "gameverse_rpc_call_duration_seconds_sum{" + label(*m) + "} " +
           platform::prometheus_number(
               static_cast<double>(m->latency_sum_ns.load(std::memory_order_relaxed)) / 1e9) +
           "\n";
    out +=
        "gameverse_rpc_call_duration_seconds_count{" + label(*m) + "} " + std::to_string(cumulative) + "\n";
  }
}

}  // namespace gameverse::rpc
