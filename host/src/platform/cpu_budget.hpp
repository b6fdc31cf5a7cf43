// How many CPUs this process may use: its affinity mask and its cgroup's CPU quota, not the
// machine's core count (a container limited to one CPU on a 64-core node gets 1, not 64).
#pragma once

#include <filesystem>
#include <string>

namespace gameverse::platform {

struct CpuBudget {
  unsigned count = 1;  // at least 1
  std::string reason;  // e.g. "affinity mask 2, cgroup cpu.max 150000/100000"
};

// Where the cgroup limits are read from; a test points them at a tree of its own.
struct CgroupFiles {
  std::filesystem::path self_cgroup = "/proc/self/cgroup";
  std::filesystem::path root = "/sys/fs/cgroup";
};

// The smallest of: the CPUs in the affinity mask, cgroup v2 cpu.max and cgroup v1
// cpu.cfs_quota_us / cpu.cfs_period_us (of the process's cgroup and its ancestors), rounded up.
// Files that are missing or do not parse are skipped and named in the reason; never throws.
CpuBudget usable_cpus(const CgroupFiles& files = {});

}  // namespace gameverse::platform
