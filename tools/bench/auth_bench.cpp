// gv-auth-bench: logins per second through the host with the auth plugin, against the rate at
// which this machine verifies Argon2id hashes of the same cost in process (the ceiling: a login is
// one verification plus a session and a token). Prints both and the ratio.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "domain/crypto.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "percentile.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace pb = gameverse::auth::v1;

// Registers an account and returns its session; exits on failure.
pb::Session register_account(pb::Auth::Stub& stub, const std::string& prefix) {
  grpc::ClientContext context;
  pb::RegisterRequest request;
  request.set_username(prefix +
                       std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000));
  request.set_password("correct horse battery");
  pb::Session session;
  const grpc::Status status = stub.Register(&context, request, &session);
  if (!status.ok()) {
    std::fprintf(stderr, "register failed: %s\n", status.error_message().c_str());
    std::exit(1);
  }
  return session;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Logins per second through the host against in-process Argon2id verifications"};
  std::string target;
  int seconds = 10;
  int clients = 4;
  int threads = 2;
  uint64_t opslimit = 3;
  size_t memlimit_kib = 64 * 1024;
  app.add_option("--target", target, "The host, host:port")->required();
  app.add_option("--seconds", seconds)->capture_default_str();
  app.add_option("--clients", clients, "Concurrent login callers")->capture_default_str();
  app.add_option("--threads", threads, "Threads verifying in process (the plugin's hash_workers)")
      ->capture_default_str();
  app.add_option("--opslimit", opslimit)->capture_default_str();
  app.add_option("--memlimit-kib", memlimit_kib)->capture_default_str();
  bool print_token = false;
  app.add_flag("--print-token", print_token, "Register an account, print its access token and exit");
  CLI11_PARSE(app, argc, argv);

  if (print_token) {
    auto stub = pb::Auth::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    std::printf("%s\n", register_account(*stub, "token").access_token().c_str());
    return 0;
  }

  // Baseline: verifications of one hash of the same cost, on as many threads as the plugin has.
  const gameverse::auth::PasswordHasher hasher{opslimit, memlimit_kib * 1024, nullptr};
  const std::string hash = hasher.hash("correct horse battery");
  std::atomic<int> verified{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> verifiers;
  const auto base_start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    verifiers.emplace_back([&] {
      while (!stop) {
        if (hasher.verify(hash, "correct horse battery")) verified++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& v : verifiers) v.join();
  const double baseline = verified / std::chrono::duration<double>(Clock::now() - base_start).count();

  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = pb::Auth::NewStub(channel);
  const std::string user = register_account(*stub, "bench").account().username();
  std::atomic<int> logins{0}, failures{0};
  std::vector<std::vector<double>> latencies(static_cast<size_t>(clients));
  stop = false;
  std::vector<std::thread> callers;
  const auto start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    callers.emplace_back([&, c] {
      while (!stop) {
        grpc::ClientContext context;
        pb::LoginRequest request;
        request.set_username(user);
        request.set_password("correct horse battery");
        pb::Session session;
        const auto t0 = Clock::now();
        if (stub->Login(&context, request, &session).ok()) {
          logins++;
          latencies[static_cast<size_t>(c)].push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        } else {
          failures++;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& c : callers) c.join();
  const double rate = logins / std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::printf("Argon2id (opslimit %lu, %zu KiB) in process on %d threads: %.1f verifications/s\n",
              static_cast<unsigned long>(opslimit), memlimit_kib, threads, baseline);
  std::printf(
      "logins through the host, %d clients: %.1f logins/s (%d failed), latency p50 %.0f ms, p99 %.0f ms\n",
      clients, rate, failures.load(), gameverse::bench::percentile(all, 0.5),
      gameverse::bench::percentile(all, 0.99));
  std::printf("ratio logins / verifications: %.2f\n", rate / baseline);
  return failures > 0 ? 1 : 0;
}
