#include "platform/service_registry.hpp"

#include <spdlog/spdlog.h>

#include "platform/remote_calls.hpp"

namespace gameverse::platform {

ServiceRegistry::ServiceRegistry(RedisAddress redis, RegistryOptions options, RemoteCalls& remote,
                                 std::function<std::set<std::string>()> local_services)
    : redis_(std::move(redis)),
      options_(std::move(options)),
      remote_(remote),
      local_services_(std::move(local_services)) {
  refresh();
  thread_ = std::thread([this] { run(); });
}

ServiceRegistry::~ServiceRegistry() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  withdraw_all();
}

void ServiceRegistry::refresh_soon() {
  {
    std::lock_guard lock(mu_);
    soon_ = true;
  }
  cv_.notify_all();
}

std::string ServiceRegistry::services_key() const {
  return "gameverse:cluster:" + options_.cluster + ":services";
}

std::string ServiceRegistry::service_key(const std::string& service) const {
  return "gameverse:cluster:" + options_.cluster + ":service:" + service;
}

void ServiceRegistry::run() {
  const auto period = std::max<std::chrono::milliseconds>(options_.lease / 3, std::chrono::milliseconds(100));
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, period, [this] { return stop_ || soon_; });
    if (stop_) break;
    soon_ = false;
    lock.unlock();
    refresh();
    lock.lock();
  }
}

void ServiceRegistry::refresh() {
  try {
    // Leases are reckoned on Redis's clock.
    const RedisReply time = redis_.command({"TIME"});
    if (!time || time->type != REDIS_REPLY_ARRAY || time->elements != 2) {
      throw PlatformError(GV_STATUS_UNAVAILABLE, "Redis TIME gave no time");
    }
    const int64_t redis_now_ms =
        std::stoll(time->element[0]->str) * 1000 + std::stoll(time->element[1]->str) / 1000;
    const auto steady_now = std::chrono::steady_clock::now();
    const std::set<std::string> local = local_services_();
    const std::string until = std::to_string(redis_now_ms + options_.lease.count());
    for (const auto& service : local) {
      redis_.command({"ZADD", service_key(service), until, options_.address});
      redis_.command({"SADD", services_key(), service});
    }
    for (const auto& service : announced_) {
      if (!local.contains(service)) redis_.command({"ZREM", service_key(service), options_.address});
    }
    announced_ = local;

    RemoteCalls::Discovered discovered;
    const RedisReply names = redis_.command({"SMEMBERS", services_key()});
    if (names && names->type == REDIS_REPLY_ARRAY) {
      for (size_t i = 0; i < names->elements && i < options_.max_services; ++i) {
        const std::string service(names->element[i]->str, names->element[i]->len);
        const std::string key = service_key(service);
        redis_.command({"ZREMRANGEBYSCORE", key, "-inf", std::to_string(redis_now_ms)});
        const RedisReply hosts = redis_.command({"ZRANGEBYSCORE", key, "(" + std::to_string(redis_now_ms),
                                                 "+inf", "WITHSCORES", "LIMIT", "0", "64"});
        if (!hosts || hosts->type != REDIS_REPLY_ARRAY || hosts->elements == 0) {
          redis_.command({"SREM", services_key(), service});  // announced again on its host's next beat
          continue;
        }
        auto& entries = discovered[service];
        for (size_t h = 0; h + 1 < hosts->elements; h += 2) {
          const int64_t lease_end = std::stoll(hosts->element[h + 1]->str);
          entries.emplace_back(std::string(hosts->element[h]->str, hosts->element[h]->len),
                               steady_now + std::chrono::milliseconds(lease_end - redis_now_ms));
        }
      }
    }
    remote_.set_discovered(std::move(discovered));
    if (failing_) spdlog::info("service registry: Redis answers again");
    failing_ = false;
  } catch (const std::exception& e) {
    // What was read last stays in force until its leases run out.
    if (!failing_) spdlog::warn("service registry: {}; announcing again on the next beat", e.what());
    failing_ = true;
  }
}

void ServiceRegistry::withdraw_all() {
  try {
    for (const auto& service : announced_) redis_.command({"ZREM", service_key(service), options_.address});
  } catch (const std::exception& e) {
    spdlog::warn("service registry: could not withdraw this host ({}); its lease runs out instead", e.what());
  }
  announced_.clear();
}

}  // namespace gameverse::platform
