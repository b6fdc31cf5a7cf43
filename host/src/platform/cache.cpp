#include "platform/cache.hpp"

#include <mutex>
#include <unordered_map>

#include "platform/redis.hpp"

namespace gameverse::platform {

namespace {

using Clock = std::chrono::steady_clock;

class MemoryCache final : public CacheBackend {
 public:
  std::optional<std::string> get(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = live(key);
    if (it == entries_.end()) return std::nullopt;
    return it->second.value;
  }

  void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    entries_[key] = {value, expiry(ttl)};
  }

  void erase(const std::string& key) override {
    std::lock_guard lock(mu_);
    entries_.erase(key);
  }

  int64_t increment(const std::string& key, int64_t delta, std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    auto it = live(key);
    if (it == entries_.end()) it = entries_.emplace(key, Entry{"0", expiry(ttl)}).first;
    int64_t current = 0;
    try {
      current = std::stoll(it->second.value);
    } catch (const std::exception&) {
      throw PlatformError(GV_STATUS_FAILED_PRECONDITION, "the cached value is not an integer");
    }
    it->second.value = std::to_string(current + delta);
    return current + delta;
  }

  std::string name() const override { return "memory"; }

 private:
  struct Entry {
    std::string value;
    std::optional<Clock::time_point> expires;
  };

  static std::optional<Clock::time_point> expiry(std::chrono::milliseconds ttl) {
    if (ttl.count() <= 0) return std::nullopt;
    return Clock::now() + ttl;
  }

  // The entry, or end() after dropping it when it has expired.
  std::unordered_map<std::string, Entry>::iterator live(const std::string& key) {
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.expires && *it->second.expires <= Clock::now()) {
      entries_.erase(it);
      return entries_.end();
    }
    return it;
  }

  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

class RedisCache final : public CacheBackend {
 public:
  explicit RedisCache(RedisAddress address) : redis_(std::move(address)) {}

  std::optional<std::string> get(const std::string& key) override {
    RedisReply reply = redis_.command({"GET", key});
    if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
    return std::string(reply->str, reply->len);
  }

  void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) override {
    if (ttl.count() > 0) {
      redis_.command({"SET", key, value, "PX", std::to_string(ttl.count())});
    } else {
      redis_.command({"SET", key, value});
    }
  }

  void erase(const std::string& key) override { redis_.command({"DEL", key}); }

  int64_t increment(const std::string& key, int64_t delta, std::chrono::milliseconds ttl) override {
    // INCRBY, and an expiry only when this call created the key: one atomic script.
    static const char* kScript =
        "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
        "if tonumber(ARGV[2]) > 0 and v == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
        "end "
        "return v";
    RedisReply reply =
        redis_.command({"EVAL", kScript, "1", key, std::to_string(delta), std::to_string(ttl.count())});
    if (reply->type != REDIS_REPLY_INTEGER)
      throw PlatformError(GV_STATUS_INTERNAL, "Redis: INCRBY gave no integer");
    return reply->integer;
  }

  std::string name() const override { return "redis"; }

 private:
  RedisConnection redis_;
};

}  // namespace

std::unique_ptr<CacheBackend> open_memory_cache() {
  return std::make_unique<MemoryCache>();
}

std::unique_ptr<CacheBackend> open_redis_cache(const std::string& url) {
  return std::make_unique<RedisCache>(parse_redis_url(url));
}

}  // namespace gameverse::platform
