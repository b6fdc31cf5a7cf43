// Reads OTLP metrics (opentelemetry.proto.metrics.v1) into the domain's points: sums, gauges and
// explicit-bucket histograms, cumulative or delta. What cannot be read becomes a point with the
// reason, counted as rejected.
#pragma once

#include <string>
#include <vector>

#include "domain/metrics_service.hpp"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb.h"

namespace gameverse::metrics {

std::vector<OtlpPoint> points_of(
    const opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest& request,
    const std::string& sender);

}  // namespace gameverse::metrics
