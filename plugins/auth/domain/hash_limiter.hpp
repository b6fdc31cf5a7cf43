// A bound on password hashing (Argon2id: tens of milliseconds of a core and tens of MiB each):
// `workers` hashes at once and `queue` callers waiting for one; anyone beyond is told at once that
// auth is busy. Hashing callers hold a thread of the plugin's share of the host's pool while they
// hash or wait, so workers + queue is kept below that share: the calls that do not hash (refresh,
// verification keys, logout) then always find a thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>

namespace gameverse::auth {

class HashLimiter {
 public:
  HashLimiter(size_t workers, size_t queue) : workers_(workers), queue_(queue) {}

  // What the caller on this thread waits for at most: its call's deadline and cancellation. Set
  // by the API for the duration of a call; without one a caller waits until a worker is free.
  class CallScope {
   public:
    CallScope(std::chrono::system_clock::time_point deadline, std::function<bool()> cancelled);
    ~CallScope();
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

   private:
    friend class HashLimiter;
    std::chrono::system_clock::time_point deadline_;
    std::function<bool()> cancelled_;
    CallScope* outer_;
  };

  // A worker, held until the slot is dropped.
  class Slot {
   public:
    explicit Slot(HashLimiter* owner) : owner_(owner) {}
    Slot(Slot&& other) noexcept : owner_(other.owner_) { other.owner_ = nullptr; }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    Slot& operator=(Slot&&) = delete;
    ~Slot();

   private:
    HashLimiter* owner_;
  };

  // Throws AuthError kBusy when every worker is taken and `queue` callers already wait, or when
  // the call's deadline passes or it is cancelled while waiting.
  Slot acquire();
  // kBusy at once when acquire() would be refused now: lets a caller skip its cheaper work too.
  void check_not_full() const;

 private:
  void release();

  const size_t workers_;
  const size_t queue_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  size_t working_ = 0;
  size_t waiting_ = 0;
};

}  // namespace gameverse::auth
