// Turns OpenTelemetry cumulative points into deltas, per stream (sender, resource and series).
// A stream keeps its start time and last value; a new start time is a reset, whose whole value is
// the delta. A stream first seen that began before tracking did (the service restarted) gives
// no delta: its value only becomes the baseline, since what was counted before is unknown.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace gameverse::metrics {

struct HistogramValue {
  std::vector<double> bounds;
  std::vector<uint64_t> buckets;
  double sum = 0;
  uint64_t count = 0;
};

class CumulativeTracker {
 public:
  // `tracking_since_ns`: streams that started at or after this were seen from their start.
  CumulativeTracker(uint64_t tracking_since_ns, size_t max_streams, size_t max_bytes = SIZE_MAX)
      : since_ns_(tracking_since_ns), max_streams_(max_streams), max_bytes_(max_bytes) {}

  // The delta since the stream's last point; nullopt for a baseline. Throws std::length_error when a
  // new stream would exceed max_streams, or the streams' estimated size max_bytes.
  std::optional<double> sum_delta(const std::string& stream, uint64_t start_ns, double value, int64_t now_s);
  std::optional<HistogramValue> histogram_delta(const std::string& stream, uint64_t start_ns,
                                                const HistogramValue& value, int64_t now_s);
  size_t forget_idle(int64_t cutoff_s);
  size_t size() const { return streams_.size(); }
  size_t bytes() const { return bytes_; }

  // For a hot reload: the streams as they are, and their restoration in the next generation.
  struct Stream {
    std::string key;
    uint64_t start_ns = 0;
    double value = 0;
    HistogramValue histogram;
    int64_t seen_s = 0;
  };
  std::vector<Stream> streams() const;
  void restore(const std::vector<Stream>& streams);
  uint64_t tracking_since_ns() const { return since_ns_; }

 private:
  Stream* find_or_add(const std::string& stream, bool& is_new);
  static size_t bytes_of(const Stream& s);
  uint64_t since_ns_;
  size_t max_streams_;
  size_t max_bytes_;
  size_t bytes_ = 0;  // bytes_of() every stream
  std::unordered_map<std::string, Stream> streams_;
};

}  // namespace gameverse::metrics
