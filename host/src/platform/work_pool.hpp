// The host's pool for plugins' blocking work (gv_host_api.run_blocking, and timers and
// subscriptions flagged GV_RUN_BLOCKING). Each owner (a plugin generation) may run at most
// `per_owner_threads` items at once and queue at most `per_owner_queue`; free threads go round
// the owners in turn, so one owner saturating its share leaves the rest of the pool to the others.
#pragma once

#include <gameverse/abi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gameverse::platform {

class MetricsRegistry;

class WorkPool {
 public:
  struct Limits {
    size_t threads = 8;            // the whole pool
    size_t per_owner_threads = 4;  // how many of them one owner may use at once
    size_t per_owner_queue = 1024;
    // What one owner's waiting items may hold (their requests' bytes), so that a client sending
    // large requests to a slow plugin cannot make its queue hold gigabytes.
    size_t per_owner_queue_bytes = 64 * 1024 * 1024;
  };

  // Called exactly once: GV_STATUS_OK to do the work, another code when it is dropped.
  using Work = std::function<void(gv_status_code)>;
  // Checked just before the work would start: GV_STATUS_OK to run it, another code to skip it
  // (a cancelled call, a passed deadline).
  using Precheck = std::function<gv_status_code()>;

  // `metrics` (may be null) receives queue depth, wait and run times per owner's name.
  WorkPool(Limits limits, MetricsRegistry* metrics);
  ~WorkPool();  // queued work is dropped with GV_STATUS_UNAVAILABLE; running work is waited for
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `work` for `owner` (named `owner_name` in metrics and messages). Items with the same
  // non-zero `serial` run one at a time, in the order they were queued. GV_STATUS_OK, or
  // GV_STATUS_RESOURCE_EXHAUSTED (with `why` filled in) when the owner's queue is full — in items,
  // or in the `bytes` its items hold — once the items whose precheck fails are dropped; `work` is
  // then not called. With `coalesce`, an item whose serial is already queued is not queued again
  // (GV_STATUS_ALREADY_EXISTS, `work` not called). GV_STATUS_UNAVAILABLE once the owner is closed.
  gv_status_code submit(const void* owner, const std::string& owner_name, uint64_t serial, Work work,
                        Precheck precheck = {}, bool coalesce = false, std::string* why = nullptr,
                        size_t bytes = 0);

  // Drops the queued items of `serial` (GV_STATUS_CANCELLED) and waits for its running one, unless
  // called from that very item.
  void cancel_serial(const void* owner, uint64_t serial);
  // Drops the owner's queued items (GV_STATUS_UNAVAILABLE) and waits for its running ones.
  void cancel_all(const void* owner);
  // Waits until the owner has nothing queued or running (but what runs on this thread), at most
  // until `deadline`: for a retiring generation, whose subscriptions' last messages must still be
  // handled. False when work was still there at the deadline.
  bool drain(const void* owner, std::chrono::steady_clock::time_point deadline);
  // Refuses the owner's further work (GV_STATUS_UNAVAILABLE), drops what is queued and waits for
  // what runs; then forgets the owner, whose address a later generation may get.
  void close(const void* owner);

  size_t queued(const void* owner) const;
  size_t running(const void* owner) const;
  const Limits& limits() const { return limits_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Item {
    uint64_t serial;
    Work work;
    Precheck precheck;
    Clock::time_point queued_at;
    size_t bytes;
  };
  struct Owner {
    std::string name;
    std::deque<Item> queue;
    size_t queued_bytes = 0;
    bool closed = false;
    size_t running = 0;
    std::vector<uint64_t> running_serials;
    bool in_ready_list = false;
  };
  struct OwnerMetrics {
    uint64_t queued = 0, running = 0, wait = 0, run = 0, rejected = 0, skipped = 0;
  };

  void run();
  // The next item some owner may start now, taken out of its queue; false when none may.
  bool take_next(const void*& owner, Item& item);
  bool runnable(const Owner& owner) const;
  void mark_ready(const void* owner, Owner& state);
  // Owners are generations: their entry goes once they have nothing queued or running (and are
  // not closed: a closed entry stays until close() forgets it).
  void forget_if_idle(const void* owner);
  // Drops queued items whose precheck says they are not to run; under the lock, their work is
  // appended to `dropped` to be called outside it.
  void take_skippable(Owner& owner, std::vector<std::pair<Item, gv_status_code>>& dropped);
  void run_dropped(std::vector<std::pair<Item, gv_status_code>>& dropped, const std::string& name);
  void wait_idle_locked(std::unique_lock<std::mutex>& lock, const void* owner, uint64_t serial_or_zero,
                        bool only_serial);
  void drop_queued(std::unique_lock<std::mutex>& lock, const void* owner,
                   const std::function<bool(const Item&)>& which, gv_status_code status);
  void record_depth(const Owner& owner, bool queued, bool running);
  const OwnerMetrics* metrics_of(const std::string& name);

  Limits limits_;
  MetricsRegistry* metrics_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable finished_;
  std::map<const void*, Owner> owners_;
  std::list<const void*> ready_;  // owners with runnable work, in turn
  std::map<std::string, OwnerMetrics> metric_ids_;
  // (owner, serial) of the items running now, with the thread that runs each.
  std::multimap<const void*, std::pair<uint64_t, std::thread::id>> running_;
  bool stopping_ = false;
  int waiting_for_owners_ = 0;  // callers in cancel_serial, cancel_all or drain
  std::vector<std::thread> threads_;
};

}  // namespace gameverse::platform
