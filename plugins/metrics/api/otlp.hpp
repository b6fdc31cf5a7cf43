// Reads OTLP metrics (opentelemetry.proto.metrics.v1) into the domain's points: sums, gauges and
// explicit-bucket histograms, cumulative or delta. What cannot be read becomes a point with the
// reason, counted as rejected.
#pragma once

#include <string>
#include <vector>

#include "domain/metrics_service.hpp"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"

namespace gameverse::metrics {

// A resource's attributes identify its cumulative streams; a larger identity refuses its points.
constexpr size_t kMaxResourceAttributes = 64;
constexpr size_t kMaxResourceIdentityBytes = 4096;
constexpr size_t kMaxOtlpMetricNameBytes = 200;
constexpr int kMaxPointAttributes = 8;  // the most max_labels allows: more are refused uncopied

// The request's data points, counted without copying anything: to charge before reading them.
size_t point_count(const opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest& request);

std::vector<OtlpPoint> points_of(
    const opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest& request,
    const std::string& sender);

}  // namespace gameverse::metrics
