// The registry of which host serves which service, kept in Redis: every host announces the
// services it serves under a lease it refreshes (every lease / 3), withdraws a service when it
// stops serving it and everything when it stops; a host that dies drops out when its lease runs
// out. What the others announce is read back on the same beat and handed to RemoteCalls.
//
// Keys (per [cluster] name): "gameverse:cluster:<name>:services", a set of service names, and
// "gameverse:cluster:<name>:service:<service>", a sorted set of "address#hmac" members (an
// HMAC-SHA256 over cluster, service and address keyed by the [cluster] secret; entries that do not
// verify are ignored) scored by the Unix time in ms (Redis's clock, so hosts' clocks need not
// agree) at which each lease ends.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "platform/redis.hpp"

namespace gameverse::platform {

class RemoteCalls;

struct RegistryOptions {
  std::string cluster = "default";
  std::string address;  // this host, as the others reach it
  std::string secret;   // [cluster] secret: entries are signed with it, unsigned ones ignored
  std::chrono::milliseconds lease{10'000};
  size_t max_services = 10'000;  // services read back at most
};

class ServiceRegistry {
 public:
  // `local_services`: what this host serves now. Connects at once (PlatformError UNAVAILABLE when
  // Redis cannot be reached), announces, and keeps doing so on its own thread.
  ServiceRegistry(RedisAddress redis, RegistryOptions options, RemoteCalls& remote,
                  std::function<std::set<std::string>()> local_services);
  ~ServiceRegistry();  // withdraws this host's announcements
  ServiceRegistry(const ServiceRegistry&) = delete;
  ServiceRegistry& operator=(const ServiceRegistry&) = delete;

  // Announces and reads again now (a plugin was loaded or unloaded), without waiting.
  void refresh_soon();

 private:
  void run();
  void refresh();
  void withdraw_all();
  std::string services_key() const;
  std::string service_key(const std::string& service) const;
  std::string member(const std::string& service) const;  // this host's signed entry for `service`

  RedisConnection redis_;
  RegistryOptions options_;
  RemoteCalls& remote_;
  std::function<std::set<std::string>()> local_services_;
  std::set<std::string> announced_;  // touched by the registry's thread only
  bool failing_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool soon_ = false;
  std::thread thread_;
};

}  // namespace gameverse::platform
