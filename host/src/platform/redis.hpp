// A Redis command connection shared by the cache and pub/sub: one connection behind a mutex
// (Redis answers in order and the commands are short), commands time out after a second, and a
// lost connection is retried with a growing backoff while every call fails at once.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "platform/platform_error.hpp"

namespace gameverse::platform {

struct RedisAddress {
  std::string host;
  int port = 0;
  std::string user;      // AUTH user (Redis 6 ACL); empty: the default user
  std::string password;  // AUTH password; empty: no AUTH. Never logged or put in a message.
  bool tls = false;      // rediss://
  std::string ca_file;   // PEM CAs the server's certificate must chain to; empty: the system's
  // host:port, for messages and logs: without the credentials.
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

// redis://host:port, redis://:password@host:port or redis://user:password@host:port (user and
// password percent-encoded), and the same with rediss:// for TLS; PlatformError INVALID_ARGUMENT
// naming the expected form otherwise, with the password masked.
RedisAddress parse_redis_url(const std::string& url);

// `url` with the password, if any, replaced by "***": for messages and logs.
std::string redacted_redis_url(const std::string& url);

class TlsTunnel;

// One connection: hiredis's context and, for rediss://, the TLS tunnel whose near end its
// socket is (hiredis 0.14 speaks no TLS: a thread of the tunnel's relays between the two).
class RedisLink {
 public:
  RedisLink(redisContext* context, std::unique_ptr<TlsTunnel> tunnel);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;
  redisContext* context() const { return context_; }

 private:
  redisContext* context_;
  std::unique_ptr<TlsTunnel> tunnel_;
};

// A blocking connection to `address`, made within half a second (TLS: plus a second for the
// handshake, the server's certificate verified against ca_file or the system's CAs and the
// host name) and authenticated when the address has a password; null with the reason in
// `error` otherwise.
std::unique_ptr<RedisLink> connect_redis(const RedisAddress& address, std::string& error);

// Queues one command (binary-safe arguments) on `c` without sending it; false on failure.
bool append_redis_command(redisContext* c, const std::vector<std::string>& args);

struct FreeRedisReply {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using RedisReply = std::unique_ptr<redisReply, FreeRedisReply>;

class RedisConnection {
 public:
  // Connects at once: PlatformError UNAVAILABLE when Redis cannot be reached.
  explicit RedisConnection(RedisAddress address);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // PlatformError UNAVAILABLE while Redis is unreachable, FAILED_PRECONDITION for an error reply.
  RedisReply command(const std::vector<std::string>& args);
  const RedisAddress& address() const { return address_; }

 private:
  void connect_locked();

  RedisAddress address_;
  std::mutex mu_;
  std::unique_ptr<RedisLink> link_;
  std::string last_error_;
  std::chrono::milliseconds backoff_{50};
  std::chrono::steady_clock::time_point retry_at_{};
};

}  // namespace gameverse::platform
