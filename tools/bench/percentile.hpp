// The value below which `fraction` (0 .. 1) of the samples fall, for the benchmark drivers.
#pragma once

#include <algorithm>
#include <vector>

namespace gameverse::bench {

inline double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<size_t>(fraction * static_cast<double>(values.size())))];
}

}  // namespace gameverse::bench
