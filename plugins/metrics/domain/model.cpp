#include "domain/model.hpp"

#include <algorithm>

namespace gameverse::metrics {

namespace {

bool letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool digit(char c) {
  return c >= '0' && c <= '9';
}

constexpr size_t kMaxNameBytes = 200;

}  // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kCounter: return "counter";
    case Kind::kGauge: return "gauge";
    case Kind::kHistogram: return "histogram";
  }
  return "unknown";
}

std::string metric_name_error(const std::string& name, const std::string& what) {
  if (name.empty()) return what + " is empty";
  if (name.size() > kMaxNameBytes) {
    return what + " is " + std::to_string(name.size()) + " bytes; a metric name has at most " +
           std::to_string(kMaxNameBytes);
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!(letter(c) || c == ':' || (i > 0 && digit(c)))) {
      return what + " '" + name + "' is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)";
    }
  }
  if (name.rfind("__", 0) == 0) return what + " '" + name + "': names beginning \"__\" are reserved";
  return {};
}

std::string label_name_error(const std::string& name, const std::string& what) {
  if (name.empty()) return what + " is empty";
  if (name.size() > kMaxNameBytes) {
    return what + " is " + std::to_string(name.size()) + " bytes; a label name has at most " +
           std::to_string(kMaxNameBytes);
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!(letter(c) || (i > 0 && digit(c)))) {
      return what + " '" + name + "' is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)";
    }
  }
  if (name.rfind("__", 0) == 0) return what + " '" + name + "': label names beginning \"__\" are reserved";
  if (name == "le" || name == "plugin") return what + " '" + name + "' is reserved for the exposition";
  return {};
}

std::string series_key(const std::string& metric, const Labels& labels) {
  std::string out = metric + "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += name + "=\"";
    for (char c : value) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

void Aggregate::add(double value, int64_t at_ms, const std::vector<double>* bounds) {
  sum += value;
  ++count;
  min = std::min(min, value);
  max = std::max(max, value);
  if (at_ms >= last_ms) {
    last = value;
    last_ms = at_ms;
  }
  if (bounds != nullptr) {
    buckets.resize(bounds->size() + 1, 0);
    // Bucket i holds (bounds[i-1], bounds[i]]: the first bound not below the value.
    const auto it = std::lower_bound(bounds->begin(), bounds->end(), value);
    ++buckets[static_cast<size_t>(it - bounds->begin())];
  }
}

void Aggregate::add_buckets(const std::vector<uint64_t>& counts, double observed_sum, uint64_t observed_count,
                            const double* observed_min, const double* observed_max) {
  if (buckets.size() < counts.size()) buckets.resize(counts.size(), 0);
  for (size_t i = 0; i < counts.size(); ++i) buckets[i] += counts[i];
  sum += observed_sum;
  count += observed_count;
  if (observed_min != nullptr) min = std::min(min, *observed_min);
  if (observed_max != nullptr) max = std::max(max, *observed_max);
}

void Aggregate::merge(const Aggregate& other) {
  sum += other.sum;
  count += other.count;
  min = std::min(min, other.min);
  max = std::max(max, other.max);
  if (other.last_ms >= last_ms && other.count > 0) {
    last = other.last;
    last_ms = other.last_ms;
  }
  if (buckets.size() < other.buckets.size()) buckets.resize(other.buckets.size(), 0);
  for (size_t i = 0; i < other.buckets.size(); ++i) buckets[i] += other.buckets[i];
}

}  // namespace gameverse::metrics
