// The metrics domain: names and labels, series, per-window aggregates and the errors that refuse
// input. Plain C++: no SDK or protobuf.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gameverse/domain_error.hpp>

namespace gameverse::metrics {

enum class Kind { kCounter = 1, kGauge = 2, kHistogram = 3 };
const char* kind_name(Kind kind);

// A refusal of input: INVALID_ARGUMENT, RESOURCE_EXHAUSTED (a limit) or UNAVAILABLE.
using MetricsError = gameverse::DomainError;

// Label name -> value, sorted by name.
using Labels = std::map<std::string, std::string>;

// Prometheus names: metrics [a-zA-Z_:][a-zA-Z0-9_:]*, labels [a-zA-Z_][a-zA-Z0-9_]* not "__...".
// Empty when valid, else why not, naming `what` (e.g. "measurements[2].name").
std::string metric_name_error(const std::string& name, const std::string& what);
std::string label_name_error(const std::string& name, const std::string& what);

// metric{a="x",b="y"}: one string per series, values escaped as in the Prometheus text format.
std::string series_key(const std::string& metric, const Labels& labels);

// What one series did in one window.
struct Aggregate {
  double sum = 0;      // counter: the increments; gauge: the samples; histogram: the observations
  uint64_t count = 0;  // increments, samples or observations
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double last = 0;  // gauge: the latest sample
  int64_t last_ms = std::numeric_limits<int64_t>::min();
  std::vector<uint64_t> buckets;  // histogram: one per bound and one above the last (le +Inf)

  // One value: an increment, a gauge sample, or an observation into `bounds` (histograms).
  void add(double value, int64_t at_ms, const std::vector<double>* bounds = nullptr);
  // Bucket counts of a histogram over the same bounds, with their sum and count.
  void add_buckets(const std::vector<uint64_t>& counts, double observed_sum, uint64_t observed_count,
                   const double* observed_min, const double* observed_max);
  void merge(const Aggregate& other);
  bool empty() const { return count == 0; }
};

struct Family {
  std::string name;
  Kind kind = Kind::kCounter;
  std::vector<std::string> label_names;  // sorted
  std::vector<double> bounds;            // histogram
  std::string creator;                   // the player who made it by Record; empty for telemetry
};

// What players Record is named with this prefix, and only that: so players can neither take an
// exported metric's name nor use up the names telemetry senders have.
inline constexpr const char* kPlayerPrefix = "player_";

// The resolutions windows are kept at.
struct Resolution {
  const char* name;        // "10s"
  const char* collection;  // "w10s"
  int64_t width_s;
  int64_t retention_s;
};

// One series' aggregate in one window of one resolution.
struct WindowEntry {
  size_t resolution = 0;  // index into the service's resolutions
  int64_t start_s = 0;
  std::string metric;
  Labels labels;
  Kind kind = Kind::kCounter;
  std::vector<double> bounds;
  Aggregate aggregate;
};

}  // namespace gameverse::metrics
