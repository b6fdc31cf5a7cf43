// A Redis server of a test's own on a random loopback port, for outage tests that stop it and
// start it again; stopped when the object goes.
#pragma once

#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include "temp_dir.hpp"

namespace gameverse::testing {

class OwnRedis {
 public:
  // `password`: the server requires it (requirepass); url() carries it.
  explicit OwnRedis(std::string password = "")
      : port_(57000 + static_cast<int>(std::random_device()() % 2000)), password_(std::move(password)) {}
  ~OwnRedis() { stop(); }
  OwnRedis(const OwnRedis&) = delete;
  OwnRedis& operator=(const OwnRedis&) = delete;

  // True once the server answers PING (within five seconds).
  bool start() const {
    const std::string command = "redis-server --bind 127.0.0.1 --port " + std::to_string(port_) +
                                " --save '' --appendonly no --daemonize yes --dir " + dir_.path().string() +
                                " --pidfile " + dir_.path().string() + "/redis.pid" +
                                (password_.empty() ? "" : " --requirepass " + password_) +
                                " > /dev/null 2>&1";
    if (std::system(command.c_str()) != 0) return false;
    const std::string ping = cli() + " ping 2>/dev/null | grep -q PONG";
    for (int i = 0; i < 250; ++i) {
      if (std::system(ping.c_str()) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  void stop() const {
    const std::string command = cli() + " shutdown nosave > /dev/null 2>&1";
    [[maybe_unused]] const int ignored = std::system(command.c_str());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string url() const {
    return "redis://" + (password_.empty() ? "" : ":" + password_ + "@") + address();
  }

 private:
  std::string cli() const {
    return "redis-cli -p " + std::to_string(port_) +
           (password_.empty() ? "" : " --no-auth-warning -a " + password_);
  }

  TempDir dir_;
  int port_;
  std::string password_;
};

}  // namespace gameverse::testing
