#include "platform/timers.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace gameverse::platform {

TimerService::TimerService() : thread_([this] { run(); }) {}

TimerService::~TimerService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

uint64_t TimerService::start(const void* owner, std::chrono::nanoseconds delay,
                             std::chrono::nanoseconds period, std::function<void()> callback) {
  std::lock_guard lock(mu_);
  const uint64_t id = next_id_++;
  const auto due = Clock::now() + delay;
  const auto queued = due_.emplace(due, id);
  timers_.emplace(id, Timer{owner, due, period, std::move(callback), queued});
  // The thread sleeps until the earliest timer it knew of: only a timer due before that needs to
  // wake it. (Calls with deadlines start and cancel one each; a wake per call costs two context
  // switches.) A thread that wakes for a timer cancelled meanwhile just sleeps again.
  if (due < sleeping_until_) wake_.notify_one();
  return id;
}

void TimerService::erase_locked(std::map<uint64_t, Timer>::iterator it) {
  if (it->second.queued != due_.end()) due_.erase(it->second.queued);
  timers_.erase(it);
}

void TimerService::wait_not_running(std::unique_lock<std::mutex>& lock, uint64_t id) {
  if (std::this_thread::get_id() == thread_id_) return;  // from its own callback: it finishes its run
  ran_.wait(lock, [&] { return running_ != id; });
}

void TimerService::cancel(uint64_t id) {
  std::unique_lock lock(mu_);
  if (auto it = timers_.find(id); it != timers_.end()) erase_locked(it);
  wait_not_running(lock, id);
}

void TimerService::cancel_nowait(uint64_t id) {
  std::lock_guard lock(mu_);
  if (auto it = timers_.find(id); it != timers_.end()) erase_locked(it);
}

void TimerService::cancel_all(const void* owner) {
  std::unique_lock lock(mu_);
  for (auto it = timers_.begin(); it != timers_.end();) {
    if (it->second.owner == owner) {
      erase_locked(it++);
    } else {
      ++it;
    }
  }
  // The timer running now may belong to the owner: wait for its run to end.
  if (std::this_thread::get_id() != thread_id_) {
    ran_.wait(lock, [&] { return running_ == 0 || running_owner_ != owner; });
  }
}

size_t TimerService::active(const void* owner) const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(
      timers_.begin(), timers_.end(), [owner](const auto& entry) { return entry.second.owner == owner; }));
}

void TimerService::run() {
  std::unique_lock lock(mu_);
  thread_id_ = std::this_thread::get_id();
  while (!stopping_) {
    if (due_.empty()) {
      sleeping_until_ = Clock::time_point::max();
      wake_.wait(lock);
      continue;
    }
    const auto [when, id] = *due_.begin();
    if (when > Clock::now()) {
      sleeping_until_ = when;
      wake_.wait_until(lock, when);
      continue;
    }
    sleeping_until_ = Clock::time_point::min();  // running: it looks at the queue before sleeping
    due_.erase(due_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled
    it->second.queued = due_.end();
    std::function<void()> callback = it->second.callback;
    running_ = id;
    running_owner_ = it->second.owner;
    lock.unlock();
    try {
      callback();
    } catch (const std::exception& e) {
      spdlog::error("a timer callback threw: {}", e.what());
    }
    lock.lock();
    running_ = 0;
    running_owner_ = nullptr;
    ran_.notify_all();
    it = timers_.find(id);
    if (it == timers_.end()) continue;
    if (it->second.period.count() > 0) {
      it->second.due += it->second.period;
      it->second.queued = due_.emplace(it->second.due, id);
    } else {
      timers_.erase(it);
    }
  }
}

}  // namespace gameverse::platform
