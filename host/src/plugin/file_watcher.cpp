#include "plugin/file_watcher.hpp"

#include "platform/thread_priority.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cstring>

namespace gameverse::plugin {

FileWatcher::FileWatcher(std::chrono::milliseconds debounce,
                         std::function<std::vector<std::filesystem::path>()> files,
                         std::function<void()> on_change)
    : list_files_(std::move(files)), debounce_(debounce), on_change_(std::move(on_change)) {
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (inotify_fd_ < 0 || stop_fd_ < 0) {
    throw std::runtime_error(std::string("cannot watch files: ") + std::strerror(errno));
  }
  watch(list_files_());
  thread_ = std::thread([this] { run(); });
}

void FileWatcher::refresh() {
  watch(list_files_());
}

FileWatcher::~FileWatcher() {
  const uint64_t one = 1;
  [[maybe_unused]] auto written = ::write(stop_fd_, &one, sizeof one);
  thread_.join();
  ::close(inotify_fd_);
  ::close(stop_fd_);
}

void FileWatcher::watch(const std::vector<std::filesystem::path>& files) {
  std::lock_guard lock(mu_);
  files_.clear();
  std::set<std::filesystem::path> directories;
  for (const auto& file : files) {
    const auto absolute = std::filesystem::absolute(file).lexically_normal();
    files_.insert(absolute);
    directories.insert(absolute.parent_path());
  }
  for (auto it = directories_.begin(); it != directories_.end();) {
    if (!directories.contains(it->second)) {
      inotify_rm_watch(inotify_fd_, it->first);
      it = directories_.erase(it);
    } else {
      directories.erase(it->second);
      ++it;
    }
  }
  for (const auto& directory : directories) {
    const int wd = inotify_add_watch(inotify_fd_, directory.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO);
    if (wd < 0) {
      spdlog::warn("cannot watch {} for changes: {}", directory.string(), std::strerror(errno));
      continue;
    }
    directories_[wd] = directory;
  }
}

void FileWatcher::run() {
  platform::lower_this_thread_priority();  // it runs reloads
  alignas(inotify_event) char buffer[16 * 1024];
  bool pending = false;
  for (;;) {
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    const int timeout = pending ? static_cast<int>(debounce_.count()) : -1;
    const int ready = ::poll(fds, 2, timeout);
    if (ready < 0 && errno != EINTR) return;
    if (fds[1].revents & POLLIN) return;
    if (ready == 0) {  // quiet for the debounce time
      pending = false;
      on_change_();
      refresh();
      continue;
    }
    if (!(fds[0].revents & POLLIN)) continue;
    const ssize_t length = ::read(inotify_fd_, buffer, sizeof buffer);
    if (length <= 0) continue;
    std::lock_guard lock(mu_);
    for (ssize_t offset = 0; offset < length;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
      offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      auto directory = directories_.find(event->wd);
      if (directory == directories_.end() || event->len == 0) continue;
      if (files_.contains(directory->second / event->name)) pending = true;
    }
  }
}

}  // namespace gameverse::plugin
