// The metrics service: checks and admits what game clients record and OpenTelemetry senders
// export, turns cumulative points into deltas, aggregates them per series in windows of every
// resolution and hands closed windows out to be stored. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "domain/cumulative.hpp"
#include "domain/model.hpp"
#include "domain/series_limiter.hpp"

namespace gameverse::metrics {

struct Settings {
  SeriesLimits limits;
  size_t max_metrics = 1000;         // exported (telemetry) metric names
  size_t max_player_metrics = 1000;  // names players made by Record, all together
  size_t max_names_per_player = 50;  // names one player may make
  size_t max_labels = 8;
  size_t max_label_value_bytes = 128;
  std::vector<double> histogram_bounds;     // for recorded observations
  std::vector<Resolution> resolutions;      // finest first
  int64_t flush_delay_s = 2;                // a window is handed out this long after it ends
  int64_t max_lateness_s = 3600;            // exported points older than this are refused
  int64_t series_idle_s = 3600;             // series unseen this long free their place in the limits
  size_t max_pending_entries = 200000;      // window aggregates held before they are stored
  size_t max_pending_bytes = 256 << 20;     // and their estimated size: histograms weigh more
  size_t max_cumulative_bytes = 128 << 20;  // last values of OTLP cumulative streams
  // Players' series stay off /metrics unless asked for: their label values are the players' own.
  bool expose_recorded = false;
};

// Bucket bounds one histogram may have: each bound is copied into every window of every series
// and into the metric's stored record.
constexpr size_t kMaxHistogramBounds = 256;

// Where aggregates are also exposed (the host's /metrics): counters add, gauges set, histograms
// observe.
class Exposition {
 public:
  virtual ~Exposition() = default;
  virtual void record(const Family& family, const Labels& labels, double value) = 0;
};

// What one window aggregate held in memory weighs, about: its key, labels, bounds and buckets.
size_t pending_bytes(const WindowEntry& entry);

// What a game client records.
struct Measurement {
  enum class Type { kCounterAdd = 1, kGaugeSet = 2, kHistogramObserve = 3, kEvent = 4 };
  std::string name;
  Labels labels;
  Type type = Type::kCounterAdd;
  double value = 0;
  std::optional<double> duration_s;  // events
};

// One OpenTelemetry data point, as read from the request.
struct OtlpPoint {
  std::string metric;
  Kind kind = Kind::kCounter;
  bool cumulative = false;
  Labels labels;
  std::string stream;  // the sender and resource: with the series, the identity of a cumulative stream
  uint64_t start_ns = 0;
  uint64_t time_ns = 0;
  double value = 0;
  HistogramValue histogram;
  std::optional<double> min, max;
  std::string error;  // why the point could not be read (an attribute that is not a scalar)
};

struct ExportOutcome {
  int64_t accepted = 0;
  int64_t rejected = 0;
  std::string error_message;  // the first few distinct reasons
};

class MetricsService {
 public:
  // `tracking_since_ns`: cumulative streams that started before this give a baseline only.
  MetricsService(Settings settings, Exposition* exposition, uint64_t tracking_since_ns);

  // Records a batch, all or nothing; returns how many measurements. Throws MetricsError.
  size_t record(const std::string& sender, const std::vector<Measurement>& batch, int64_t now_ms);
  // Takes what it can; the rest is counted in the outcome with the reasons. Throws MetricsError
  // kUnavailable while the store is down.
  ExportOutcome export_points(const std::string& sender, const std::vector<OtlpPoint>& points,
                              int64_t now_ms);

  // Windows that ended flush_delay_s ago or more; take_all() also the open ones (at shutdown).
  std::vector<WindowEntry> take_closed(int64_t now_s);
  std::vector<WindowEntry> take_all();
  // Entries that were not stored, or that a previous generation handed over: merged back.
  void put_back(const std::vector<WindowEntry>& entries);
  // Families made since the last call, to be stored; families read back at start.
  std::vector<Family> take_new_families();
  void load_families(const std::vector<Family>& families);
  std::optional<Family> family(const std::string& name) const;
  std::vector<std::pair<Family, size_t>> families(const std::string& prefix) const;  // with series counts

  // While the store is down, new data is refused with kUnavailable and `why`.
  void set_store_down(std::optional<std::string> why);
  bool store_down() const;
  // Copies of the metric's windows not yet handed out, for queries that reach up to now.
  std::vector<WindowEntry> pending(size_t resolution, const std::string& metric) const;
  void forget_idle(int64_t now_s);

  std::vector<CumulativeTracker::Stream> cumulative_streams() const;
  void restore_cumulative(const std::vector<CumulativeTracker::Stream>& streams);
  uint64_t tracking_since_ns() const;
  size_t pending_entries() const;
  const Settings& settings() const { return settings_; }

 private:
  using WindowKey = std::tuple<size_t, int64_t, std::string>;  // resolution, start, series key
  struct Target {
    const Family* existing;
    Family family;
    Labels labels;
  };

  // The family `name` of `kind` with these labels: the known one, or a new one; error text otherwise.
  std::string resolve(const std::string& name, Kind kind, const Labels& labels,
                      const std::vector<double>* bounds, const std::string& what, Family& out,
                      size_t new_families, const std::string& creator) const;
  void count_new(const Family& family);
  std::string check_labels(const Labels& labels, const std::string& what) const;
  void check_store_and_room() const;
  void add(const Family& family, const Labels& labels, int64_t at_ms,
           const std::function<void(Aggregate&)>& fn);

  Settings settings_;
  Exposition* exposition_;
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  size_t player_families_ = 0;                      // of families_, those named kPlayerPrefix...
  std::map<std::string, size_t> names_of_creator_;  // players' families by who made them
  std::vector<Family> new_families_;
  SeriesLimiter limiter_;
  CumulativeTracker cumulative_;
  std::map<WindowKey, WindowEntry> windows_;
  size_t pending_bytes_ = 0;  // pending_bytes() of every entry of windows_
  std::optional<std::string> store_down_;
};

}  // namespace gameverse::metrics
