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

}  // namespace gameverse::platform
