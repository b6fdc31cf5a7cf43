// The host's metrics registry: counters, gauges and histograms that plugins register, labelled by
// plugin, and rendered in the Prometheus text format.
#pragma once

#include <gameverse/abi.h>

#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace gameverse::platform {

struct MetricDefinition {
  gv_metric_kind kind = GV_METRIC_COUNTER;
  std::string name;
  std::string help;
  std::vector<std::string> label_names;
  std::vector<double> buckets;  // histograms
};

// A label value in the text format: backslash, double quote and newline escaped.
std::string escape_label_value(const std::string& value);
// A sample value in the text format: +Inf, -Inf, NaN or a number with every digit kept.
std::string prometheus_number(double value);

// A gRPC status code's name, "OK" .. "UNAUTHENTICATED"; "UNKNOWN" for a number out of range.
const char* status_code_name(int code);

class MetricsRegistry {
 public:
  // Returns the metric's id; the same plugin registering the same definition again (a reloaded
  // generation) gets the same id and keeps the values. Throws std::invalid_argument naming what is
  // wrong with the definition. Names beginning gameverse_rpc_ are the host's own.
  uint64_t register_metric(const std::string& plugin, MetricDefinition definition);

  // Adds (counter), sets (gauge) or observes (histogram) `value` for the label values. Wrong label
  // counts are ignored and counted in gameverse_metric_errors_total.
  // Only the plugin that registered the metric may record it.
  void record(const std::string& plugin, uint64_t id, const std::vector<std::string>& label_values,
              double value);

  // Everything, in the Prometheus text exposition format (version 0.0.4).
  std::string render_prometheus() const;

  // One series' value, for tests: the counter/gauge value, or the histogram's count.
  std::optional<double> value(const std::string& plugin, const std::string& name,
                              const std::vector<std::string>& label_values) const;

 private:
  struct Series {
    double value = 0;               // counter or gauge
    std::vector<uint64_t> buckets;  // histogram: counts per bucket (cumulative when rendered)
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string plugin;
    MetricDefinition definition;
    std::map<std::vector<std::string>, Series> series;
  };

  mutable std::mutex mu_;
  std::map<uint64_t, Family> families_;
  std::map<std::pair<std::string, std::string>, uint64_t> ids_;  // (plugin, name) -> id
  uint64_t next_id_ = 1;
  uint64_t errors_ = 0;
};

}  // namespace gameverse::platform
