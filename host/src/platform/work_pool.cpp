#include "platform/work_pool.hpp"

#include <spdlog/spdlog.h>

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

}  // namespace

WorkPool::WorkPool(Limits limits, MetricsRegistry* metrics) : limits_(limits), metrics_(metrics) {
  limits_.threads = std::max<size_t>(limits_.threads, 1);
  limits_.per_owner_threads = std::clamp<size_t>(limits_.per_owner_threads, 1, limits_.threads);
  limits_.per_owner_queue = std::max<size_t>(limits_.per_owner_queue, 1);
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

gv_status_code WorkPool::submit(const void* owner, const std::string& owner_name, uint64_t serial, Work work,
                                Precheck precheck, bool coalesce, std::string* why) {
  std::unique_lock lock(mu_);
  if (stopping_) {
    if (why) *why = "the host is shutting down";
    return GV_STATUS_UNAVAILABLE;
  }
  Owner& state = owners_[owner];
  if (state.name.empty()) state.name = owner_name;
  if (coalesce && serial != 0 && std::any_of(state.queue.begin(), state.queue.end(), [serial](const Item& i) {
        return i.serial == serial;
      })) {
    return GV_STATUS_ALREADY_EXISTS;
  }
  if (state.queue.size() >= limits_.per_owner_queue) {
    if (const OwnerMetrics* ids = metrics_of(state.name)) metrics_->record(state.name, ids->rejected, {}, 1);
    if (why) {
      *why = "plugin '" + state.name + "' has " + std::to_string(state.queue.size()) +
             " blocking calls waiting, its limit ([blocking] queue_per_plugin); try again later";
    }
    return GV_STATUS_RESOURCE_EXHAUSTED;
  }
  state.queue.push_back({serial, std::move(work), std::move(precheck), Clock::now()});
  mark_ready(owner, state);
  record_depth(state, true, false);
  lock.unlock();
  wake_.notify_one();
  return GV_STATUS_OK;
}

void WorkPool::forget_if_idle(const void* owner) {
  auto it = owners_.find(owner);
  if (it == owners_.end() || !it->second.queue.empty() || it->second.running != 0) return;
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
    // Round robin: this owner goes to the back, or out when it has nothing left.
    ready_.erase(it);
    state.in_ready_list = false;
    mark_ready(owner, state);
    return true;
  }
  return false;
}

void WorkPool::run() {
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
    gv_status_code status = GV_STATUS_OK;
    if (item.precheck) status = item.precheck();
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
    if (!ready_.empty()) wake_.notify_one();  // this owner may run again: another thread can take it
  }
}

void WorkPool::drop_queued(std::unique_lock<std::mutex>& lock, const void* owner,
                           const std::function<bool(const Item&)>& which, gv_status_code status) {
  auto it = owners_.find(owner);
  if (it == owners_.end()) return;
  std::vector<Item> dropped;
  auto& queue = it->second.queue;
  for (auto item = queue.begin(); item != queue.end();) {
    if (which(*item)) {
      dropped.push_back(std::move(*item));
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
  const OwnerMetrics* ids = nullptr;
  for (Item& item : dropped) {
    run_guarded(item.work, status, name);
    if (ids == nullptr && metrics_ != nullptr) {
      std::lock_guard relock(mu_);
      ids = metrics_of(name);
    }
    if (ids != nullptr) metrics_->record(name, ids->skipped, {}, 1);
  }
  dropped.clear();
  lock.lock();
}

void WorkPool::cancel_serial(const void* owner, uint64_t serial) {
  std::unique_lock lock(mu_);
  drop_queued(
      lock, owner, [serial](const Item& i) { return i.serial == serial; }, GV_STATUS_CANCELLED);
  const auto self = std::this_thread::get_id();
  waiting_for_owners_++;
  finished_.wait(lock, [&] {
    for (auto [it, end] = running_.equal_range(owner); it != end; ++it) {
      if (it->second.first == serial && it->second.second != self) return false;
    }
    return true;
  });
  waiting_for_owners_--;
}

void WorkPool::cancel_all(const void* owner) {
  std::unique_lock lock(mu_);
  drop_queued(
      lock, owner, [](const Item&) { return true; }, GV_STATUS_UNAVAILABLE);
  const auto self = std::this_thread::get_id();
  waiting_for_owners_++;
  finished_.wait(lock, [&] {
    for (auto [it, end] = running_.equal_range(owner); it != end; ++it) {
      if (it->second.second != self) return false;
    }
    return true;
  });
  waiting_for_owners_--;
  forget_if_idle(owner);
}

void WorkPool::drain(const void* owner) {
  std::unique_lock lock(mu_);
  const auto self = std::this_thread::get_id();
  waiting_for_owners_++;
  finished_.wait(lock, [&] {
    auto it = owners_.find(owner);
    if (it == owners_.end()) return true;
    if (!it->second.queue.empty()) return false;
    for (auto [run, end] = running_.equal_range(owner); run != end; ++run) {
      if (run->second.second != self) return false;
    }
    return true;
  });
  waiting_for_owners_--;
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
