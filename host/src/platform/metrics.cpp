#include "platform/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <regex>
#include <sstream>

namespace gameverse::platform {

namespace {

const std::vector<double> kDefaultBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,  0.5,    1,     2.5,  5,     10};

const char* type_name(gv_metric_kind kind) {
  switch (kind) {
    case GV_METRIC_COUNTER: return "counter";
    case GV_METRIC_GAUGE: return "gauge";
    default: return "histogram";
  }
}

// HELP text escapes only backslash and newline; label values also the double quote.
std::string escape(const std::string& value, bool quote = true) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || (quote && c == '"')) out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

const char* status_code_name(int code) {
  static const char* const names[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code < static_cast<int>(std::size(names)) ? names[code] : "UNKNOWN";
}

std::string escape_label_value(const std::string& value) {
  return escape(value);
}

std::string prometheus_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // The shortest digits that read back as v; plain decimals (0.0005, not 5e-04) where they stay short.
  char buffer[64];
  const double magnitude = std::fabs(v);
  const bool plain = v == 0 || (magnitude >= 1e-9 && magnitude < 1e15);
  const auto result = plain ? std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::fixed)
                            : std::to_chars(buffer, buffer + sizeof buffer, v);
  return std::string(buffer, result.ptr);
}

namespace {

std::string number(double v) {
  return prometheus_number(v);
}

std::string labels(const std::string& plugin, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const std::string& extra = "") {
  std::string out = "{plugin=\"" + escape(plugin) + "\"";
  for (size_t i = 0; i < names.size(); ++i) out += "," + names[i] + "=\"" + escape(values[i]) + "\"";
  if (!extra.empty()) out += "," + extra;
  return out + "}";
}

bool same(const MetricDefinition& a, const MetricDefinition& b) {
  return a.kind == b.kind && a.label_names == b.label_names && a.buckets == b.buckets;
}

}  // namespace

uint64_t MetricsRegistry::register_metric(const std::string& plugin, MetricDefinition definition) {
  static const std::regex name_pattern("^[a-zA-Z_][a-zA-Z0-9_]*$");
  if (!std::regex_match(definition.name, name_pattern)) {
    throw std::invalid_argument("metric name '" + definition.name + "' is not [a-zA-Z_][a-zA-Z0-9_]*");
  }
  if (definition.name.rfind("gameverse_rpc_", 0) == 0) {
    throw std::invalid_argument("metric name '" + definition.name +
                                "': gameverse_rpc_ names are the host's own");
  }
  if (definition.kind < GV_METRIC_COUNTER || definition.kind > GV_METRIC_HISTOGRAM) {
    throw std::invalid_argument("metric '" + definition.name + "' has an unknown kind " +
                                std::to_string(definition.kind));
  }
  for (const auto& label : definition.label_names) {
    if (!std::regex_match(label, name_pattern) || label == "plugin" || label == "le") {
      throw std::invalid_argument("metric '" + definition.name + "': '" + label + "' cannot be a label name");
    }
  }
  if (definition.kind == GV_METRIC_HISTOGRAM) {
    if (definition.buckets.empty()) definition.buckets = kDefaultBuckets;
    if (!std::is_sorted(definition.buckets.begin(), definition.buckets.end()) ||
        std::adjacent_find(definition.buckets.begin(), definition.buckets.end()) !=
            definition.buckets.end()) {
      throw std::invalid_argument("metric '" + definition.name + "': histogram buckets must increase");
    }
  } else {
    definition.buckets.clear();
  }
  std::lock_guard lock(mu_);
  for (const auto& [id, family] : families_) {
    if (family.definition.name != definition.name) continue;
    if (family.definition.kind != definition.kind ||
        family.definition.label_names != definition.label_names) {
      if (family.plugin == plugin) {
        throw std::invalid_argument("metric '" + definition.name +
                                    "' is already registered by this plugin with another kind or labels");
      }
      throw std::invalid_argument("metric '" + definition.name + "' is already registered by plugin '" +
                                  family.plugin + "' with another kind or labels");
    }
  }
  if (auto it = ids_.find({plugin, definition.name}); it != ids_.end()) {
    if (!same(families_.at(it->second).definition, definition)) {
      throw std::invalid_argument("metric '" + definition.name +
                                  "' is already registered with other buckets");
    }
    return it->second;
  }
  const uint64_t id = next_id_++;
  ids_.emplace(std::make_pair(plugin, definition.name), id);
  families_.emplace(id, Family{plugin, std::move(definition), {}});
  return id;
}

void MetricsRegistry::record(const std::string& plugin, uint64_t id,
                             const std::vector<std::string>& label_values, double value) {
  std::lock_guard lock(mu_);
  auto it = families_.find(id);
  if (it == families_.end() || it->second.plugin != plugin ||
      label_values.size() != it->second.definition.label_names.size() || std::isnan(value)) {
    ++errors_;
    return;
  }
  Family& family = it->second;
  Series& series = family.series[label_values];
  switch (family.definition.kind) {
    case GV_METRIC_COUNTER:
      if (value > 0) series.value += value;
      break;
    case GV_METRIC_GAUGE: series.value = value; break;
    default: {
      const auto& bounds = family.definition.buckets;
      series.buckets.resize(bounds.size() + 1);
      const size_t at =
          static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
      ++series.buckets[at];
      series.sum += value;
      ++series.count;
    }
  }
}

std::optional<double> MetricsRegistry::value(const std::string& plugin, const std::string& name,
                                             const std::vector<std::string>& label_values) const {
  std::lock_guard lock(mu_);
  auto id = ids_.find({plugin, name});
  if (id == ids_.end()) return std::nullopt;
  const Family& family = families_.at(id->second);
  auto series = family.series.find(label_values);
  if (series == family.series.end()) return std::nullopt;
  return family.definition.kind == GV_METRIC_HISTOGRAM ? static_cast<double>(series->second.count)
                                                       : series->second.value;
}

std::string MetricsRegistry::render_prometheus() const {
  std::lock_guard lock(mu_);
  // One HELP/TYPE block per metric name, with every plugin's series under it.
  std::map<std::string, std::vector<const Family*>> by_name;
  for (const auto& [id, family] : families_) by_name[family.definition.name].push_back(&family);
  std::ostringstream out;
  for (const auto& [name, families] : by_name) {
    const MetricDefinition& d = families.front()->definition;
    out << "# HELP " << name << " " << escape(d.help, false) << "\n# TYPE " << name << " "
        << type_name(d.kind) << "\n";
    for (const Family* family : families) {
      for (const auto& [values, series] : family->series) {
        if (d.kind != GV_METRIC_HISTOGRAM) {
          out << name << labels(family->plugin, d.label_names, values) << " " << number(series.value) << "\n";
          continue;
        }
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= family->definition.buckets.size(); ++i) {
          cumulative += i < series.buckets.size() ? series.buckets[i] : 0;
          const std::string le =
              i < family->definition.buckets.size() ? number(family->definition.buckets[i]) : "+Inf";
          out << name << "_bucket" << labels(family->plugin, d.label_names, values, "le=\"" + le + "\"")
              << " " << cumulative << "\n";
        }
        out << name << "_sum" << labels(family->plugin, d.label_names, values) << " " << number(series.sum)
            << "\n";
        out << name << "_count" << labels(family->plugin, d.label_names, values) << " " << series.count
            << "\n";
      }
    }
  }
  out << "# HELP gameverse_metric_errors_total Metric records dropped for a wrong label count or value.\n"
      << "# TYPE gameverse_metric_errors_total counter\ngameverse_metric_errors_total " << errors_ << "\n";
  return out.str();
}

}  // namespace gameverse::platform
