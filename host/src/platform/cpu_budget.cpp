#include "platform/cpu_budget.hpp"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

namespace gameverse::platform {

namespace {

// One cgroup file's say on the CPU count.
struct Limit {
  enum class Kind { kQuota, kNoQuota, kUnreadable };
  Kind kind;
  unsigned cpus = 0;  // kQuota: the quota in whole CPUs, rounded up
  std::string text;   // for the reason
};

std::optional<std::string> read_small_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string text(256, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::optional<int64_t> parse_int(std::string_view text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

unsigned cpus_of(int64_t quota, int64_t period) {
  return static_cast<unsigned>(std::max<int64_t>(1, (quota + period - 1) / period));
}

// The directory of the cgroup under a mount, then each ancestor up to the mount: a limit set on
// any of them applies. A path leaving the mount (a cgroup outside this namespace) means the mount.
std::vector<std::filesystem::path> self_and_ancestors(const std::filesystem::path& mount,
                                                      std::string_view cgroup_path) {
  std::filesystem::path relative = std::filesystem::path(cgroup_path).relative_path().lexically_normal();
  for (const auto& part : relative) {
    if (part == "..") relative.clear();
  }
  std::vector<std::filesystem::path> dirs;
  for (;;) {
    dirs.push_back(relative.empty() || relative == "." ? mount : mount / relative);
    if (relative.empty() || relative == "." || !relative.has_parent_path()) break;
    relative = relative.parent_path();
  }
  if (dirs.back() != mount) dirs.push_back(mount);
  return dirs;
}

// cgroup v2: "max 100000" (no quota) or "150000 100000".
std::optional<Limit> read_cpu_max(const std::filesystem::path& file) {
  const auto text = read_small_file(file);
  if (!text) return std::nullopt;
  const size_t space = text->find(' ');
  const std::string_view quota = std::string_view(*text).substr(0, space);
  const auto period = space == std::string::npos ? std::nullopt : parse_int(text->substr(space + 1));
  if (period && *period > 0) {
    if (quota == "max") return Limit{Limit::Kind::kNoQuota, 0, "cgroup cpu.max max (no quota)"};
    if (auto q = parse_int(quota); q && *q > 0) {
      return Limit{Limit::Kind::kQuota, cpus_of(*q, *period),
                   "cgroup cpu.max " + std::to_string(*q) + "/" + std::to_string(*period)};
    }
  }
  return Limit{Limit::Kind::kUnreadable, 0,
               "ignored " + file.string() + " ('" + text->substr(0, 40) + "' does not parse)"};
}

// cgroup v1: cpu.cfs_quota_us (-1: no quota) over cpu.cfs_period_us.
std::optional<Limit> read_cfs_quota(const std::filesystem::path& dir) {
  const auto quota_text = read_small_file(dir / "cpu.cfs_quota_us");
  const auto period_text = read_small_file(dir / "cpu.cfs_period_us");
  if (!quota_text || !period_text) return std::nullopt;
  const auto quota = parse_int(*quota_text);
  const auto period = parse_int(*period_text);
  if (quota && period && *period > 0) {
    if (*quota == -1) return Limit{Limit::Kind::kNoQuota, 0, "cgroup cpu.cfs_quota_us -1 (no quota)"};
    if (*quota > 0) {
      return Limit{Limit::Kind::kQuota, cpus_of(*quota, *period),
                   "cgroup cpu.cfs_quota_us/cpu.cfs_period_us " + std::to_string(*quota) + "/" +
                       std::to_string(*period)};
    }
  }
  return Limit{Limit::Kind::kUnreadable, 0,
               "ignored " + (dir / "cpu.cfs_quota_us").string() + " ('" + quota_text->substr(0, 40) +
                   "', period '" + period_text->substr(0, 40) + "' do not parse)"};
}

// The limits of the process's cgroups, from its cgroup to the root, in both hierarchies.
std::vector<Limit> cgroup_limits(const CgroupFiles& files) {
  std::vector<Limit> limits;
  std::ifstream in(files.self_cgroup);
  std::string line;
  while (std::getline(in, line)) {
    // "hierarchy-id:controllers:path"; v2 is "0::path", v1's CPU controller lists "cpu".
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (line.compare(0, first, "0") == 0 && controllers.empty()) {
      for (const auto& mount : {files.root, files.root / "unified"}) {
        for (const auto& dir : self_and_ancestors(mount, path)) {
          if (auto limit = read_cpu_max(dir / "cpu.max")) limits.push_back(*limit);
        }
      }
      continue;
    }
    std::stringstream names(controllers);
    std::string name;
    bool cpu = false;
    while (std::getline(names, name, ',')) cpu |= name == "cpu";
    if (!cpu) continue;
    for (const auto& mount : {files.root / controllers, files.root / "cpu"}) {
      std::error_code ec;
      if (!std::filesystem::is_directory(mount, ec)) continue;
      for (const auto& dir : self_and_ancestors(mount, path)) {
        if (auto limit = read_cfs_quota(dir)) limits.push_back(*limit);
      }
      break;
    }
  }
  return limits;
}

// The CPUs in this thread's affinity mask, or nullopt when it cannot be read.
std::optional<unsigned> affinity_count() {
  for (int cpus = 1024; cpus <= 1 << 16; cpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    const size_t size = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(size, set);
    const int result = sched_getaffinity(0, size, set);
    const int count = CPU_COUNT_S(size, set);
    CPU_FREE(set);
    if (result == 0) return static_cast<unsigned>(count);
    if (errno != EINVAL) break;  // EINVAL: the kernel's mask is larger than ours
  }
  return std::nullopt;
}

}  // namespace

CpuBudget usable_cpus(const CgroupFiles& files) {
  CpuBudget budget;
  if (const auto affinity = affinity_count()) {
    budget.count = std::max(1u, *affinity);
    budget.reason = "affinity mask " + std::to_string(*affinity);
  } else {
    budget.count = std::max(1u, std::thread::hardware_concurrency());
    budget.reason = "affinity mask unreadable (" + std::string(std::strerror(errno)) + "), " +
                    std::to_string(budget.count) + " cores";
  }
  std::string unlimited;  // named once, when no cgroup sets a quota
  bool quota = false;
  for (const Limit& limit : cgroup_limits(files)) {
    if (limit.kind == Limit::Kind::kQuota) {
      budget.count = std::min(budget.count, limit.cpus);
      quota = true;
    } else if (limit.kind == Limit::Kind::kNoQuota) {
      if (unlimited.empty()) unlimited = limit.text;
      continue;
    }
    budget.reason += ", " + limit.text;
  }
  if (!quota && !unlimited.empty()) budget.reason += ", " + unlimited;
  return budget;
}

}  // namespace gameverse::platform
