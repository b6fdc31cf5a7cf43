#include "domain/series_limiter.hpp"

#include <unordered_set>

namespace gameverse::metrics {

std::string SeriesLimiter::admit(const std::string& sender, const std::vector<NewSeries>& series,
                                 int64_t now_s) {
  std::unordered_map<std::string, size_t> added_per_metric;
  std::unordered_set<std::string> added;
  for (const NewSeries& s : series) {
    if (series_.count(s.key) != 0 || !added.insert(s.key).second) continue;
    const size_t metric_count = per_metric_[s.metric] + ++added_per_metric[s.metric];
    if (metric_count > limits_.per_metric) {
      return "metric '" + s.metric + "' has " + std::to_string(per_metric_[s.metric]) +
             " series, its limit (max_series_per_metric = " + std::to_string(limits_.per_metric) +
             "): the new series " + s.key + " is refused";
    }
    if (per_sender_[sender] + added.size() > limits_.per_sender) {
      return "sender '" + sender + "' has made " + std::to_string(per_sender_[sender]) +
             " series, its limit (max_series_per_sender = " + std::to_string(limits_.per_sender) +
             "): the new series " + s.key + " is refused";
    }
    if (series_.size() + added.size() > limits_.total) {
      return "the metrics service holds " + std::to_string(series_.size()) +
             " series, its limit (max_series = " + std::to_string(limits_.total) + "): the new series " +
             s.key + " is refused";
    }
  }
  for (const NewSeries& s : series) {
    auto [it, inserted] = series_.try_emplace(s.key, Entry{s.metric, sender, now_s});
    if (inserted) {
      ++per_metric_[s.metric];
      ++per_sender_[sender];
    } else {
      it->second.seen_s = now_s;
    }
  }
  // Counters of senders and metrics that hold nothing are dropped in forget_idle.
  return {};
}

size_t SeriesLimiter::forget_idle(int64_t cutoff_s) {
  size_t forgotten = 0;
  for (auto it = series_.begin(); it != series_.end();) {
    if (it->second.seen_s >= cutoff_s) {
      ++it;
      continue;
    }
    if (--per_metric_[it->second.metric] == 0) per_metric_.erase(it->second.metric);
    if (--per_sender_[it->second.sender] == 0) per_sender_.erase(it->second.sender);
    it = series_.erase(it);
    ++forgotten;
  }
  for (auto it = per_sender_.begin(); it != per_sender_.end();)
    it = it->second == 0 ? per_sender_.erase(it) : ++it;
  for (auto it = per_metric_.begin(); it != per_metric_.end();)
    it = it->second == 0 ? per_metric_.erase(it) : ++it;
  return forgotten;
}

size_t SeriesLimiter::series_of_metric(const std::string& metric) const {
  const auto it = per_metric_.find(metric);
  return it == per_metric_.end() ? 0 : it->second;
}

}  // namespace gameverse::metrics
