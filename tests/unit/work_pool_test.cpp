// The host's pool for blocking work: per-owner limits, bounded queues, turns between owners,
// per-serial order, skipped work and draining. Items wait on gates the test opens, so what runs
// when is decided by the test, not by timing.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "eventually.hpp"
#include "platform/metrics.hpp"
#include "platform/work_pool.hpp"

namespace gameverse::platform {
namespace {

using testing::eventually;

// A gate work items wait at until the test opens it.
class Gate {
 public:
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void pass() {
    std::unique_lock lock(mu_);
    waiting_++;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  int waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};

// Two owners (plugin generations, in the host).
int owner_a_tag = 0, owner_b_tag = 0;
const void* const owner_a = &owner_a_tag;
const void* const owner_b = &owner_b_tag;

TEST(WorkPool, OneOwnerAtItsLimitLeavesThreadsToAnother) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 4, .per_owner_threads = 2, .per_owner_queue = 100}, nullptr);
  std::atomic<int> a_started{0};
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(pool.submit(owner_a, "a", 0,
                          [&](gv_status_code) {
                            a_started++;
                            gate.pass();
                          }),
              GV_STATUS_OK);
  }
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 2; }));
  EXPECT_EQ(pool.running(owner_a), 2u);  // its share, not the whole pool
  EXPECT_EQ(pool.queued(owner_a), 4u);

  // B's work runs while A's share is still blocked.
  std::atomic<bool> b_ran{false};
  ASSERT_EQ(pool.submit(owner_b, "b", 0, [&](gv_status_code status) { b_ran = status == GV_STATUS_OK; }),
            GV_STATUS_OK);
  EXPECT_TRUE(eventually([&] { return b_ran.load(); }));
  EXPECT_EQ(a_started.load(), 2);
  gate.open();
  EXPECT_TRUE(eventually([&] { return a_started.load() == 6; }));
}

TEST(WorkPool, AFullQueueRefusesAndNamesTheLimit) {
  MetricsRegistry metrics;
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 2}, &metrics);
  ASSERT_EQ(pool.submit(owner_a, "busy", 0, [&](gv_status_code) { gate.pass(); }), GV_STATUS_OK);
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  ASSERT_EQ(pool.submit(owner_a, "busy", 0, [](gv_status_code) {}), GV_STATUS_OK);
  ASSERT_EQ(pool.submit(owner_a, "busy", 0, [](gv_status_code) {}), GV_STATUS_OK);
  bool called = false;
  std::string why;
  EXPECT_EQ(pool.submit(
                owner_a, "busy", 0, [&](gv_status_code) { called = true; }, {}, false, &why),
            GV_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_FALSE(called);
  EXPECT_NE(why.find("plugin 'busy' has 2 blocking calls waiting"), std::string::npos) << why;
  EXPECT_EQ(metrics.value("busy", "gameverse_blocking_rejected_total", {}), 1.0);
  EXPECT_EQ(metrics.value("busy", "gameverse_blocking_queued", {}), 2.0);
  gate.open();
  EXPECT_TRUE(eventually([&] { return pool.queued(owner_a) == 0 && pool.running(owner_a) == 0; }));
  EXPECT_EQ(metrics.value("busy", "gameverse_blocking_run_seconds", {}), 3.0);  // a histogram's count
}

TEST(WorkPool, ItemsOfOneSerialRunOneAtATimeInOrder) {
  WorkPool pool({.threads = 4, .per_owner_threads = 4, .per_owner_queue = 100}, nullptr);
  std::mutex mu;
  std::vector<int> order;
  std::atomic<int> concurrent{0}, most{0};
  for (int i = 0; i < 50; ++i) {
    pool.submit(owner_a, "a", 7, [&, i](gv_status_code) {
      const int now = ++concurrent;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      {
        std::lock_guard lock(mu);
        order.push_back(i);
      }
      --concurrent;
    });
  }
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    return order.size() == 50;
  }));
  EXPECT_EQ(most.load(), 1);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[i], i);
}

TEST(WorkPool, CoalescedSerialQueuesOnce) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 100}, nullptr);
  pool.submit(owner_a, "a", 0, [&](gv_status_code) { gate.pass(); });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  std::atomic<int> runs{0};
  EXPECT_EQ(pool.submit(
                owner_a, "a", 9, [&](gv_status_code) { runs++; }, {}, true),
            GV_STATUS_OK);
  EXPECT_EQ(pool.submit(
                owner_a, "a", 9, [&](gv_status_code) { runs++; }, {}, true),
            GV_STATUS_ALREADY_EXISTS);
  gate.open();
  EXPECT_TRUE(eventually([&] { return pool.queued(owner_a) == 0 && pool.running(owner_a) == 0; }));
  EXPECT_EQ(runs.load(), 1);
}

TEST(WorkPool, PrecheckSkipsWorkWithItsReason) {
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 100}, nullptr);
  std::atomic<gv_status_code> seen{-1};
  pool.submit(
      owner_a, "a", 0, [&](gv_status_code status) { seen = status; },
      [] { return GV_STATUS_DEADLINE_EXCEEDED; });
  EXPECT_TRUE(eventually([&] { return seen.load() == GV_STATUS_DEADLINE_EXCEEDED; }));
}

TEST(WorkPool, CancelAllDropsQueuedWorkAndWaitsForRunningWork) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 100}, nullptr);
  std::atomic<bool> running_done{false};
  pool.submit(owner_a, "a", 0, [&](gv_status_code) {
    gate.pass();
    running_done = true;
  });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  std::atomic<gv_status_code> queued_status{-1};
  pool.submit(owner_a, "a", 0, [&](gv_status_code status) { queued_status = status; });
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate.open();
  });
  pool.cancel_all(owner_a);
  EXPECT_TRUE(running_done.load());  // waited for
  EXPECT_EQ(queued_status.load(), GV_STATUS_UNAVAILABLE);
  opener.join();
}

TEST(WorkPool, DrainRunsWhatIsQueued) {
  WorkPool pool({.threads = 2, .per_owner_threads = 1, .per_owner_queue = 100}, nullptr);
  std::atomic<int> ran{0};
  for (int i = 0; i < 20; ++i)
    pool.submit(owner_a, "a", 0, [&](gv_status_code s) { ran += s == GV_STATUS_OK; });
  EXPECT_TRUE(pool.drain(owner_a, std::chrono::steady_clock::now() + std::chrono::seconds(30)));
  EXPECT_EQ(ran.load(), 20);
}

TEST(WorkPool, DrainGivesUpAtItsDeadline) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 100}, nullptr);
  pool.submit(owner_a, "a", 0, [&](gv_status_code) { gate.pass(); });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  EXPECT_FALSE(pool.drain(owner_a, std::chrono::steady_clock::now() + std::chrono::milliseconds(50)));
  gate.open();
  EXPECT_TRUE(pool.drain(owner_a, std::chrono::steady_clock::now() + std::chrono::seconds(30)));
}

// Closing drops what waits, waits for what runs, and refuses what that running work submits.
TEST(WorkPool, ClosingRefusesTheOwnersFurtherWork) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 2, .per_owner_threads = 1, .per_owner_queue = 100}, nullptr);
  std::atomic<gv_status_code> resubmitted{-1};
  std::string why;
  pool.submit(owner_a, "a", 0, [&](gv_status_code) {
    gate.pass();
    resubmitted = pool.submit(
        owner_a, "a", 0, [](gv_status_code) { ADD_FAILURE() << "ran after close"; }, {}, false, &why);
  });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  std::atomic<gv_status_code> queued{-1};
  pool.submit(owner_a, "a", 0, [&](gv_status_code s) { queued = s; });
  std::thread closer([&] { pool.close(owner_a); });
  ASSERT_TRUE(eventually([&] { return queued.load() == GV_STATUS_UNAVAILABLE; }));
  gate.open();
  closer.join();
  EXPECT_EQ(resubmitted.load(), GV_STATUS_UNAVAILABLE);
  EXPECT_EQ(why, "plugin 'a' is shutting down");
  EXPECT_EQ(pool.submit(owner_b, "b", 0, [](gv_status_code) {}), GV_STATUS_OK);  // others go on
}

// Calls cancelled while they waited make room in a full queue instead of holding it.
TEST(WorkPool, AFullQueueMakesRoomByDroppingWorkThatWouldBeSkipped) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 2}, nullptr);
  pool.submit(owner_a, "a", 0, [&](gv_status_code) { gate.pass(); });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  std::atomic<bool> cancelled{false};
  std::atomic<gv_status_code> first{-1};
  pool.submit(
      owner_a, "a", 0, [&](gv_status_code s) { first = s; },
      [&] { return cancelled ? GV_STATUS_CANCELLED : GV_STATUS_OK; });
  pool.submit(owner_a, "a", 0, [](gv_status_code) {});
  EXPECT_EQ(pool.submit(owner_a, "a", 0, [](gv_status_code) {}), GV_STATUS_RESOURCE_EXHAUSTED);
  cancelled = true;
  EXPECT_EQ(pool.submit(owner_a, "a", 0, [](gv_status_code) {}), GV_STATUS_OK);
  EXPECT_EQ(first.load(), GV_STATUS_CANCELLED);
  gate.open();
}

// A queue is bounded in the bytes its items hold as well as in their number.
TEST(WorkPool, QueuedBytesAreBounded) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 100, .per_owner_queue_bytes = 1000},
                nullptr);
  pool.submit(owner_a, "big", 0, [&](gv_status_code) { gate.pass(); });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  EXPECT_EQ(pool.submit(
                owner_a, "big", 0, [](gv_status_code) {}, {}, false, nullptr, 600),
            GV_STATUS_OK);
  std::string why;
  EXPECT_EQ(pool.submit(
                owner_a, "big", 0, [](gv_status_code) {}, {}, false, &why, 600),
            GV_STATUS_RESOURCE_EXHAUSTED);
  EXPECT_EQ(why,
            "plugin 'big' has 600 bytes of blocking calls waiting; 600 more would pass its limit of 1000; "
            "try again later");
  EXPECT_EQ(pool.submit(
                owner_a, "big", 0, [](gv_status_code) {}, {}, false, nullptr, 400),
            GV_STATUS_OK);
  gate.open();
  // One item larger than the limit still gets through an empty queue: a request the server took.
  EXPECT_TRUE(pool.drain(owner_a, std::chrono::steady_clock::now() + std::chrono::seconds(30)));
  EXPECT_EQ(pool.submit(
                owner_a, "big", 0, [](gv_status_code) {}, {}, false, nullptr, 5000),
            GV_STATUS_OK);
}

TEST(WorkPool, CancelSerialDropsItsQueuedItemsOnly) {
  Gate gate;  // before the pool: its threads may still be leaving the gate when the test ends
  WorkPool pool({.threads = 1, .per_owner_threads = 1, .per_owner_queue = 100}, nullptr);
  pool.submit(owner_a, "a", 0, [&](gv_status_code) { gate.pass(); });
  ASSERT_TRUE(eventually([&] { return gate.waiting() == 1; }));
  std::atomic<gv_status_code> cancelled{-1}, kept{-1};
  pool.submit(owner_a, "a", 5, [&](gv_status_code s) { cancelled = s; });
  pool.submit(owner_a, "a", 6, [&](gv_status_code s) { kept = s; });
  pool.cancel_serial(owner_a, 5);
  EXPECT_EQ(cancelled.load(), GV_STATUS_CANCELLED);
  gate.open();
  EXPECT_TRUE(eventually([&] { return kept.load() == GV_STATUS_OK; }));
}

}  // namespace
}  // namespace gameverse::platform
