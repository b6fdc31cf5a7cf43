// gv-reload-bench: steady unary load on the echo plugin while it is reloaded at a fixed interval.
// Reports failed calls, the swap time (from the reload request to the first reply of the new
// generation) and p99 latency inside reload windows against the steady state in the same run.
#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "percentile.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace pb = gameverse::echo::v1;
namespace admin = gameverse::host::v1;

struct Sample {
  Clock::time_point start;
  Clock::duration latency;
};

std::string instance_of(pb::Echo::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::StatsReply reply;
  return stub.Stats(&context, pb::StatsRequest(), &reply).ok() ? reply.instance_id() : "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Reload benchmark: load on echo while it is reloaded"};
  std::string target = "127.0.0.1:50051";
  int reloads = 50;
  int interval_ms = 200;
  int clients = 8;
  int window_ms = 50;
  app.add_option("--target", target)->capture_default_str();
  app.add_option("--reloads", reloads)->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "Time between reloads")->capture_default_str();
  app.add_option("--clients", clients, "Closed-loop callers")->capture_default_str();
  app.add_option("--window-ms", window_ms,
                 "A reload window lasts from the request to this long after the swap")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto echo = pb::Echo::NewStub(channel);
  auto plugins = admin::PluginAdmin::NewStub(channel);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> failed{0};
  std::string first_failure;
  std::mutex mu;
  std::vector<std::vector<Sample>> samples(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      // A channel per caller, so the load spreads over connections as real clients do.
      grpc::ChannelArguments args;
      args.SetInt("gv.bench.channel", c);
      auto stub =
          pb::Echo::NewStub(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
      pb::EchoRequest request;
      request.set_payload(std::string(100, 'x'));
      pb::EchoReply reply;
      while (!stop) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        const auto start = Clock::now();
        grpc::Status status = stub->Echo(&context, request, &reply);
        const auto end = Clock::now();
        if (!status.ok()) {
          if (failed++ == 0) {
            std::lock_guard lock(mu);
            first_failure = std::to_string(status.error_code()) + " " + status.error_message();
          }
        } else {
          samples[static_cast<size_t>(c)].push_back({start, end - start});
        }
      }
    });
  }

  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // warm up
  std::vector<double> swap_ms;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> windows;
  const auto bench_start = Clock::now();
  for (int r = 0; r < reloads; ++r) {
    const auto due = bench_start + std::chrono::milliseconds(interval_ms) * (r + 1);
    std::this_thread::sleep_until(due);
    const std::string before = instance_of(*echo);
    const auto trigger = Clock::now();
    std::thread request([&] {
      grpc::ClientContext context;
      admin::ReloadPluginRequest reload;
      reload.set_name("echo");
      reload.set_force(true);
      admin::OperationResult result;
      grpc::Status status = plugins->ReloadPlugin(&context, reload, &result);
      if (!status.ok()) std::fprintf(stderr, "reload %d refused: %s\n", r, status.error_message().c_str());
    });
    std::string now = before;
    // Poll gently: a tight loop would itself be load inside the window being measured.
    while (now == before && Clock::now() - trigger < std::chrono::seconds(5)) {
      std::this_thread::sleep_for(std::chrono::microseconds(250));
      now = instance_of(*echo);
    }
    const auto swapped = Clock::now();
    request.join();
    swap_ms.push_back(std::chrono::duration<double, std::milli>(swapped - trigger).count());
    windows.emplace_back(trigger, swapped + std::chrono::milliseconds(window_ms));
  }
  stop = true;
  for (auto& thread : threads) thread.join();

  std::vector<double> steady;
  std::vector<double> in_window;
  uint64_t calls = 0;
  for (const auto& per_client : samples) {
    for (const Sample& s : per_client) {
      if (s.start < bench_start) continue;
      ++calls;
      const double us = std::chrono::duration<double, std::micro>(s.latency).count();
      const bool inside = std::any_of(windows.begin(), windows.end(), [&](const auto& w) {
        return s.start + s.latency >= w.first && s.start <= w.second;
      });
      (inside ? in_window : steady).push_back(us);
    }
  }
  const double steady_p99 = gameverse::bench::percentile(steady, 0.99);
  const double window_p99 = gameverse::bench::percentile(in_window, 0.99);
  std::printf("reloads=%d interval_ms=%d calls=%llu failed=%llu\n", reloads, interval_ms,
              static_cast<unsigned long long>(calls), static_cast<unsigned long long>(failed.load()));
  std::printf("swap_ms p50=%.2f p99=%.2f max=%.2f\n", gameverse::bench::percentile(swap_ms, 0.5),
              gameverse::bench::percentile(swap_ms, 0.99), *std::max_element(swap_ms.begin(), swap_ms.end()));
  std::printf(
      "latency_us steady_p50=%.0f steady_p99=%.0f window_p50=%.0f window_p99=%.0f window/steady_p99=%.2f\n",
      gameverse::bench::percentile(steady, 0.5), steady_p99, gameverse::bench::percentile(in_window, 0.5),
      window_p99, steady_p99 > 0 ? window_p99 / steady_p99 : 0.0);
  if (failed > 0) std::fprintf(stderr, "first failure: %s\n", first_failure.c_str());
  return failed == 0 ? 0 : 1;
}
