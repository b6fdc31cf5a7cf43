// Per-method gRPC call metrics: calls started, calls ended by status code, a latency histogram and
// calls in flight. Lock-free on the call path: a method's counters are created once (under a lock)
// and never move, and the server keeps a pointer to them per method, so a call only adds to atomics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gameverse::rpc {

class CallMetrics {
 public:
  // Latency bucket bounds, in seconds (Prometheus `le`).
  static constexpr std::array<double, 16> kBucketSeconds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  static constexpr size_t kCodes = 17;  // gRPC status codes 0..16

  struct Method {
    explicit Method(std::string method_name) : name(std::move(method_name)) {}
    const std::string name;
    std::atomic<uint64_t> started{0};
    std::array<std::atomic<uint64_t>, kCodes> ended_by_code{};
    std::array<std::atomic<uint64_t>, kBucketSeconds.size() + 1> latency_buckets{};  // last: +Inf
    std::atomic<uint64_t> latency_sum_ns{0};

    void start() { started.fetch_add(1, std::memory_order_relaxed); }
    void end(int code, std::chrono::nanoseconds latency);
  };

  // The counters of `name`, made on first use. Only for methods a plugin or the host serves: a
  // client's unknown method names go to unrouted(), so they cannot grow this.
  Method* method(std::string_view name);
  Method* unrouted() { return &unrouted_; }

  // Appends the families in the Prometheus text format (0.0.4).
  void render(std::string& out) const;

 private:
  mutable std::mutex mu_;
  std::deque<Method> methods_;  // a deque: elements never move
  std::unordered_map<std::string, Method*> by_name_;
  Method unrouted_{"unrouted"};
};

}  // namespace gameverse::rpc
