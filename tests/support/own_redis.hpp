// A Redis server of a test's own on a random loopback port, for outage tests that stop it and
// start it again; stopped when the object goes.
#pragma once

#include <chrono>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "temp_dir.hpp"

namespace gameverse::testing {

class OwnRedis {
 public:
  // PEM files for a server that speaks TLS only.
  struct Tls {
    std::string cert_file;
    std::string key_file;
    std::string ca_file;  // what redis-cli trusts, to see the server up
  };

  // `password`: the server requires it (requirepass); url() carries it. `tls`: TLS only.
  explicit OwnRedis(std::string password = "", std::optional<Tls> tls = std::nullopt)
      : port_(random_port()), password_(std::move(password)), tls_(std::move(tls)) {}
  ~OwnRedis() { stop(); }
  OwnRedis(const OwnRedis&) = delete;
  OwnRedis& operator=(const OwnRedis&) = delete;

  // True once the server answers PING (within five seconds). The first start tries other ports
  // when its own is taken (a client of another test may hold it); later starts keep the port, as
  // the hosts under test were told it.
  bool start() const {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (start_once()) {
        started_ = true;
        return true;
      }
      if (started_) return false;
      port_ = random_port();
    }
    return false;
  }

 private:
  static int random_port() { return 57000 + static_cast<int>(std::random_device()() % 2000); }

  bool start_once() const {
    const std::string ports = tls_ ? "--port 0 --tls-port " + std::to_string(port_) + " --tls-cert-file " +
                                         tls_->cert_file + " --tls-key-file " + tls_->key_file +
                                         " --tls-ca-cert-file " + tls_->ca_file + " --tls-auth-clients no"
                                   : "--port " + std::to_string(port_);
    const std::string command =
        "redis-server --bind 127.0.0.1 " + ports + " --save '' --appendonly no --daemonize yes --dir " +
        dir_.path().string() + " --pidfile " + dir_.path().string() + "/redis.pid" +
        (password_.empty() ? "" : " --requirepass " + password_) + " > /dev/null 2>&1";
    if (std::system(command.c_str()) != 0) return false;
    const std::string ping = cli() + " ping 2>/dev/null | grep -q PONG";
    for (int i = 0; i < 250; ++i) {
      if (std::system(ping.c_str()) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 public:
  void stop() const {
    const std::string command = cli() + " shutdown nosave > /dev/null 2>&1";
    [[maybe_unused]] const int ignored = std::system(command.c_str());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string url() const {
    return (tls_ ? "rediss://" : "redis://") + (password_.empty() ? "" : ":" + password_ + "@") + address();
  }

 private:
  std::string cli() const {
    return "redis-cli -p " + std::to_string(port_) +
           (password_.empty() ? "" : " --no-auth-warning -a " + password_) +
           (tls_ ? " --tls --cacert " + tls_->ca_file : "");
  }

  TempDir dir_;
  mutable int port_;
  mutable bool started_ = false;
  std::string password_;
  std::optional<Tls> tls_;
};

}  // namespace gameverse::testing
