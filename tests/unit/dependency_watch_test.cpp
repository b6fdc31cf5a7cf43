// The readiness checks run off the HTTP thread: a check that hangs is reported, never waited for.
#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "eventually.hpp"
#include "http/host_endpoints.hpp"

namespace gameverse::http {
namespace {

using testing::eventually;

bool names(const std::vector<std::string>& problems, const std::string& part) {
  for (const auto& problem : problems)
    if (problem.find(part) != std::string::npos) return true;
  return false;
}

TEST(DependencyWatch, AHangingCheckIsReportedNotWaitedFor) {
  std::atomic<int> calls{0};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> down{true};
  DependencyWatch watch(
      [&]() -> std::vector<std::string> {
        if (++calls == 2) released.wait();  // the second check hangs until the test lets it go
        if (down) return {"the store (sqlite) is unreachable: disk gone"};
        return {};
      },
      std::chrono::milliseconds(20));
  EXPECT_TRUE(names(watch.problems(), "disk gone"));  // the first check ran in the constructor
  // problems() answers while the check hangs, and says so once it has hung longer than the interval.
  EXPECT_TRUE(eventually([&] { return names(watch.problems(), "has not answered for"); }));
  down = false;
  release.set_value();
  EXPECT_TRUE(eventually([&] { return watch.problems().empty(); }));
}

}  // namespace
}  // namespace gameverse::http
