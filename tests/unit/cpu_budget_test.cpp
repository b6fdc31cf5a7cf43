#include "platform/cpu_budget.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "expect_contains.hpp"
#include "temp_dir.hpp"

namespace gameverse::platform {
namespace {

unsigned affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  return static_cast<unsigned>(CPU_COUNT(&set));
}

// A cgroup tree in a temp dir: /proc/self/cgroup's lines and the files under the mount.
class FakeCgroup {
 public:
  explicit FakeCgroup(const std::string& self_cgroup) {
    std::filesystem::create_directories(root());
    write("self_cgroup", self_cgroup);
  }
  void write(const std::filesystem::path& relative, const std::string& text) {
    const auto path = dir_.path() / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  void write_under_root(const std::filesystem::path& relative, const std::string& text) {
    write(std::filesystem::path("root") / relative, text);
  }
  std::filesystem::path root() const { return dir_.path() / "root"; }
  CgroupFiles files() const { return {dir_.path() / "self_cgroup", root()}; }

 private:
  testing::TempDir dir_;
};

TEST(CpuBudget, WithoutCgroupLimitsTheAffinityMaskDecides) {
  FakeCgroup cgroup("0::/\n");
  const CpuBudget budget = usable_cpus(cgroup.files());
  EXPECT_EQ(budget.count, affinity_cpus());
  EXPECT_EQ(budget.reason, "affinity mask " + std::to_string(affinity_cpus()));
}

TEST(CpuBudget, CgroupV2QuotaIsRoundedUp) {
  FakeCgroup cgroup("0::/game/host\n");
  cgroup.write_under_root("game/host/cpu.max", "150000 100000\n");
  const CpuBudget budget = usable_cpus(cgroup.files());
  EXPECT_EQ(budget.count, std::min(2u, affinity_cpus()));
  EXPECT_CONTAINS(budget.reason, "cgroup cpu.max 150000/100000");
}

TEST(CpuBudget, CgroupV2QuotaBelowOneCpuGivesOne) {
  FakeCgroup cgroup("0::/\n");
  cgroup.write_under_root("cpu.max", "50000 100000\n");
  EXPECT_EQ(usable_cpus(cgroup.files()).count, 1u);
}

TEST(CpuBudget, CgroupV2QuotaOfAnAncestorApplies) {
  FakeCgroup cgroup("0::/game/host\n");
  cgroup.write_under_root("game/cpu.max", "100000 100000\n");
  cgroup.write_under_root("game/host/cpu.max", "max 100000\n");
  const CpuBudget budget = usable_cpus(cgroup.files());
  EXPECT_EQ(budget.count, 1u);
  EXPECT_CONTAINS(budget.reason, "cgroup cpu.max 100000/100000");
}

TEST(CpuBudget, CgroupV2MaxIsUnlimited) {
  FakeCgroup cgroup("0::/game\n");
  cgroup.write_under_root("game/cpu.max", "max 100000\n");
  const CpuBudget budget = usable_cpus(cgroup.files());
  EXPECT_EQ(budget.count, affinity_cpus());
  EXPECT_CONTAINS(budget.reason, "cgroup cpu.max max (no quota)");
}

TEST(CpuBudget, CgroupV1Quota) {
  FakeCgroup cgroup("5:memory:/job\n4:cpu,cpuacct:/job\n0::/\n");
  cgroup.write_under_root("cpu,cpuacct/job/cpu.cfs_quota_us", "80000\n");
  cgroup.write_under_root("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
  const CpuBudget budget = usable_cpus(cgroup.files());
  EXPECT_EQ(budget.count, 1u);
  EXPECT_CONTAINS(budget.reason, "cpu.cfs_quota_us/cpu.cfs_period_us 80000/100000");
}

TEST(CpuBudget, CgroupV1MinusOneIsUnlimited) {
  FakeCgroup cgroup("1:cpu:/\n");
  cgroup.write_under_root("cpu/cpu.cfs_quota_us", "-1\n");
  cgroup.write_under_root("cpu/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(usable_cpus(cgroup.files()).count, affinity_cpus());
}

TEST(CpuBudget, GarbageIsIgnoredAndNamed) {
  FakeCgroup cgroup("0::/a\n4:cpu:/b\nnot a cgroup line\n");
  cgroup.write_under_root("a/cpu.max", "lots of cpus");
  cgroup.write_under_root("cpu.max", "0 0\n");
  cgroup.write_under_root("cpu/b/cpu.cfs_quota_us", "12abc\n");
  cgroup.write_under_root("cpu/b/cpu.cfs_period_us", "\n");
  const CpuBudget budget = usable_cpus(cgroup.files());
  EXPECT_EQ(budget.count, affinity_cpus());
  EXPECT_CONTAINS(budget.reason, "'lots of cpus' does not parse");
  EXPECT_CONTAINS(budget.reason, "'0 0' does not parse");
  EXPECT_CONTAINS(budget.reason, "'12abc'");
}

TEST(CpuBudget, MissingFilesAreNoLimit) {
  FakeCgroup cgroup("0::/nowhere\n");
  std::filesystem::remove_all(cgroup.root());
  EXPECT_EQ(usable_cpus({cgroup.files().self_cgroup, "/nonexistent"}).count, affinity_cpus());
  EXPECT_EQ(usable_cpus({"/nonexistent/cgroup", "/nonexistent"}).count, affinity_cpus());
}

// As under `taskset -c <one cpu>`: a forked child pinned to one CPU counts 1.
TEST(CpuBudget, AffinityMaskOfOneCpuCountsOne) {
  FakeCgroup cgroup("0::/\n");
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(100);
    const CpuBudget budget = usable_cpus(cgroup.files());
    _exit(budget.reason == "affinity mask 1" ? static_cast<int>(budget.count) : 101);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << "100: sched_setaffinity failed; 101: the reason is not the mask";
}

}  // namespace
}  // namespace gameverse::platform
