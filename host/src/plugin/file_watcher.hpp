// Watches files with inotify and calls back once changes have settled. Only complete files
// count: a close after writing or a rename into place, never a half-written file.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace gameverse::plugin {

class FileWatcher {
 public:
  // Watches the files `files` names (their directories, so the files need not exist yet).
  // `on_change` runs on the watcher's thread, `debounce` after the last change in a burst; the
  // watched set is taken from `files` again after it.
  FileWatcher(std::chrono::milliseconds debounce, std::function<std::vector<std::filesystem::path>()> files,
              std::function<void()> on_change);
  ~FileWatcher();
  FileWatcher(const FileWatcher&) = delete;
  FileWatcher& operator=(const FileWatcher&) = delete;

  // Takes the watched set from `files` again (after a change made elsewhere).
  void refresh();

 private:
  void watch(const std::vector<std::filesystem::path>& files);
  void run();

  std::function<std::vector<std::filesystem::path>()> list_files_;
  std::chrono::milliseconds debounce_;
  std::function<void()> on_change_;
  int inotify_fd_ = -1;
  int stop_fd_ = -1;
  std::mutex mu_;
  std::map<int, std::filesystem::path> directories_;  // watch descriptor -> directory
  std::set<std::filesystem::path> files_;
  std::thread thread_;
};

}  // namespace gameverse::plugin
