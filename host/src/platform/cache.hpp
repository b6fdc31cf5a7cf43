// The host's cache: values with a time to live and atomic counters (rate limiting), namespaced by
// plugin. In process by default, Redis in production; the same calls on both.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "platform/platform_error.hpp"

namespace gameverse::platform {

class CacheBackend {
 public:
  virtual ~CacheBackend() = default;
  virtual std::optional<std::string> get(const std::string& key) = 0;
  // ttl zero: no expiry.
  virtual void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) = 0;
  virtual void erase(const std::string& key) = 0;
  // Adds delta and returns the new value; a key created by this call expires after ttl (zero: never),
  // so a counter counts within a window from its first increment.
  virtual int64_t increment(const std::string& key, int64_t delta, std::chrono::milliseconds ttl) = 0;
  // Sets key to desired (nullopt: removes it) with ttl (zero: no expiry) only when its current value
  // is expected (nullopt: absent or expired), atomically; returns whether it did. Leases use it.
  virtual bool compare_and_set(const std::string& key, const std::optional<std::string>& expected,
                               const std::optional<std::string>& desired, std::chrono::milliseconds ttl) = 0;
  virtual std::string name() const = 0;
};

// In process. Expired entries are dropped as later writes pass them (a few per write), so keys
// that nobody reads again — a counter per client address — do not pile up.
class MemoryCacheBackend : public CacheBackend {
 public:
  // Entries held, expired ones not yet dropped included.
  virtual size_t entry_count() const = 0;
};

std::unique_ptr<MemoryCacheBackend> open_memory_cache();

// redis://host:port (see parse_redis_url; rediss:// verifies the server against `ca_file`, or the
// system's CAs when empty). Commands time out after a second; while Redis is unreachable every call
// fails at once with UNAVAILABLE, and reconnecting is retried with a growing backoff (100 ms to 5 s).
std::unique_ptr<CacheBackend> open_redis_cache(const std::string& url, const std::string& ca_file = "");

}  // namespace gameverse::platform
