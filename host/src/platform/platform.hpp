// What the host offers plugins beyond calls: the store, the cache, pub/sub, timers, metrics, a
// pool for blocking work and calls to other services. One per host; every generation's gv_host_plugin points
// at it.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

namespace gameverse::plugin {
struct Route;
}

namespace gameverse::platform {

class Store;
class TimerService;
class MetricsRegistry;
class CacheBackend;
class PubSub;
class WorkPool;
class RemoteCalls;

struct Platform {
  Store* store = nullptr;  // null when the host has none
  TimerService* timers = nullptr;
  MetricsRegistry* metrics = nullptr;
  CacheBackend* cache = nullptr;
  PubSub* pubsub = nullptr;
  WorkPool* blocking = nullptr;          // plugins' blocking work
  size_t max_value_bytes = 1024 * 1024;  // for cached values as for stored ones
  // The routes of the moment, for calls between plugins.
  std::function<std::shared_ptr<const std::unordered_map<std::string, plugin::Route>>()> routes;
  // Calls to services no plugin here serves go to other hosts through it; null: they fail here.
  RemoteCalls* remote = nullptr;
};

}  // namespace gameverse::platform
