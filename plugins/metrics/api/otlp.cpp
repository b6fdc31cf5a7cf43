#include "api/otlp.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace gameverse::metrics {

namespace {

namespace otlp = opentelemetry::proto::metrics::v1;
namespace common = opentelemetry::proto::common::v1;

// A scalar attribute as a label value; false for arrays, maps, bytes and empty values.
bool text_of(const common::AnyValue& v, std::string& out) {
  switch (v.value_case()) {
    case common::AnyValue::kStringValue: out = v.string_value(); return true;
    case common::AnyValue::kBoolValue: out = v.bool_value() ? "true" : "false"; return true;
    case common::AnyValue::kIntValue: out = std::to_string(v.int_value()); return true;
    case common::AnyValue::kDoubleValue: {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.17g", v.double_value());
      out = buffer;
      return true;
    }
    default: return false;
  }
}

// A name as shown in an error: a long one is cut, as every refused point carries its reason.
std::string shown(const std::string& name) {
  return name.size() <= 64 ? name : name.substr(0, 64) + "...";
}

template <class Attributes>
std::string read_labels(const Attributes& attributes, const std::string& metric, Labels& labels) {
  if (attributes.size() > kMaxPointAttributes) {
    return "metric '" + shown(metric) + "': a data point has " + std::to_string(attributes.size()) +
           " attributes; at most " + std::to_string(kMaxPointAttributes) + " are taken";
  }
  for (const common::KeyValue& kv : attributes) {
    std::string value;
    if (!text_of(kv.value(), value)) {
      return "metric '" + shown(metric) + "' attribute '" + shown(kv.key()) +
             "' is not a string, bool, int or double";
    }
    labels[kv.key()] = std::move(value);
  }
  return {};
}

// The sorted attributes, or empty with `error` set when they are more than the limits allow.
std::string resource_identity(const opentelemetry::proto::resource::v1::Resource& resource,
                              std::string& error) {
  size_t bytes = 0;
  for (const common::KeyValue& kv : resource.attributes()) {
    bytes += kv.key().size() + (kv.value().has_string_value() ? kv.value().string_value().size() : 24);
  }
  if (static_cast<size_t>(resource.attributes_size()) > kMaxResourceAttributes ||
      bytes > kMaxResourceIdentityBytes) {
    error = "a resource has " + std::to_string(resource.attributes_size()) + " attributes of " +
            std::to_string(bytes) + " bytes; at most " + std::to_string(kMaxResourceAttributes) +
            " attributes of " + std::to_string(kMaxResourceIdentityBytes) + " bytes are taken";
    return {};
  }
  std::vector<std::string> parts;
  for (const common::KeyValue& kv : resource.attributes()) {
    std::string value;
    text_of(kv.value(), value);
    parts.push_back(kv.key() + "=" + value);
  }
  std::sort(parts.begin(), parts.end());
  std::string out;
  for (const auto& p : parts) out += p + ",";
  // Every point carries its stream: a 64-bit FNV-1a digest instead of the whole identity.
  // Streams are also keyed by sender, so only a sender's own resources could collide.
  uint64_t h = 14695981039346656037ULL;
  for (const unsigned char c : out) h = (h ^ c) * 1099511628211ULL;
  char digest[17];
  std::snprintf(digest, sizeof digest, "%016llx", static_cast<unsigned long long>(h));
  return digest;
}

template <class Visit>
void for_each_data_points(const otlp::Metric& m, Visit&& visit) {
  switch (m.data_case()) {
    case otlp::Metric::kGauge: visit(m.gauge().data_points()); break;
    case otlp::Metric::kSum: visit(m.sum().data_points()); break;
    case otlp::Metric::kHistogram: visit(m.histogram().data_points()); break;
    case otlp::Metric::kExponentialHistogram: visit(m.exponential_histogram().data_points()); break;
    case otlp::Metric::kSummary: visit(m.summary().data_points()); break;
    default: break;
  }
}

template <class DataPoints>
void reject_all(const DataPoints& data_points, const std::string& reason, std::vector<OtlpPoint>& out) {
  for (int i = 0; i < data_points.size(); ++i) {
    OtlpPoint p;
    p.error = reason;
    out.push_back(std::move(p));
  }
}

}  // namespace

size_t point_count(const opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest& request) {
  size_t n = 0;
  for (const otlp::ResourceMetrics& rm : request.resource_metrics()) {
    for (const otlp::ScopeMetrics& sm : rm.scope_metrics()) {
      for (const otlp::Metric& m : sm.metrics())
        for_each_data_points(m, [&](const auto& points) { n += static_cast<size_t>(points.size()); });
    }
  }
  return n;
}

std::vector<OtlpPoint> points_of(
    const opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest& request,
    const std::string& sender) {
  std::vector<OtlpPoint> out;
  out.reserve(point_count(request));
  for (const otlp::ResourceMetrics& rm : request.resource_metrics()) {
    std::string identity_error;
    const std::string stream = sender + "|" + resource_identity(rm.resource(), identity_error);
    for (const otlp::ScopeMetrics& sm : rm.scope_metrics()) {
      for (const otlp::Metric& m : sm.metrics()) {
        const std::string what = "metric '" + shown(m.name()) + "'";
        // Refused before anything is copied into each point.
        std::string refused = identity_error;
        if (refused.empty() && m.name().size() > kMaxOtlpMetricNameBytes) {
          refused = what + ": the name is " + std::to_string(m.name().size()) + " bytes; at most " +
                    std::to_string(kMaxOtlpMetricNameBytes);
        }
        if (!refused.empty()) {
          for_each_data_points(m, [&](const auto& points) { reject_all(points, refused, out); });
          continue;
        }
        auto number_points = [&](const auto& data_points, Kind kind, bool cumulative) {
          for (const otlp::NumberDataPoint& dp : data_points) {
            OtlpPoint p;
            p.metric = m.name();
            p.kind = kind;
            p.cumulative = cumulative;
            p.stream = stream;
            p.start_ns = dp.start_time_unix_nano();
            p.time_ns = dp.time_unix_nano();
            p.error = read_labels(dp.attributes(), m.name(), p.labels);
            if (dp.value_case() == otlp::NumberDataPoint::kAsDouble) {
              p.value = dp.as_double();
            } else if (dp.value_case() == otlp::NumberDataPoint::kAsInt) {
              p.value = static_cast<double>(dp.as_int());
            } else if (p.error.empty()) {
              p.error = what + ": a data point without a value";
            }
            out.push_back(std::move(p));
          }
        };
        switch (m.data_case()) {
          case otlp::Metric::kGauge: number_points(m.gauge().data_points(), Kind::kGauge, false); break;
          case otlp::Metric::kSum: {
            const auto temporality = m.sum().aggregation_temporality();
            if (temporality != otlp::AGGREGATION_TEMPORALITY_CUMULATIVE &&
                temporality != otlp::AGGREGATION_TEMPORALITY_DELTA) {
              reject_all(m.sum().data_points(), what + ": aggregation_temporality is unspecified", out);
              break;
            }
            const bool cumulative = temporality == otlp::AGGREGATION_TEMPORALITY_CUMULATIVE;
            // An up-down counter's cumulative value is a level: a gauge.
            const Kind kind = m.sum().is_monotonic() || !cumulative ? Kind::kCounter : Kind::kGauge;
            number_points(m.sum().data_points(), kind, cumulative && kind == Kind::kCounter);
            break;
          }
          case otlp::Metric::kHistogram: {
            const auto temporality = m.histogram().aggregation_temporality();
            if (temporality != otlp::AGGREGATION_TEMPORALITY_CUMULATIVE &&
                temporality != otlp::AGGREGATION_TEMPORALITY_DELTA) {
              reject_all(m.histogram().data_points(), what + ": aggregation_temporality is unspecified", out);
              break;
            }
            for (const otlp::HistogramDataPoint& dp : m.histogram().data_points()) {
              OtlpPoint p;
              if (static_cast<size_t>(dp.explicit_bounds_size()) > kMaxHistogramBounds) {
                p.error = what + ": a histogram point has " + std::to_string(dp.explicit_bounds_size()) +
                          " explicit_bounds; at most " + std::to_string(kMaxHistogramBounds) + " are taken";
                out.push_back(std::move(p));
                continue;
              }
              p.metric = m.name();
              p.kind = Kind::kHistogram;
              p.cumulative = temporality == otlp::AGGREGATION_TEMPORALITY_CUMULATIVE;
              p.stream = stream;
              p.start_ns = dp.start_time_unix_nano();
              p.time_ns = dp.time_unix_nano();
              p.error = read_labels(dp.attributes(), m.name(), p.labels);
              p.histogram.bounds.assign(dp.explicit_bounds().begin(), dp.explicit_bounds().end());
              p.histogram.buckets.assign(dp.bucket_counts().begin(), dp.bucket_counts().end());
              p.histogram.sum = dp.has_sum() ? dp.sum() : 0;
              p.histogram.count = dp.count();
              if (dp.has_min()) p.min = dp.min();
              if (dp.has_max()) p.max = dp.max();
              out.push_back(std::move(p));
            }
            break;
          }
          case otlp::Metric::kExponentialHistogram:
            reject_all(m.exponential_histogram().data_points(),
                       what + ": exponential histograms are not taken; export explicit-bucket histograms",
                       out);
            break;
          case otlp::Metric::kSummary:
            reject_all(m.summary().data_points(), what + ": summaries are not taken", out);
            break;
          default: break;
        }
      }
    }
  }
  return out;
}

}  // namespace gameverse::metrics
