#include "platform/cache.hpp"

#include <map>
#include <mutex>
#include <unordered_map>

#include "platform/redis.hpp"

namespace gameverse::platform {

namespace {

using Clock = std::chrono::steady_clock;

class MemoryCache final : public MemoryCacheBackend {
 public:
  std::optional<std::string> get(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = live(key);
    if (it == entries_.end()) return std::nullopt;
    return it->second.value;
  }

  void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    drop_expired();
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      it = entries_.emplace(key, Entry{}).first;
    } else {
      forget_expiry(it->second);
    }
    it->second.value = value;
    set_expiry(it, ttl);
  }

  void erase(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    forget_expiry(it->second);
    entries_.erase(it);
  }

  int64_t increment(const std::string& key, int64_t delta, std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    drop_expired();
    auto it = live(key);
    if (it == entries_.end()) {
      it = entries_.emplace(key, Entry{"0", std::nullopt, {}}).first;
      set_expiry(it, ttl);
    }
    int64_t current = 0;
    try {
      current = std::stoll(it->second.value);
    } catch (const std::exception&) {
      throw PlatformError(GV_STATUS_FAILED_PRECONDITION, "the cached value is not an integer");
    }
    it->second.value = std::to_string(current + delta);
    return current + delta;
  }

  bool compare_and_set(const std::string& key, const std::optional<std::string>& expected,
                       const std::optional<std::string>& desired, std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    drop_expired();
    auto it = live(key);
    const bool present = it != entries_.end();
    if (present != expected.has_value() || (present && it->second.value != *expected)) return false;
    if (!desired) {
      if (present) {
        forget_expiry(it->second);
        entries_.erase(it);
      }
      return true;
    }
    if (present) {
      forget_expiry(it->second);
    } else {
      it = entries_.emplace(key, Entry{}).first;
    }
    it->second.value = *desired;
    set_expiry(it, ttl);
    return true;
  }

  std::string name() const override { return "memory"; }

  size_t entry_count() const override {
    std::lock_guard lock(mu_);
    return entries_.size();
  }

 private:
  using Expiries = std::multimap<Clock::time_point, std::string>;
  struct Entry {
    std::string value;
    std::optional<Clock::time_point> expires;
    Expiries::iterator in_expiries;  // valid when expires is set
  };
  using Entries = std::unordered_map<std::string, Entry>;

  // At most this many expired entries go per write: the cost stays small and bounded, and the
  // writes that make entries drop them faster than they come.
  static constexpr int kDropsPerWrite = 8;

  void set_expiry(Entries::iterator it, std::chrono::milliseconds ttl) {
    if (ttl.count() <= 0) {
      it->second.expires.reset();
      return;
    }
    it->second.expires = Clock::now() + ttl;
    it->second.in_expiries = expiries_.emplace(*it->second.expires, it->first);
  }

  void forget_expiry(Entry& entry) {
    if (entry.expires) expiries_.erase(entry.in_expiries);
    entry.expires.reset();
  }

  void drop_expired() {
    const auto now = Clock::now();
    for (int i = 0; i < kDropsPerWrite && !expiries_.empty() && expiries_.begin()->first <= now; ++i) {
      entries_.erase(expiries_.begin()->second);
      expiries_.erase(expiries_.begin());
    }
  }

  // The entry, or end() after dropping it when it has expired.
  Entries::iterator live(const std::string& key) {
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.expires && *it->second.expires <= Clock::now()) {
      forget_expiry(it->second);
      entries_.erase(it);
      return entries_.end();
    }
    return it;
  }

  mutable std::mutex mu_;
  Entries entries_;
  Expiries expiries_;
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

  bool compare_and_set(const std::string& key, const std::optional<std::string>& expected,
                       const std::optional<std::string>& desired, std::chrono::milliseconds ttl) override {
    // GET, compare, then SET (with PX when there is a ttl) or DEL: one atomic script.
    static const char* kScript =
        "local current = redis.call('GET', KEYS[1]) "
        "if ARGV[1] == '1' then if current ~= ARGV[2] then return 0 end "
        "elseif current then return 0 end "
        "if ARGV[3] == '0' then redis.call('DEL', KEYS[1]) "
        "elseif tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5]) "
        "else redis.call('SET', KEYS[1], ARGV[4]) end "
        "return 1";
    RedisReply reply =
        redis_.command({"EVAL", kScript, "1", key, expected ? "1" : "0", expected.value_or(""),
                        desired ? "1" : "0", desired.value_or(""), std::to_string(ttl.count())});
    if (reply->type != REDIS_REPLY_INTEGER)
      throw PlatformError(GV_STATUS_INTERNAL, "Redis: the compare-and-set script gave no integer");
    return reply->integer == 1;
  }

  std::string name() const override { return "redis"; }

 private:
  RedisConnection redis_;
};

}  // namespace

std::unique_ptr<MemoryCacheBackend> open_memory_cache() {
  return std::make_unique<MemoryCache>();
}

std::unique_ptr<CacheBackend> open_redis_cache(const std::string& url, const std::string& ca_file) {
  RedisAddress address = parse_redis_url(url);
  address.ca_file = ca_file;
  return std::make_unique<RedisCache>(address);
}

}  // namespace gameverse::platform
