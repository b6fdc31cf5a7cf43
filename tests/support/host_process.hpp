// Runs the real gameverse binary for a test: writes its config, starts it on port 0, waits for
// the port file, and stops it with SIGTERM. Its log is kept for assertions and for failures.
#pragma once

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "eventually.hpp"
#include "temp_dir.hpp"

namespace gameverse::testing {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class HostProcess {
 public:
  // Starts the host with `config_toml` as its config file; throws with the host's log when it
  // does not come up within `startup_limit`.
  explicit HostProcess(const std::string& config_toml,
                       std::chrono::seconds startup_limit = std::chrono::seconds(30)) {
    config_path_ = dir_.path() / "gameverse.toml";
    log_path_ = dir_.path() / "host.log";
    const auto port_file = dir_.path() / "port";
    const auto http_port_file = dir_.path() / "http-port";
    std::ofstream(config_path_) << config_toml;
    pid_ = fork();
    if (pid_ == 0) {
      const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(log_fd, STDERR_FILENO);
      dup2(log_fd, STDOUT_FILENO);
      execl(GV_HOST_BINARY, GV_HOST_BINARY, "--config", config_path_.c_str(), "--listen", "127.0.0.1:0",
            "--port-file", port_file.c_str(), "--http-port-file", http_port_file.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto give_up = std::chrono::steady_clock::now() + startup_limit;
    while (!std::filesystem::exists(port_file)) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("the host exited during start-up:\n" + log());
      }
      if (std::chrono::steady_clock::now() > give_up) {
        stop();
        throw std::runtime_error("the host did not start serving in time:\n" + log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    port_ = std::stoi(read_file(port_file));
    // Written before the gRPC port's file, when [http] listen is set.
    if (std::filesystem::exists(http_port_file)) http_port_ = std::stoi(read_file(http_port_file));
  }

  ~HostProcess() {
    if (pid_ > 0) stop();
  }

  // Sends SIGTERM and waits; returns the exit code (or 128 + signal).
  int stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

  void signal(int sig) const { kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  // Rewrites the config file in place of the old one (by rename, as an editor or a deploy does).
  void write_config(const std::string& config_toml) const {
    const auto tmp = config_path_.string() + ".tmp";
    std::ofstream(tmp) << config_toml;
    std::filesystem::rename(tmp, config_path_);
  }
  int port() const { return port_; }
  // The [http] port; 0 when the config has none.
  int http_port() const { return http_port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return read_file(log_path_); }

  std::shared_ptr<grpc::Channel> channel() const {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
    return grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
  }

 private:
  TempDir dir_;
  std::filesystem::path config_path_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
  int http_port_ = 0;
  int exit_code_ = -1;
};

}  // namespace gameverse::testing
