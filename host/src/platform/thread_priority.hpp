// Background work (reloads, retiring generations, file watching) runs at a lower priority than
// the threads serving calls, so a reload on a busy single core does not stall them.
#pragma once

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gameverse::platform {

inline void lower_this_thread_priority() {
  constexpr int kBackgroundNice = 10;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kBackgroundNice) != 0) {
    spdlog::debug("cannot lower a background thread's priority: {}", std::strerror(errno));
  }
}

// Lowers the calling thread's priority for a scope and restores it: for background work that
// runs on a shared pool thread.
class BackgroundPriority {
 public:
  BackgroundPriority() {
    errno = 0;
    previous_ = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
    lowered_ = errno == 0;
    if (lowered_) lower_this_thread_priority();
  }
  ~BackgroundPriority() {
    // Raising it back needs no privilege only up to the value it had: which is all this does.
    if (lowered_ && setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), previous_) != 0) {
      spdlog::debug("cannot restore a pool thread's priority: {}", std::strerror(errno));
    }
  }
  BackgroundPriority(const BackgroundPriority&) = delete;
  BackgroundPriority& operator=(const BackgroundPriority&) = delete;

 private:
  int previous_ = 0;
  bool lowered_ = false;
};

}  // namespace gameverse::platform
