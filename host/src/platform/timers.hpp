// Timers for plugins, on one host thread. Periodic timers keep their rate: each run is due one
// period after the previous one was due, so lateness never accumulates.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace gameverse::platform {

class TimerService {
 public:
  using Clock = std::chrono::steady_clock;

  TimerService();
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  // Returns the timer's id. `owner` groups timers (a plugin generation) for cancel_all.
  uint64_t start(const void* owner, std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                 std::function<void()> callback);
  // When it returns the callback is not running and will not run (unless called from it).
  void cancel(uint64_t id);
  // Only stops future runs: for callers that may hold a lock the running callback needs.
  void cancel_nowait(uint64_t id);
  void cancel_all(const void* owner);
  size_t active(const void* owner) const;

 private:
  using DueQueue = std::multimap<Clock::time_point, uint64_t>;
  struct Timer {
    const void* owner;
    Clock::time_point due;
    std::chrono::nanoseconds period;
    std::function<void()> callback;
    DueQueue::iterator queued;  // its place in due_; due_.end() while it runs
  };
  void run();
  // Removes a timer and its place in the queue (with mu_ held).
  void erase_locked(std::map<uint64_t, Timer>::iterator it);
  void wait_not_running(std::unique_lock<std::mutex>& lock, uint64_t id);

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable ran_;
  std::map<uint64_t, Timer> timers_;
  DueQueue due_;  // cancelled timers leave it at once: calls with long deadlines start and cancel one each
  uint64_t next_id_ = 1;
  // What the thread waits for: a timer due earlier must wake it. min() while it runs timers.
  Clock::time_point sleeping_until_ = Clock::time_point::min();
  uint64_t running_ = 0;  // the id whose callback runs now
  const void* running_owner_ = nullptr;
  std::thread::id thread_id_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace gameverse::platform
