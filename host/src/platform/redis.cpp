#include "platform/redis.hpp"

#include <regex>

#include "platform/store.hpp"

namespace gameverse::platform {

RedisAddress parse_redis_url(const std::string& url) {
  static const std::regex pattern(R"(^redis://([^:/]+):([0-9]{1,5})/?$)");
  std::smatch parts;
  if (!std::regex_match(url, parts, pattern)) {
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT,
                        "'" + url + "' is not a Redis address like redis://127.0.0.1:6379");
  }
  return {parts[1].str(), std::stoi(parts[2].str())};
}

redisContext* connect_redis(const RedisAddress& address, std::string& error) {
  const timeval connect_timeout{0, 500'000};
  redisContext* c = redisConnectWithTimeout(address.host.c_str(), address.port, connect_timeout);
  if (c != nullptr && c->err == 0) return c;
  error = c != nullptr ? c->errstr : "out of memory";
  if (c != nullptr) redisFree(c);
  return nullptr;
}

bool append_redis_command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  return redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data()) == REDIS_OK;
}

RedisConnection::RedisConnection(RedisAddress address) : address_(std::move(address)) {
  std::lock_guard lock(mu_);
  connect_locked();
  if (context_ == nullptr) {
    throw PlatformError(GV_STATUS_UNAVAILABLE,
                        "cannot reach Redis at " + address_.to_string() + ": " + last_error_);
  }
}

RedisConnection::~RedisConnection() {
  if (context_ != nullptr) redisFree(context_);
}

void RedisConnection::connect_locked() {
  redisContext* c = connect_redis(address_, last_error_);
  if (c == nullptr) {
    context_ = nullptr;
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(5000));
    retry_at_ = std::chrono::steady_clock::now() + backoff_;
    return;
  }
  const timeval command_timeout{1, 0};
  redisSetTimeout(c, command_timeout);
  context_ = c;
  backoff_ = std::chrono::milliseconds(50);
}

RedisReply RedisConnection::command(const std::vector<std::string>& args) {
  std::lock_guard lock(mu_);
  if (context_ == nullptr) {
    if (std::chrono::steady_clock::now() >= retry_at_) connect_locked();
    if (context_ == nullptr) {
      throw PlatformError(GV_STATUS_UNAVAILABLE,
                          "Redis at " + address_.to_string() + " is unreachable: " + last_error_);
    }
  }
  // Append and read the reply: what redisCommandArgv does on a blocking connection.
  void* raw = nullptr;
  if (append_redis_command(context_, args)) redisGetReply(context_, &raw);
  RedisReply reply(static_cast<redisReply*>(raw));
  if (!reply) {
    // The connection broke (or timed out): drop it and reconnect after a backoff.
    last_error_ = context_->errstr;
    redisFree(context_);
    context_ = nullptr;
    backoff_ = std::chrono::milliseconds(100);
    retry_at_ = std::chrono::steady_clock::now() + backoff_;
    throw PlatformError(GV_STATUS_UNAVAILABLE,
                        "Redis at " + address_.to_string() + " failed: " + last_error_);
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    throw PlatformError(GV_STATUS_FAILED_PRECONDITION, "Redis: " + std::string(reply->str, reply->len));
  }
  return reply;
}

}  // namespace gameverse::platform
