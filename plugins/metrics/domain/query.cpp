#include "domain/query.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace gameverse::metrics {

namespace {

MetricsError invalid(const std::string& message) {
  return MetricsError(MetricsError::Kind::kInvalidArgument, message);
}

int64_t floor_to(int64_t t, int64_t step) {
  const int64_t r = t % step;
  return r < 0 ? t - r - step : t - r;
}

int64_t pow10(int n) {
  int64_t p = 1;
  while (n-- > 0) p *= 10;
  return p;
}

const char* aggregation_name(Aggregation a) {
  switch (a) {
    case Aggregation::kSum: return "sum";
    case Aggregation::kRate: return "rate";
    case Aggregation::kAvg: return "avg";
    case Aggregation::kMin: return "min";
    case Aggregation::kMax: return "max";
    case Aggregation::kCount: return "count";
    case Aggregation::kPercentile: return "percentile";
  }
  return "unknown";
}

}  // namespace

std::string padded_time(int64_t unix_s) {
  std::string digits = std::to_string(unix_s);
  return std::string(
             static_cast<size_t>(std::max<int64_t>(0, kTimeDigits - static_cast<int64_t>(digits.size()))),
             '0') +
         digits;
}

std::vector<std::string> decimal_prefixes(int64_t from, int64_t to) {
  std::vector<std::string> out;
  from = std::max<int64_t>(from, 0);
  to = std::min<int64_t>(to, pow10(kTimeDigits) - 1);
  // Greedy from the left: take the largest aligned block starting at `from` that fits.
  while (from <= to) {
    int level = 0;
    while (level < kTimeDigits) {
      const int64_t next = pow10(level + 1);
      if (from % next != 0 || from + next - 1 > to) break;
      ++level;
    }
    out.push_back(padded_time(from).substr(0, static_cast<size_t>(kTimeDigits - level)));
    from += pow10(level);
  }
  return out;
}

size_t check_query(const QuerySpec& spec, const Family* family, const std::vector<Resolution>& resolutions,
                   int64_t max_points) {
  if (const std::string e = metric_name_error(spec.metric, "metric"); !e.empty()) throw invalid(e);
  if (spec.step_s <= 0 || spec.step_s % resolutions.front().width_s != 0) {
    throw invalid("step_s is " + std::to_string(spec.step_s) + "; it must be a positive multiple of " +
                  std::to_string(resolutions.front().width_s));
  }
  if (spec.end_s < spec.start_s) {
    throw invalid("end_unix_s (" + std::to_string(spec.end_s) + ") is before start_unix_s (" +
                  std::to_string(spec.start_s) + ")");
  }
  if (spec.start_s < 0) throw invalid("start_unix_s is negative");
  if ((spec.end_s - spec.start_s) / spec.step_s + 1 > max_points) {
    throw invalid("the range over step_s makes " +
                  std::to_string((spec.end_s - spec.start_s) / spec.step_s + 1) +
                  " points; a query has at most " + std::to_string(max_points) + " (max_query_points)");
  }
  for (const auto& [name, value] : spec.match) {
    if (const std::string e = label_name_error(name, "match label"); !e.empty()) throw invalid(e);
  }
  for (const std::string& name : spec.by) {
    if (const std::string e = label_name_error(name, "by label"); !e.empty()) throw invalid(e);
  }
  if (spec.aggregation == Aggregation::kPercentile && !(spec.percentile >= 0 && spec.percentile <= 100)) {
    throw invalid("percentile is " + std::to_string(spec.percentile) + "; it must be within 0..100");
  }
  if (family != nullptr) {
    if (family->kind == Kind::kGauge &&
        (spec.aggregation == Aggregation::kRate || spec.aggregation == Aggregation::kPercentile)) {
      throw invalid(std::string("aggregation ") + aggregation_name(spec.aggregation) +
                    " does not apply to '" + spec.metric + "', a gauge");
    }
    if (family->kind == Kind::kCounter && spec.aggregation == Aggregation::kPercentile) {
      throw invalid("aggregation percentile needs a histogram; '" + spec.metric + "' is a counter");
    }
    for (const std::string& name : spec.by) {
      if (!std::binary_search(family->label_names.begin(), family->label_names.end(), name)) {
        throw invalid("by label '" + name + "' is not a label of '" + spec.metric + "'");
      }
    }
  }
  size_t pick = 0;
  for (size_t i = 0; i < resolutions.size(); ++i) {
    if (spec.step_s % resolutions[i].width_s == 0) pick = i;
  }
  return pick;
}

double bucket_quantile(double q, const std::vector<double>& bounds, const std::vector<uint64_t>& buckets,
                       double observed_min, double observed_max) {
  const uint64_t total = std::accumulate(buckets.begin(), buckets.end(), uint64_t{0});
  if (total == 0) return std::nan("");
  q = std::clamp(q, 0.0, 1.0);
  const double rank = q * static_cast<double>(total);
  uint64_t below = 0;
  size_t i = 0;
  for (; i < buckets.size(); ++i) {
    if (static_cast<double>(below + buckets[i]) >= rank && buckets[i] > 0) break;
    below += buckets[i];
  }
  if (i >= buckets.size()) i = buckets.size() - 1;
  double lower = i == 0 ? (bounds.empty() ? 0 : std::min(0.0, bounds.front())) : bounds[i - 1];
  double upper = i < bounds.size() ? bounds[i] : (bounds.empty() ? 0 : bounds.back());
  if (std::isfinite(observed_min)) lower = std::max(lower, std::min(observed_min, upper));
  if (std::isfinite(observed_max)) upper = std::min(upper, std::max(observed_max, lower));
  if (i >= bounds.size()) {
    // The +Inf bucket: without a known max, its lower bound is the best estimate.
    if (!std::isfinite(observed_max)) return lower;
    upper = std::max(observed_max, lower);
  }
  const double within =
      buckets[i] == 0 ? 0 : (rank - static_cast<double>(below)) / static_cast<double>(buckets[i]);
  double value = lower + (upper - lower) * within;
  if (std::isfinite(observed_min)) value = std::max(value, observed_min);
  if (std::isfinite(observed_max)) value = std::min(value, observed_max);
  return value;
}

std::vector<QuerySeries> evaluate(const QuerySpec& spec, Kind kind, const std::vector<double>& bounds,
                                  const std::vector<WindowEntry>& entries) {
  const int64_t first = floor_to(spec.start_s, spec.step_s);
  // group labels -> step start -> series key -> merged aggregate
  std::map<Labels, std::map<int64_t, std::map<std::string, Aggregate>>> groups;
  for (const WindowEntry& e : entries) {
    if (e.start_s < first || e.start_s > spec.end_s) continue;
    bool matches = true;
    for (const auto& [name, value] : spec.match) {
      const auto it = e.labels.find(name);
      if (it == e.labels.end() ? !value.empty() : it->second != value) {
        matches = false;
        break;
      }
    }
    if (!matches) continue;
    Labels group;
    for (const std::string& name : spec.by) {
      const auto it = e.labels.find(name);
      group[name] = it == e.labels.end() ? "" : it->second;
    }
    const int64_t step = first + (e.start_s - first) / spec.step_s * spec.step_s;
    groups[group][step][series_key(e.metric, e.labels)].merge(e.aggregate);
  }
  std::vector<QuerySeries> out;
  for (auto& [labels, steps] : groups) {
    QuerySeries series{labels, {}};
    for (auto& [step, by_series] : steps) {
      Aggregate all;
      double sum_of_last = 0;
      for (const auto& [key, a] : by_series) {
        all.merge(a);
        sum_of_last += a.last;
      }
      if (all.count == 0) continue;
      double value = 0;
      switch (spec.aggregation) {
        case Aggregation::kSum: value = kind == Kind::kGauge ? sum_of_last : all.sum; break;
        case Aggregation::kRate:
          value = (kind == Kind::kHistogram ? static_cast<double>(all.count) : all.sum) /
                  static_cast<double>(spec.step_s);
          break;
        case Aggregation::kAvg: value = all.sum / static_cast<double>(all.count); break;
        case Aggregation::kMin: value = all.min; break;
        case Aggregation::kMax: value = all.max; break;
        case Aggregation::kCount: value = static_cast<double>(all.count); break;
        case Aggregation::kPercentile:
          value = bucket_quantile(spec.percentile / 100, bounds, all.buckets, all.min, all.max);
          break;
      }
      if (!std::isfinite(value)) continue;
      series.points.push_back({step, value});
    }
    if (!series.points.empty()) out.push_back(std::move(series));
  }
  return out;
}

}  // namespace gameverse::metrics
