// gv-platform-bench: pub/sub fan-out and timer drift, both through the host function table as a
// plugin's SDK calls them.
//   fan-out: one publisher, N subscribers on one topic, in process and through Redis; reports
//            messages and deliveries per second and publish-to-callback latency.
//   drift:   a 60 Hz periodic timer, alone and among other 60 Hz timers; reports ticks against
//            the expected count, per-tick lateness and the lateness of the last tick (drift).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "percentile.hpp"
#include "platform/pubsub.hpp"
#include "platform/timers.hpp"
#include "plugin/plugin.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace gp = gameverse::platform;

gv_bytes bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Subscriber {
  std::atomic<uint64_t>* delivered;
  std::mutex* mu;
  std::vector<double>* latencies_us;
};

void on_message(void* context, gv_bytes, gv_bytes payload) {
  auto* s = static_cast<Subscriber*>(context);
  int64_t sent_ns = 0;
  std::memcpy(&sent_ns, payload.data, sizeof sent_ns);
  const double us = static_cast<double>(Clock::now().time_since_epoch().count() - sent_ns) / 1000.0;
  {
    std::lock_guard lock(*s->mu);
    s->latencies_us->push_back(us);
  }
  s->delivered->fetch_add(1, std::memory_order_release);
}

// rate 0: publish as fast as possible (throughput); otherwise that many messages per second
// (latency without queueing).
void fan_out(const std::string& backend, const std::string& redis_url, int subscribers, int messages,
             int rate) {
  std::unique_ptr<gp::PubSub> bus =
      backend == "redis" ? gp::open_redis_pubsub(redis_url) : gp::open_memory_pubsub();
  gp::Platform platform;
  platform.pubsub = bus.get();
  gv_host_api api = gameverse::plugin::host_api(GV_ABI_VERSION_MINOR);
  gv_host_plugin self;
  self.name = "bench";
  self.platform = &platform;
  bus->set_active(&self, true);

  std::atomic<uint64_t> delivered{0};
  std::mutex mu;
  std::vector<double> latencies_us;
  latencies_us.reserve(static_cast<size_t>(subscribers) * static_cast<size_t>(messages));
  std::vector<Subscriber> contexts(static_cast<size_t>(subscribers),
                                   Subscriber{&delivered, &mu, &latencies_us});
  char error[256] = {};
  for (auto& context : contexts) {
    if (api.subscribe(&self, bytes("bench.fanout"), &on_message, &context, {error, sizeof error}) == 0) {
      std::fprintf(stderr, "subscribe failed: %s\n", error);
      std::exit(1);
    }
  }
  const uint64_t expected = static_cast<uint64_t>(subscribers) * static_cast<uint64_t>(messages);
  const auto start = Clock::now();
  std::string payload(64, 'p');
  for (int i = 0; i < messages; ++i) {
    if (rate > 0) std::this_thread::sleep_until(start + std::chrono::nanoseconds(1'000'000'000LL * i / rate));
    const int64_t now_ns = Clock::now().time_since_epoch().count();
    std::memcpy(payload.data(), &now_ns, sizeof now_ns);
    while (api.publish(&self, bytes("bench.fanout"), bytes(payload), {error, sizeof error}) != GV_STATUS_OK) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));  // queue full: back off
    }
  }
  const auto published = Clock::now();
  while (delivered.load(std::memory_order_acquire) < expected) {
    if (Clock::now() - start > std::chrono::seconds(60)) {
      std::fprintf(stderr, "only %lu of %lu deliveries after 60 s\n",
                   static_cast<unsigned long>(delivered.load()), static_cast<unsigned long>(expected));
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const double total_s = std::chrono::duration<double>(Clock::now() - start).count();
  const double publish_s = std::chrono::duration<double>(published - start).count();
  std::lock_guard lock(mu);
  if (rate == 0) {
    std::printf("fan-out %-6s %4d subscribers: %8.0f messages/s published, %9.0f deliveries/s\n",
                backend.c_str(), subscribers, messages / publish_s,
                static_cast<double>(delivered.load()) / total_s);
  } else {
    std::printf(
        "latency %-6s %4d subscribers at %d messages/s: publish to callback p50 %6.1f us, p99 %6.1f us\n",
        backend.c_str(), subscribers, rate, gameverse::bench::percentile(latencies_us, 0.5),
        gameverse::bench::percentile(latencies_us, 0.99));
  }
  bus->cancel_all(&self, true);
}

struct Tick {
  Clock::time_point start;
  std::chrono::nanoseconds period;
  std::vector<double> lateness_us;
  int ticks = 0;
};

void on_tick(void* context) {
  auto* t = static_cast<Tick*>(context);
  ++t->ticks;
  const auto due = t->start + t->period * t->ticks;
  t->lateness_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - due).count());
}

void drift(int seconds, int other_timers) {
  gp::TimerService timers;
  gp::Platform platform;
  platform.timers = &timers;
  gv_host_api api = gameverse::plugin::host_api(GV_ABI_VERSION_MINOR);
  gv_host_plugin self;
  self.name = "bench";
  self.platform = &platform;
  constexpr uint64_t kPeriodNs = 1'000'000'000 / 60;  // 60 Hz
  char error[256] = {};
  std::vector<Tick> others(static_cast<size_t>(other_timers));
  for (auto& other : others) {
    other.start = Clock::now();
    other.period = std::chrono::nanoseconds(kPeriodNs);
    other.lateness_us.reserve(static_cast<size_t>(seconds) * 70);
    api.timer_start2(&self, kPeriodNs, kPeriodNs, &on_tick, &other, {error, sizeof error});
  }
  Tick measured;
  measured.period = std::chrono::nanoseconds(kPeriodNs);
  measured.lateness_us.reserve(static_cast<size_t>(seconds) * 70);
  measured.start = Clock::now();
  const uint64_t id =
      api.timer_start2(&self, kPeriodNs, kPeriodNs, &on_tick, &measured, {error, sizeof error});
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  api.timer_cancel(&self, id);
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - measured.start).count();
  timers.cancel_all(&self);
  const double expected = elapsed_s * 1e9 / static_cast<double>(kPeriodNs);
  std::printf(
      "drift   %4d other timers, %d s: %d ticks of %.1f expected (%.3f%%)  lateness p50 %7.1f us  p99 %7.1f "
      "us  max %8.1f us  last tick %7.1f us late\n",
      other_timers, seconds, measured.ticks, expected, 100.0 * measured.ticks / expected,
      gameverse::bench::percentile(measured.lateness_us, 0.5),
      gameverse::bench::percentile(measured.lateness_us, 0.99),
      gameverse::bench::percentile(measured.lateness_us, 1.0),
      measured.lateness_us.empty() ? 0.0 : measured.lateness_us.back());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Pub/sub fan-out and timer drift through the host function table"};
  std::string redis_url;
  int messages = 20000;
  int seconds = 10;
  app.add_option("--redis-url", redis_url, "Also measure pub/sub through this Redis");
  app.add_option("--messages", messages, "Messages per fan-out run")->capture_default_str();
  app.add_option("--seconds", seconds, "Length of each timer run")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  for (const std::string backend : {"memory", "redis"}) {
    if (backend == "redis" && redis_url.empty()) continue;
    for (int subscribers : {1, 10, 100}) {
      fan_out(backend, redis_url, subscribers, messages / (subscribers >= 100 ? 10 : 1), 0);
      fan_out(backend, redis_url, subscribers, 2000, 1000);
    }
  }
  for (int others : {0, 1000}) drift(seconds, others);
  return 0;
}
