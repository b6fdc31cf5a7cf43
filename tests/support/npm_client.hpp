// Third-party Node.js clients for tests: a folder with package.json, package-lock.json and a
// script, installed with `npm ci` into a work folder in the build tree, again whenever the lock
// file changed.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>

#include "run_command.hpp"

namespace gameverse::testing {

struct NpmInstall {
  bool ok = false;
  bool registry_unreachable = false;  // the install failed and `npm ping` fails too
  std::string output;
};

// Copies the package files and `scripts` from `source` to `work` and installs the packages there.
inline NpmInstall install_npm_client(const std::filesystem::path& source, const std::filesystem::path& work,
                                     std::initializer_list<const char*> scripts) {
  auto read = [](const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  NpmInstall result;
  std::filesystem::create_directories(work);
  // Tests that share a client run in parallel: one installs while the others wait for it.
  const int lock = ::open((work / ".install.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  struct Unlock {
    int fd;
    ~Unlock() {
      if (fd >= 0) ::close(fd);  // closing releases the lock
    }
  } unlock{lock};
  const bool installed = std::filesystem::exists(work / "node_modules") &&
                         read(work / "package-lock.json") == read(source / "package-lock.json");
  // Only what changed is copied: another test may be running a script this very moment.
  auto copy = [&](const char* file) {
    if (read(source / file) != read(work / file)) {
      std::filesystem::copy_file(source / file, work / file,
                                 std::filesystem::copy_options::overwrite_existing);
    }
  };
  for (const char* file : {"package.json", "package-lock.json"}) copy(file);
  for (const char* file : scripts) copy(file);
  if (installed) {
    result.ok = true;
    return result;
  }
  const CommandRun install = run_command("cd '" + work.string() + "' && npm ci --no-audit --no-fund");
  result.ok = install.exit_code == 0;
  result.output = install.output;
  result.registry_unreachable = !result.ok && run_command("npm ping").exit_code != 0;
  return result;
}

}  // namespace gameverse::testing
