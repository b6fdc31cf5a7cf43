#include "platform/cache.hpp"

#include <hiredis/hiredis.h>

#include <mutex>
#include <regex>
#include <unordered_map>

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
      throw StoreError(GV_STATUS_FAILED_PRECONDITION, "the cached value is not an integer");
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

// One connection behind a mutex: Redis answers in order, and commands are short.
class RedisCache final : public CacheBackend {
 public:
  RedisCache(std::string host, int port) : host_(std::move(host)), port_(port) {
    std::lock_guard lock(mu_);
    connect_locked();
    if (context_ == nullptr)
      throw StoreError(GV_STATUS_UNAVAILABLE, "cannot reach Redis at " + where() + ": " + last_error_);
  }
  ~RedisCache() override {
    if (context_ != nullptr) redisFree(context_);
  }

  std::optional<std::string> get(const std::string& key) override {
    Reply reply = command({"GET", key});
    if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
    return std::string(reply->str, reply->len);
  }

  void set(const std::string& key, const std::string& value, std::chrono::milliseconds ttl) override {
    if (ttl.count() > 0) {
      command({"SET", key, value, "PX", std::to_string(ttl.count())});
    } else {
      command({"SET", key, value});
    }
  }

  void erase(const std::string& key) override { command({"DEL", key}); }

  int64_t increment(const std::string& key, int64_t delta, std::chrono::milliseconds ttl) override {
    // INCRBY, and an expiry only when this call created the key: one atomic script.
    static const char* kScript =
        "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
        "if tonumber(ARGV[2]) > 0 and v == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
        "end "
        "return v";
    Reply reply = command({"EVAL", kScript, "1", key, std::to_string(delta), std::to_string(ttl.count())});
    if (reply->type != REDIS_REPLY_INTEGER)
      throw StoreError(GV_STATUS_INTERNAL, "Redis: INCRBY gave no integer");
    return reply->integer;
  }

  std::string name() const override { return "redis"; }

 private:
  struct FreeReply {
    void operator()(redisReply* r) const { freeReplyObject(r); }
  };
  using Reply = std::unique_ptr<redisReply, FreeReply>;

  std::string where() const { return host_ + ":" + std::to_string(port_); }

  void connect_locked() {
    const timeval connect_timeout{0, 500'000};
    redisContext* c = redisConnectWithTimeout(host_.c_str(), port_, connect_timeout);
    if (c == nullptr || c->err) {
      last_error_ = c != nullptr ? c->errstr : "out of memory";
      if (c != nullptr) redisFree(c);
      context_ = nullptr;
      backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(5000));
      retry_at_ = Clock::now() + backoff_;
      return;
    }
    const timeval command_timeout{1, 0};
    redisSetTimeout(c, command_timeout);
    context_ = c;
    backoff_ = std::chrono::milliseconds(50);
  }

  Reply command(const std::vector<std::string>& args) {
    std::lock_guard lock(mu_);
    if (context_ == nullptr) {
      if (Clock::now() < retry_at_) {
        throw StoreError(GV_STATUS_UNAVAILABLE, "Redis at " + where() + " is unreachable: " + last_error_);
      }
      connect_locked();
      if (context_ == nullptr) {
        throw StoreError(GV_STATUS_UNAVAILABLE, "Redis at " + where() + " is unreachable: " + last_error_);
      }
    }
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    Reply reply(static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lengths.data())));
    if (!reply) {
      // The connection broke (or timed out): drop it and reconnect after a backoff.
      last_error_ = context_->errstr;
      redisFree(context_);
      context_ = nullptr;
      backoff_ = std::chrono::milliseconds(100);
      retry_at_ = Clock::now() + backoff_;
      throw StoreError(GV_STATUS_UNAVAILABLE, "Redis at " + where() + " failed: " + last_error_);
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      throw StoreError(GV_STATUS_FAILED_PRECONDITION, "Redis: " + std::string(reply->str, reply->len));
    }
    return reply;
  }

  std::string host_;
  int port_;
  std::mutex mu_;
  redisContext* context_ = nullptr;
  std::string last_error_;
  std::chrono::milliseconds backoff_{50};
  Clock::time_point retry_at_{};
};

}  // namespace

std::unique_ptr<CacheBackend> open_memory_cache() {
  return std::make_unique<MemoryCache>();
}

std::unique_ptr<CacheBackend> open_redis_cache(const std::string& url) {
  static const std::regex pattern(R"(^redis://([^:/]+):([0-9]{1,5})/?$)");
  std::smatch parts;
  if (!std::regex_match(url, parts, pattern)) {
    throw StoreError(GV_STATUS_INVALID_ARGUMENT,
                     "'" + url + "' is not a Redis address like redis://127.0.0.1:6379");
  }
  return std::make_unique<RedisCache>(parts[1].str(), std::stoi(parts[2].str()));
}

}  // namespace gameverse::platform
