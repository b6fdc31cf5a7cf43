// OTLP log records (opentelemetry.proto.logs.v1) as the logging service's records: the resource's
// service.name and host.name, and GameVerse's gameverse.plugin, gameverse.generation and
// gameverse.request_id (resource or record attributes) lifted out; every other attribute kept
// as text.
#pragma once

#include <string>
#include <vector>

#include "domain/log_record.hpp"
#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"

namespace gameverse::logging {

struct OtlpRecords {
  std::vector<LogRecord> records;
  size_t refused = 0;  // records that cannot be read (a time past 2262)
  std::string refused_reason;
};

// How many records a request holds, before any is converted (for the sender's rate).
size_t record_count(const opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest& request);

OtlpRecords records_of(const opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest& request,
                       int64_t now_unix_nano);

std::string any_value_text(const opentelemetry::proto::common::v1::AnyValue& value);

}  // namespace gameverse::logging
