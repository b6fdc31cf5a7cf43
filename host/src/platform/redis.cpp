#include "platform/redis.hpp"

#include <cctype>
#include <regex>
#include <string_view>

#include "platform/store.hpp"

namespace gameverse::platform {

namespace {

// "%40" → "@": user and password in a URL are percent-encoded. False on a broken escape.
bool percent_decode(std::string_view text, std::string& out) {
  out.clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      return false;
    }
    out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return true;
}

}  // namespace

std::string redacted_redis_url(const std::string& url) {
  const size_t scheme = url.find("://");
  const size_t at = url.rfind('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
  const size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;  // a user without a password
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

RedisAddress parse_redis_url(const std::string& url) {
  if (url.rfind("rediss://", 0) == 0) {
    throw PlatformError(
        GV_STATUS_INVALID_ARGUMENT,
        "'" + redacted_redis_url(url) +
            "': rediss:// (TLS) is not supported: this build's hiredis (0.14) has no TLS; "
            "reach Redis over a private network or through a TLS tunnel (stunnel, a sidecar)");
  }
  static const std::regex pattern(R"(^redis://(?:([^:@/]*)(?::([^@/]*))?@)?([^:@/]+):([0-9]{1,5})/?$)");
  std::smatch parts;
  RedisAddress address;
  if (!std::regex_match(url, parts, pattern) || !percent_decode(parts[1].str(), address.user) ||
      !percent_decode(parts[2].str(), address.password) || std::stoi(parts[4].str()) > 65535 ||
      (!address.user.empty() && address.password.empty())) {
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT,
                        "'" + redacted_redis_url(url) +
                            "' is not a Redis address like redis://127.0.0.1:6379, "
                            "redis://:password@host:6379 or redis://user:password@host:6379");
  }
  address.host = parts[3].str();
  address.port = std::stoi(parts[4].str());
  return address;
}

redisContext* connect_redis(const RedisAddress& address, std::string& error) {
  const timeval connect_timeout{0, 500'000};
  redisContext* c = redisConnectWithTimeout(address.host.c_str(), address.port, connect_timeout);
  if (c == nullptr || c->err != 0) {
    error = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    return nullptr;
  }
  if (address.password.empty()) return c;
  // AUTH within the connect timeout; the reply names no credential.
  redisSetTimeout(c, connect_timeout);
  std::vector<std::string> auth{"AUTH"};
  if (!address.user.empty()) auth.push_back(address.user);
  auth.push_back(address.password);
  void* raw = nullptr;
  if (append_redis_command(c, auth)) redisGetReply(c, &raw);
  RedisReply reply(static_cast<redisReply*>(raw));
  if (!reply) {
    error = std::string("no answer to AUTH: ") + c->errstr;
  } else if (reply->type == REDIS_REPLY_ERROR) {
    error = "Redis refused the credentials in the URL: " + std::string(reply->str, reply->len);
  } else {
    return c;
  }
  redisFree(c);
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
