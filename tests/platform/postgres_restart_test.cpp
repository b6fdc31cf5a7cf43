// PostgreSQL restarted under load: calls in flight fail with UNAVAILABLE, later calls succeed once
// it is back, and no batch is ever half-applied. Needs the server `tools/gv test` starts, and runs
// alone (it takes the server away from everyone).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include "platform/store.hpp"

namespace gameverse::platform {
namespace {

TEST(PostgresRestart, InFlightCallsFailCleanlyAndNoBatchIsHalfApplied) {
  const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
  const char* restart = std::getenv("GAMEVERSE_TEST_POSTGRES_RESTART");
  ASSERT_TRUE(url != nullptr && restart != nullptr)
      << "GAMEVERSE_TEST_POSTGRES_URL / _RESTART are not set: run the suite with `tools/gv test`";
  auto store = open_postgres_store(url, 4);
  const std::string space = "restart-" + std::to_string(std::random_device()());

  // Writers move two keys together in one batch: after everything, both must hold the same value.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::atomic<int> unavailable{0};
  std::atomic<int> other{0};
  std::atomic<int> ok_after_restart{0};
  std::atomic<bool> restarted{false};
  std::string first_other;
  std::mutex mu;
  std::vector<std::thread> writers;
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop; ++i) {
        const std::string value = std::to_string(w) + ":" + std::to_string(i);
        const std::string pair = "pair-" + std::to_string(w);
        try {
          store->write(space, {{StoreWrite::Kind::kPut, "pairs", pair + "/a", value, "", kAnyVersion},
                               {StoreWrite::Kind::kPut, "pairs", pair + "/b", value, "", kAnyVersion}});
          ok++;
          if (restarted) ok_after_restart++;
        } catch (const PlatformError& e) {
          if (e.code() == GV_STATUS_UNAVAILABLE) {
            unavailable++;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          } else {
            std::lock_guard lock(mu);
            if (other++ == 0) first_other = e.what();
          }
        }
      }
    });
  }
  while (ok < 50) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Not on our stdout: the restarted server would hold the test's output pipe open.
  ASSERT_EQ(std::system((std::string(restart) + " > /dev/null 2>&1 < /dev/null").c_str()), 0)
      << "could not restart PostgreSQL with: " << restart;
  restarted = true;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (ok_after_restart < 50 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop = true;
  for (auto& writer : writers) writer.join();

  EXPECT_GE(ok_after_restart, 50) << "calls did not succeed again after the restart";
  EXPECT_EQ(other, 0) << "a failure other than UNAVAILABLE: " << first_other;
  for (int w = 0; w < 3; ++w) {
    const std::string pair = "pair-" + std::to_string(w);
    auto a = store->get(space, "pairs", pair + "/a");
    auto b = store->get(space, "pairs", pair + "/b");
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->value, b->value) << "a batch was half-applied";
    EXPECT_EQ(a->version, b->version);
  }
  std::cout << "restart: " << ok << " batches written, " << unavailable << " failed with UNAVAILABLE\n";
}

}  // namespace
}  // namespace gameverse::platform
