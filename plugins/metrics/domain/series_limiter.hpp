// Bounds the series the service holds: per metric, per sender (the client that made a series
// first) and in all. A series not seen for the idle time is forgotten and frees its place.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace gameverse::metrics {

struct SeriesLimits {
  size_t per_metric = 1000;
  size_t per_sender = 10000;
  size_t total = 100000;
};

struct NewSeries {
  std::string key;  // series_key()
  std::string metric;
};

class SeriesLimiter {
 public:
  explicit SeriesLimiter(SeriesLimits limits) : limits_(limits) {}

  // Admits all of `series` for `sender`, or none: empty when admitted (known series only have
  // their time refreshed), else the refusal naming the limit that was reached.
  std::string admit(const std::string& sender, const std::vector<NewSeries>& series, int64_t now_s);
  bool known(const std::string& key) const { return series_.count(key) != 0; }
  // Forgets series last seen before `cutoff_s`; returns how many.
  size_t forget_idle(int64_t cutoff_s);
  size_t series_of_metric(const std::string& metric) const;
  size_t size() const { return series_.size(); }

 private:
  struct Entry {
    std::string metric;
    std::string sender;
    int64_t seen_s;
  };
  SeriesLimits limits_;
  std::unordered_map<std::string, Entry> series_;
  std::unordered_map<std::string, size_t> per_metric_;
  std::unordered_map<std::string, size_t> per_sender_;
};

}  // namespace gameverse::metrics
