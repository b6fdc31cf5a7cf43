// Runs a shell command and returns what it printed (stdout and stderr) with its exit code: for
// tests that drive real tools (gvctl, curl, promtool, node).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace gameverse::testing {

struct CommandRun {
  int exit_code;       // -1 when the command did not exit normally
  std::string output;  // stdout and stderr, as bytes
};

inline CommandRun run_command(const std::string& command) {
  CommandRun result{-1, ""};
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t got = 0;
  while ((got = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, got);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace gameverse::testing
