#include "platform/service_registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>
#include <vector>

#include "platform/cluster_auth.hpp"
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

namespace {

constexpr int64_t kLongestLeaseMs = 3'600'000;  // [cluster] lease_ms's upper bound

// A whole decimal integer, else nullopt ("inf", "1e3", "" and overflow are not).
std::optional<int64_t> whole_number(const char* data, size_t size) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(data, data + size, value);
  if (error != std::errc() || end != data + size) return std::nullopt;
  return value;
}

std::optional<int64_t> whole_number(const redisReply* reply) {
  if (reply == nullptr || reply->type != REDIS_REPLY_STRING) return std::nullopt;
  return whole_number(reply->str, reply->len);
}

// A score may be written "1.7e12" by Redis; only its integral part counts.
std::optional<int64_t> lease_end_of(const redisReply* reply) {
  if (reply == nullptr || reply->type != REDIS_REPLY_STRING) return std::nullopt;
  const std::string_view text(reply->str, reply->len);
  return whole_number(text.data(), std::min(text.find('.'), text.size()));
}

}  // namespace

std::string ServiceRegistry::member(const std::string& service) const {
  return registry_member(options_.secret, options_.cluster, service, options_.address);
}

void ServiceRegistry::refresh() {
  try {
    // Leases are reckoned on Redis's clock.
    const RedisReply time = redis_.command({"TIME"});
    if (!time || time->type != REDIS_REPLY_ARRAY || time->elements != 2) {
      throw PlatformError(GV_STATUS_UNAVAILABLE, "Redis TIME gave no time");
    }
    const auto seconds = whole_number(time->element[0]);
    const auto micros = whole_number(time->element[1]);
    if (!seconds || !micros) throw PlatformError(GV_STATUS_UNAVAILABLE, "Redis TIME gave no time");
    const int64_t redis_now_ms = *seconds * 1000 + *micros / 1000;
    const auto steady_now = std::chrono::steady_clock::now();
    const std::set<std::string> local = local_services_();
    const std::string until = std::to_string(redis_now_ms + options_.lease.count());
    for (const auto& service : local) {
      redis_.command({"ZADD", service_key(service), until, member(service)});
      redis_.command({"SADD", services_key(), service});
    }
    for (const auto& service : announced_) {
      if (!local.contains(service)) redis_.command({"ZREM", service_key(service), member(service)});
    }
    announced_ = local;

    // Service names, read in bounded steps and at most max_services of them.
    std::vector<std::string> names;
    std::string cursor = "0";
    do {
      const RedisReply page = redis_.command({"SSCAN", services_key(), cursor, "COUNT", "256"});
      if (!page || page->type != REDIS_REPLY_ARRAY || page->elements != 2 ||
          page->element[0]->type != REDIS_REPLY_STRING || page->element[1]->type != REDIS_REPLY_ARRAY) {
        break;
      }
      cursor.assign(page->element[0]->str, page->element[0]->len);
      for (size_t i = 0; i < page->element[1]->elements && names.size() < options_.max_services; ++i) {
        const redisReply* name = page->element[1]->element[i];
        if (name->type == REDIS_REPLY_STRING) names.emplace_back(name->str, name->len);
      }
    } while (cursor != "0" && names.size() < options_.max_services);

    RemoteCalls::Discovered discovered;
    for (const auto& service : names) {
      // One bad key (another type, a foreign value) costs that service only.
      try {
        const std::string key = service_key(service);
        redis_.command({"ZREMRANGEBYSCORE", key, "-inf", std::to_string(redis_now_ms)});
        redis_.command(
            {"ZREMRANGEBYSCORE", key, "(" + std::to_string(redis_now_ms + kLongestLeaseMs), "+inf"});
        // The freshest leases first: the hosts most recently heard from.
        // No host signs a lease longer than lease_ms allows (an hour at most): later scores are junk
        // that must not crowd the real entries out of the 64 read.
        const RedisReply hosts =
            redis_.command({"ZREVRANGEBYSCORE", key, std::to_string(redis_now_ms + kLongestLeaseMs),
                            "(" + std::to_string(redis_now_ms), "WITHSCORES", "LIMIT", "0", "64"});
        if (!hosts || hosts->type != REDIS_REPLY_ARRAY || hosts->elements == 0) {
          redis_.command({"SREM", services_key(), service});  // announced again on its host's next beat
          continue;
        }
        std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> entries;
        for (size_t h = 0; h + 1 < hosts->elements; h += 2) {
          const redisReply* entry = hosts->element[h];
          const auto lease_end = lease_end_of(hosts->element[h + 1]);
          if (entry->type != REDIS_REPLY_STRING || !lease_end) continue;
          // Only entries signed with the cluster's secret name a host: anyone else who can write
          // to Redis cannot send this host's calls (and callers) elsewhere.
          auto address = registry_address(options_.secret, options_.cluster, service,
                                          std::string_view(entry->str, entry->len));
          if (!address) {
            // Not written by a host of this cluster: dropped, so that it takes no place of a real one.
            redis_.command({"ZREM", key, std::string(entry->str, entry->len)});
            continue;
          }
          const int64_t left_ms = std::clamp<int64_t>(*lease_end - redis_now_ms, 0, options_.lease.count());
          entries.emplace_back(std::move(*address), steady_now + std::chrono::milliseconds(left_ms));
        }
        if (!entries.empty()) discovered[service] = std::move(entries);
      } catch (const PlatformError& e) {
        spdlog::debug("service registry: skipping {}: {}", service, e.what());
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
    for (const auto& service : announced_) redis_.command({"ZREM", service_key(service), member(service)});
  } catch (const std::exception& e) {
    spdlog::warn("service registry: could not withdraw this host ({}); its lease runs out instead", e.what());
  }
  announced_.clear();
}

}  // namespace gameverse::platform
