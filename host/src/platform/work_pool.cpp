#include "platform/work_pool.hpp"

#include <spdlog/spdlog.h>

#include <sched.h>

#include <algorithm>

#include "platform/metrics.hpp"

namespace gameverse::platform {

namespace {

const std::vector<double> kSecondsBuckets = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                             0.05,   0.1,    0.25,  0.5,    1,     2.5,  10};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run_guarded(const WorkPool::Work& work, gv_status_code status, const std::string& owner) {
  try {
    work(status);
  } catch (const std::exception& e) {
    spdlog::error("blocking work of '{}' threw: {}", owner, e.what());
  } catch (...) {
    spdlog::error("blocking work of '{}' threw", owner);
  }
}

gv_status_code precheck_guarded(const WorkPool::Precheck& precheck, const std::string& owner) {
  if (!precheck) return GV_STATUS_OK;
  try {
    return precheck();
  } catch (const std::exception& e) {
    spdlog::error("the precheck of blocking work of '{}' threw: {}", owner, e.what());
    return GV_STATUS_INTERNAL;
  }
}

}  // namespace

WorkPool::WorkPool(Limits limits, MetricsRegistry* metrics) : limits_(limits), metrics_(metrics) {
  limits_.threads = std::max<size_t>(limits_.threads, 1);
  limits_.per_owner_threads = std::clamp<size_t>(limits_.per_owner_threads, 1, limits_.threads);
  limits_.per_owner_queue = std::max<size_t>(limits_.per_owner_queue, 1);
  limits_.per_owner_queue_bytes = std::max<size_t>(limits_.per_owner_queue_bytes, 1);
  threads_.reserve(limits_.threads);
  for (size_t i = 0; i < limits_.threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkPool::~WorkPool() {
  {
    std::unique_lock lock(mu_);
    stopping_ = true;
    std::vector<const void*> owners;
    for (const auto& [owner, state] : owners_) owners.push_back(owner);
    for (const void* owner : owners) {
      drop_queued(
          lock, owner, [](const Item&) { return true; }, GV_STATUS_UNAVAILABLE);
    }
  }
  wake_.notify_all();
  for (auto& thread : threads_) thread.join();
}

const WorkPool::OwnerMetrics* WorkPool::metrics_of(const std::string& name) {
  if (metrics_ == nullptr) return nullptr;
  auto it = metric_ids_.find(name);
  if (it != metric_ids_.end()) return &it->second;
  OwnerMetrics ids;
  try {
    ids.queued = metrics_->register_metric(
        name,
        {GV_METRIC_GAUGE, "gameverse_blocking_queued", "Blocking work waiting for a pool thread", {}, {}});
    ids.running = metrics_->register_metric(
        name, {GV_METRIC_GAUGE, "gameverse_blocking_running", "Blocking work running on the pool", {}, {}});
    ids.wait = metrics_->register_metric(name, {GV_METRIC_HISTOGRAM,
                                                "gameverse_blocking_wait_seconds",
                                                "Time blocking work waited before it ran",
                                                {},
                                                kSecondsBuckets});
    ids.run = metrics_->register_metric(name, {GV_METRIC_HISTOGRAM,
                                               "gameverse_blocking_run_seconds",
                                               "Time blocking work ran",
                                               {},
                                               kSecondsBuckets});
    ids.rejected = metrics_->register_metric(name, {GV_METRIC_COUNTER,
                                                    "gameverse_blocking_rejected_total",
                                                    "Blocking work refused because the queue was full",
                                                    {},
                                                    {}});
    ids.skipped = metrics_->register_metric(
        name, {GV_METRIC_COUNTER,
               "gameverse_blocking_skipped_total",
               "Blocking work not run: its call was cancelled or past its deadline, or its plugin stopped",
               {},
               {}});
  } catch (const std::exception& e) {
    spdlog::warn("blocking pool metrics for '{}': {}", name, e.what());
    return nullptr;
  }
  return &metric_ids_.emplace(name, ids).first->second;
}

void WorkPool::record_depth(const Owner& owner, bool queued, bool running) {
  if (const OwnerMetrics* ids = metrics_of(owner.name)) {
    if (queued) metrics_->record(owner.name, ids->queued, {}, static_cast<double>(owner.queue.size()));
    if (running) metrics_->record(owner.name, ids->running, {}, static_cast<double>(owner.running));
  }
}

void WorkPool::take_skippable(Owner& owner, std::vector<std::pair<Item, gv_status_code>>& dropped) {
  for (auto item = owner.queue.begin(); item != owner.queue.end();) {
    const gv_status_code status = precheck_guarded(item->precheck, owner.name);
    if (status == GV_STATUS_OK) {
      ++item;
      continue;
    }
    owner.queued_bytes -= item->bytes;
    dropped.emplace_back(std::move(*item), status);
    item = owner.queue.erase(item);
  }
}

void WorkPool::run_dropped(std::vector<std::pair<Item, gv_status_code>>& dropped, const std::string& name) {
  const OwnerMetrics* ids = nullptr;
  if (metrics_ != nullptr && !dropped.empty()) {
    std::lock_guard lock(mu_);
    ids = metrics_of(name);
  }
  for (auto& [item, status] : dropped) {
    run_guarded(item.work, status, name);
    if (ids != nullptr) metrics_->record(name, ids->skipped, {}, 1);
  }
  dropped.clear();
}

gv_status_code WorkPool::submit(const void* owner, const std::string& owner_name, uint64_t serial, Work work,
                                Precheck precheck, bool coalesce, std::string* why, size_t bytes) {
  std::unique_lock lock(mu_);
  if (stopping_) {
    if (why) *why = "the host is shutting down";
    return GV_STATUS_UNAVAILABLE;
  }
  Owner* entry = &owners_[owner];
  if (entry->closed) {
    if (why) *why = "plugin '" + entry->name + "' is shutting down";
    return GV_STATUS_UNAVAILABLE;
  }
  if (entry->name != owner_name) entry->name = owner_name;
  if (coalesce && serial != 0 &&
      std::any_of(entry->queue.begin(), entry->queue.end(),
                  [serial](const Item& i) { return i.serial == serial; })) {
    return GV_STATUS_ALREADY_EXISTS;
  }
  auto full = [&] {
    return entry->queue.size() >= limits_.per_owner_queue ||
           (!entry->queue.empty() && entry->queued_bytes + bytes > limits_.per_owner_queue_bytes);
  };
  if (full()) {
    // Calls cancelled while they waited keep no place in the queue.
    std::vector<std::pair<Item, gv_status_code>> dropped;
    take_skippable(*entry, dropped);
    if (!dropped.empty()) {
      lock.unlock();
      run_dropped(dropped, owner_name);
      lock.lock();
      entry = &owners_[owner];  // the entry may have gone and come back meanwhile
      if (entry->name.empty()) entry->name = owner_name;
      if (stopping_ || entry->closed) return GV_STATUS_UNAVAILABLE;
    }
  }
  Owner& state = *entry;
  if (full()) {
    if (const OwnerMetrics* ids = metrics_of(state.name)) metrics_->record(state.name, ids->rejected, {}, 1);
    if (why) {
      *why = state.queue.size() >= limits_.per_owner_queue
                 ? "plugin '" + state.name + "' has " + std::to_string(state.queue.size()) +
                       " blocking calls waiting, its limit ([blocking] queue_per_plugin); try again later"
                 : "plugin '" + state.name + "' has " + std::to_string(state.queued_bytes) +
                       " bytes of blocking calls waiting; " + std::to_string(bytes) +
                       " more would pass its limit of " + std::to_string(limits_.per_owner_queue_bytes) +
                       "; try again later";
    }
    return GV_STATUS_RESOURCE_EXHAUSTED;
  }
  state.queue.push_back({serial, std::move(work), std::move(precheck), Clock::now(), bytes});
  state.queued_bytes += bytes;
  mark_ready(owner, state);
  record_depth(state, true, false);
  lock.unlock();
  wake_.notify_one();
  return GV_STATUS_OK;
}

void WorkPool::forget_if_idle(const void* owner) {
  auto it = owners_.find(owner);
  if (it == owners_.end() || it->second.closed || !it->second.queue.empty() || it->second.running != 0)
    return;
  if (it->second.in_ready_list) ready_.remove(owner);
  owners_.erase(it);
}

void WorkPool::mark_ready(const void* owner, Owner& state) {
  if (!state.in_ready_list && !state.queue.empty()) {
    ready_.push_back(owner);
    state.in_ready_list = true;
  }
}

bool WorkPool::runnable(const Owner& owner) const {
  return owner.running < limits_.per_owner_threads;
}

bool WorkPool::take_next(const void*& owner, Item& item) {
  for (auto it = ready_.begin(); it != ready_.end(); ++it) {
    Owner& state = owners_.at(*it);
    if (!runnable(state)) continue;
    // The first item whose serial is not running already (per-serial order).
    auto pick = std::find_if(state.queue.begin(), state.queue.end(), [&](const Item& i) {
      return i.serial == 0 || std::find(state.running_serials.begin(), state.running_serials.end(),
                                        i.serial) == state.running_serials.end();
    });
    if (pick == state.queue.end()) continue;
    owner = *it;
    item = std::move(*pick);
    state.queue.erase(pick);
    state.queued_bytes -= item.bytes;
    // Round robin: this owner goes to the back, or out when it has nothing left.
    ready_.erase(it);
    state.in_ready_list = false;
    mark_ready(owner, state);
    return true;
  }
  return false;
}

void WorkPool::run() {
  // A pool thread woken for work does not preempt the completion-queue thread that woke it, so
  // both do a run of calls per switch instead of switching per call (measured: tools/gv bench
  // blocking, B/A 0.60 -> 0.75 on one CPU). Unprivileged threads may choose SCHED_BATCH.
  sched_param param{};
  if (sched_setscheduler(0, SCHED_BATCH, &param) != 0) spdlog::debug("blocking pool: no SCHED_BATCH");
  std::unique_lock lock(mu_);
  for (;;) {
    const void* owner = nullptr;
    Item item;
    wake_.wait(lock, [&] { return stopping_ || take_next(owner, item); });
    if (owner == nullptr) return;  // stopping, and every queue was dropped
    Owner& state = owners_.at(owner);
    const std::string name = state.name;
    state.running++;
    state.running_serials.push_back(item.serial);
    running_.emplace(owner, std::make_pair(item.serial, std::this_thread::get_id()));
    record_depth(state, true, true);
    const OwnerMetrics* ids = metrics_of(name);
    lock.unlock();

    const double waited = seconds_since(item.queued_at);
    const gv_status_code status = precheck_guarded(item.precheck, name);
    const auto started = Clock::now();
    run_guarded(item.work, status, name);
    if (ids != nullptr) {
      metrics_->record(name, ids->wait, {}, waited);
      if (status == GV_STATUS_OK) {
        metrics_->record(name, ids->run, {}, seconds_since(started));
      } else {
        metrics_->record(name, ids->skipped, {}, 1);
      }
    }
    const uint64_t serial = item.serial;
    item = Item{};  // what the work captured goes before the owner may be told it is idle

    lock.lock();
    Owner& after = owners_.at(owner);
    after.running--;
    after.running_serials.erase(
        std::find(after.running_serials.begin(), after.running_serials.end(), serial));
    for (auto [it, end] = running_.equal_range(owner); it != end; ++it) {
      if (it->second.second == std::this_thread::get_id()) {
        running_.erase(it);
        break;
      }
    }
    record_depth(after, false, true);
    mark_ready(owner, after);
    forget_if_idle(owner);
    if (waiting_for_owners_ > 0) finished_.notify_all();
    // This thread takes the next item itself; another is woken only for work beyond that one.
    if (ready_.size() > 1 || (ready_.size() == 1 && owners_.at(ready_.front()).queue.size() > 1)) {
      wake_.notify_one();
    }
  }
}

void WorkPool::drop_queued(std::unique_lock<std::mutex>& lock, const void* owner,
                           const std::function<bool(const Item&)>& which, gv_status_code status) {
  auto it = owners_.find(owner);
  if (it == owners_.end()) return;
  std::vector<std::pair<Item, gv_status_code>> dropped;
  auto& queue = it->second.queue;
  for (auto item = queue.begin(); item != queue.end();) {
    if (which(*item)) {
      it->second.queued_bytes -= item->bytes;
      dropped.emplace_back(std::move(*item), status);
      item = queue.erase(item);
    } else {
      ++item;
    }
  }
  if (dropped.empty()) return;
  if (queue.empty() && it->second.in_ready_list) {
    ready_.remove(owner);
    it->second.in_ready_list = false;
  }
  const std::string name = it->second.name;
  record_depth(it->second, true, false);
  lock.unlock();
  run_dropped(dropped, name);
  lock.lock();
  if (waiting_for_owners_ > 0) finished_.notify_all();
}

// Waits until the owner runs nothing (of `serial`, with only_serial) but on this very thread.
void WorkPool::wait_idle_locked(std::unique_lock<std::mutex>& lock, const void* owner, uint64_t serial,
                                bool only_serial) {
  const auto self = std::this_thread::get_id();
  waiting_for_owners_++;
  finished_.wait(lock, [&] {
    for (auto [it, end] = running_.equal_range(owner); it != end; ++it) {
      if (it->second.second != self && (!only_serial || it->second.first == serial)) return false;
    }
    return true;
  });
  waiting_for_owners_--;
}

void WorkPool::cancel_serial(const void* owner, uint64_t serial) {
  std::unique_lock lock(mu_);
  drop_queued(
      lock, owner, [serial](const Item& i) { return i.serial == serial; }, GV_STATUS_CANCELLED);
  wait_idle_locked(lock, owner, serial, true);
  forget_if_idle(owner);
}

void WorkPool::cancel_all(const void* owner) {
  std::unique_lock lock(mu_);
  drop_queued(
      lock, owner, [](const Item&) { return true; }, GV_STATUS_UNAVAILABLE);
  wait_idle_locked(lock, owner, 0, false);
  forget_if_idle(owner);
}

bool WorkPool::drain(const void* owner, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  const auto self = std::this_thread::get_id();
  waiting_for_owners_++;
  const bool idle = finished_.wait_until(lock, deadline, [&] {
    auto it = owners_.find(owner);
    if (it == owners_.end()) return true;
    if (!it->second.queue.empty()) return false;
    for (auto [run, end] = running_.equal_range(owner); run != end; ++run) {
      if (run->second.second != self) return false;
    }
    return true;
  });
  waiting_for_owners_--;
  forget_if_idle(owner);
  return idle;
}

void WorkPool::close(const void* owner) {
  std::unique_lock lock(mu_);
  owners_[owner].closed = true;
  drop_queued(
      lock, owner, [](const Item&) { return true; }, GV_STATUS_UNAVAILABLE);
  wait_idle_locked(lock, owner, 0, false);
  auto it = owners_.find(owner);
  if (it != owners_.end()) {
    if (it->second.in_ready_list) ready_.remove(owner);
    owners_.erase(it);
  }
}

size_t WorkPool::queued(const void* owner) const {
  std::lock_guard lock(mu_);
  auto it = owners_.find(owner);
  return it == owners_.end() ? 0 : it->second.queue.size();
}

size_t WorkPool::running(const void* owner) const {
  std::lock_guard lock(mu_);
  auto it = owners_.find(owner);
  return it == owners_.end() ? 0 : it->second.running;
}

}  // namespace gameverse::platform
