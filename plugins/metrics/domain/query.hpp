// Query math over stored window entries: the resolution a step reads, the key prefixes that cover
// a time range exactly, and aggregation by step and label (sum, rate, avg, min, max, count and
// percentiles interpolated within histogram buckets).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "domain/model.hpp"

namespace gameverse::metrics {

enum class Aggregation { kSum = 1, kRate = 2, kAvg = 3, kMin = 4, kMax = 5, kCount = 6, kPercentile = 7 };

struct QuerySpec {
  std::string metric;
  int64_t start_s = 0;
  int64_t end_s = 0;
  int64_t step_s = 0;
  Aggregation aggregation = Aggregation::kSum;
  double percentile = 0;  // 0..100
  Labels match;
  std::vector<std::string> by;
};

struct QueryPoint {
  int64_t unix_s;
  double value;
};

struct QuerySeries {
  Labels labels;
  std::vector<QueryPoint> points;
};

// Width of window start times in keys: 12 decimal digits, zero-padded.
constexpr int kTimeDigits = 12;
std::string padded_time(int64_t unix_s);

// The fewest decimal prefixes of kTimeDigits-digit numbers that together hold exactly [from, to].
std::vector<std::string> decimal_prefixes(int64_t from, int64_t to);

// Checks the query against the family (kind and aggregation, labels), throwing MetricsError
// kInvalidArgument naming the field; returns the index of the resolution to read.
size_t check_query(const QuerySpec& spec, const Family* family, const std::vector<Resolution>& resolutions,
                   int64_t max_points);

// Aggregates entries (any order; one series' window may come in several entries) into series.
std::vector<QuerySeries> evaluate(const QuerySpec& spec, Kind kind, const std::vector<double>& bounds,
                                  const std::vector<WindowEntry>& entries);

// The q-th quantile (0..1) of a histogram's buckets, linear within the bucket it falls in and kept
// within the observed min and max when known; NaN without observations.
double bucket_quantile(double q, const std::vector<double>& bounds, const std::vector<uint64_t>& buckets,
                       double observed_min, double observed_max);

}  // namespace gameverse::metrics
