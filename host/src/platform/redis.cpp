#include "platform/redis.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstring>
#include <future>
#include <regex>
#include <string_view>
#include <thread>

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
  static const std::regex pattern(R"(^(rediss?)://(?:([^:@/]*)(?::([^@/]*))?@)?([^:@/]+):([0-9]{1,5})/?$)");
  std::smatch parts;
  RedisAddress address;
  if (!std::regex_match(url, parts, pattern) || !percent_decode(parts[2].str(), address.user) ||
      !percent_decode(parts[3].str(), address.password) || std::stoi(parts[5].str()) > 65535 ||
      (!address.user.empty() && address.password.empty())) {
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT,
                        "'" + redacted_redis_url(url) +
                            "' is not a Redis address like redis://127.0.0.1:6379, "
                            "redis://:password@host:6379 or redis://user:password@host:6379 "
                            "(rediss:// for TLS)");
  }
  address.tls = parts[1].str() == "rediss";
  address.host = parts[4].str();
  address.port = std::stoi(parts[5].str());
  return address;
}

// TLS for hiredis 0.14, which has none: hiredis gets one end of a socket pair, and a thread
// relays between the other end and a TLS connection to Redis. All TLS I/O (the handshake too)
// happens on that thread, with SIGPIPE blocked: a write to a closed peer fails, never kills.
class TlsTunnel {
 public:
  // Connects and handshakes; the near end (hiredis's) in `near_fd`, or null and `error`.
  static std::unique_ptr<TlsTunnel> open(const RedisAddress& address, std::string& error, int& near_fd) {
    auto tunnel = std::unique_ptr<TlsTunnel>(new TlsTunnel());
    if (!tunnel->start(address, error, near_fd)) return nullptr;
    return tunnel;
  }

  ~TlsTunnel() {
    if (stop_fd_ >= 0) {
      const uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(stop_fd_, &one, sizeof one);
    }
    if (tcp_fd_ >= 0) ::shutdown(tcp_fd_, SHUT_RDWR);  // ends a read or write blocked on Redis
    if (relay_.joinable()) relay_.join();
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    for (int fd : {tcp_fd_, plain_fd_, stop_fd_}) {
      if (fd >= 0) ::close(fd);
    }
  }

 private:
  TlsTunnel() = default;

  static std::string openssl_error(std::string_view what) {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return std::string(what);
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    return std::string(what) + ": " + text;
  }

  bool start(const RedisAddress& address, std::string& error, int& near_fd) {
    // The TCP connection, within hiredis's connect timeout; then the socket is ours.
    const timeval connect_timeout{0, 500'000};
    redisContext* c = redisConnectWithTimeout(address.host.c_str(), address.port, connect_timeout);
    if (c == nullptr || c->err != 0) {
      error = c != nullptr ? c->errstr : "out of memory";
      if (c != nullptr) redisFree(c);
      return false;
    }
    if (redisEnableKeepAlive(c) != REDIS_OK) {
      error = c->errstr;
      redisFree(c);
      return false;
    }
    tcp_fd_ = redisFreeKeepFd(c);
    const timeval handshake_timeout{1, 0};
    setsockopt(tcp_fd_, SOL_SOCKET, SO_RCVTIMEO, &handshake_timeout, sizeof handshake_timeout);
    setsockopt(tcp_fd_, SOL_SOCKET, SO_SNDTIMEO, &handshake_timeout, sizeof handshake_timeout);

    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) {
      error = openssl_error("TLS: no context");
      return false;
    }
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    const bool cas = address.ca_file.empty()
                         ? SSL_CTX_set_default_verify_paths(ctx_) == 1
                         : SSL_CTX_load_verify_locations(ctx_, address.ca_file.c_str(), nullptr) == 1;
    if (!cas) {
      error =
          openssl_error("TLS: cannot load the CAs " +
                        (address.ca_file.empty() ? std::string("of the system") : "in " + address.ca_file));
      return false;
    }
    ssl_ = SSL_new(ctx_);
    if (ssl_ == nullptr || SSL_set_fd(ssl_, tcp_fd_) != 1) {
      error = openssl_error("TLS: no connection object");
      return false;
    }
    // A record that holds no data (a session ticket) returns to the relay's poll, not blocks.
    SSL_clear_mode(ssl_, SSL_MODE_AUTO_RETRY);
    // The certificate must name the host of the URL: an address, or a DNS name (sent as SNI).
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    in6_addr ignored{};
    if (inet_pton(AF_INET, address.host.c_str(), &ignored) == 1 ||
        inet_pton(AF_INET6, address.host.c_str(), &ignored) == 1) {
      X509_VERIFY_PARAM_set1_ip_asc(param, address.host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl_, address.host.c_str());
      X509_VERIFY_PARAM_set1_host(param, address.host.c_str(), 0);
    }

    int pair[2];
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      error = std::string("TLS: no socket pair: ") + std::strerror(errno);
      return false;
    }
    plain_fd_ = pair[1];
    std::promise<std::string> handshake;
    std::future<std::string> handshaken = handshake.get_future();
    relay_ = std::thread([this, handshake = std::move(handshake)]() mutable { run(handshake); });
    error = handshaken.get();
    if (!error.empty()) {
      ::close(pair[0]);
      return false;
    }
    near_fd = pair[0];
    return true;
  }

  void run(std::promise<std::string>& handshake) {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    if (SSL_connect(ssl_) != 1) {
      const long verified = SSL_get_verify_result(ssl_);
      handshake.set_value(verified != X509_V_OK ? std::string("TLS: the server's certificate is refused: ") +
                                                      X509_verify_cert_error_string(verified)
                                                : openssl_error("TLS: the handshake failed"));
      return;
    }
    const timeval none{0, 0};  // from here the relay waits as long as the connection lives
    setsockopt(tcp_fd_, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    setsockopt(tcp_fd_, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
    handshake.set_value("");
    relay();
    ::shutdown(plain_fd_, SHUT_RDWR);  // hiredis sees the connection end
  }

  void relay() {
    char buffer[16 * 1024];
    for (;;) {
      // Bytes TLS has already decrypted come first: poll() cannot see them.
      if (SSL_pending(ssl_) == 0) {
        pollfd fds[3] = {{plain_fd_, POLLIN, 0}, {tcp_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
        if (::poll(fds, 3, -1) < 0) {
          if (errno == EINTR) continue;
          return;
        }
        if (fds[2].revents != 0) return;
        if (fds[0].revents != 0) {
          const ssize_t n = ::read(plain_fd_, buffer, sizeof buffer);
          if (n <= 0 || SSL_write(ssl_, buffer, static_cast<int>(n)) <= 0)
            return;  // hiredis closed, or Redis
        }
        if (fds[1].revents == 0) continue;
      }
      const int n = SSL_read(ssl_, buffer, sizeof buffer);
      if (n <= 0) {
        const int why = SSL_get_error(ssl_, n);
        if (why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE) continue;  // a record without data
        return;  // Redis closed the connection, or it broke
      }
      for (ssize_t sent = 0; sent < n;) {
        const ssize_t m = ::send(plain_fd_, buffer + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
        if (m <= 0) return;
        sent += m;
      }
    }
  }

  int tcp_fd_ = -1;
  int plain_fd_ = -1;
  int stop_fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::thread relay_;
};

RedisLink::RedisLink(redisContext* context, std::unique_ptr<TlsTunnel> tunnel)
    : context_(context), tunnel_(std::move(tunnel)) {}

RedisLink::~RedisLink() {
  redisFree(context_);  // closes the near end first: the relay sees it and ends
}

std::unique_ptr<RedisLink> connect_redis(const RedisAddress& address, std::string& error) {
  const timeval connect_timeout{0, 500'000};
  std::unique_ptr<TlsTunnel> tunnel;
  redisContext* c = nullptr;
  if (address.tls) {
    int near_fd = -1;
    tunnel = TlsTunnel::open(address, error, near_fd);
    if (!tunnel) return nullptr;
    c = redisConnectFd(near_fd);
  } else {
    c = redisConnectWithTimeout(address.host.c_str(), address.port, connect_timeout);
    // A peer gone without a word (a dead machine) is found; the tunnel does this for TLS.
    if (c != nullptr && c->err == 0) redisEnableKeepAlive(c);
  }
  if (c == nullptr || c->err != 0) {
    error = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    return nullptr;
  }
  auto link = std::make_unique<RedisLink>(c, std::move(tunnel));
  if (address.password.empty()) return link;
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
    return link;
  }
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
  if (!link_) {
    throw PlatformError(GV_STATUS_UNAVAILABLE,
                        "cannot reach Redis at " + address_.to_string() + ": " + last_error_);
  }
}

RedisConnection::~RedisConnection() = default;

void RedisConnection::connect_locked() {
  link_ = connect_redis(address_, last_error_);
  if (!link_) {
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(5000));
    retry_at_ = std::chrono::steady_clock::now() + backoff_;
    return;
  }
  const timeval command_timeout{1, 0};
  redisSetTimeout(link_->context(), command_timeout);
  backoff_ = std::chrono::milliseconds(50);
}

RedisReply RedisConnection::command(const std::vector<std::string>& args) {
  std::lock_guard lock(mu_);
  if (!link_) {
    if (std::chrono::steady_clock::now() >= retry_at_) connect_locked();
    if (!link_) {
      throw PlatformError(GV_STATUS_UNAVAILABLE,
                          "Redis at " + address_.to_string() + " is unreachable: " + last_error_);
    }
  }
  // Append and read the reply: what redisCommandArgv does on a blocking connection.
  redisContext* c = link_->context();
  void* raw = nullptr;
  if (append_redis_command(c, args)) redisGetReply(c, &raw);
  RedisReply reply(static_cast<redisReply*>(raw));
  if (!reply) {
    // The connection broke (or timed out): drop it and reconnect after a backoff.
    last_error_ = c->errstr[0] != '\0' ? c->errstr : "connection closed";
    link_.reset();
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
