#include "api/otlp_logs.hpp"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

namespace gameverse::logging {

namespace common = opentelemetry::proto::common::v1;
namespace otlp_logs = opentelemetry::proto::logs::v1;

namespace {

// Nested arrays and maps deeper than this are cut: their text says so.
constexpr int kMaxDepth = 8;
// What a resource's and a scope's attributes may come to: they are copied into each record.
constexpr size_t kMaxSharedBytes = 16 * 1024;
constexpr size_t kMaxSharedBytesTimesRecords = 64 * 1024 * 1024;

size_t attribute_bytes(const LogRecord& r) {
  size_t n = r.service.size() + r.host.size() + r.plugin.size() + r.request_id.size();
  for (const Attribute& a : r.attributes) n += a.key.size() + a.value.size();
  return n;
}

std::string hex(const std::string& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

nlohmann::json json_of(const common::AnyValue& value, int depth) {
  if (depth > kMaxDepth) return "(nested too deep)";
  switch (value.value_case()) {
    case common::AnyValue::kStringValue: return value.string_value();
    case common::AnyValue::kBoolValue: return value.bool_value();
    case common::AnyValue::kIntValue: return value.int_value();
    case common::AnyValue::kDoubleValue: return value.double_value();
    case common::AnyValue::kBytesValue: return hex(value.bytes_value());
    case common::AnyValue::kArrayValue: {
      nlohmann::json out = nlohmann::json::array();
      for (const common::AnyValue& v : value.array_value().values()) out.push_back(json_of(v, depth + 1));
      return out;
    }
    case common::AnyValue::kKvlistValue: {
      nlohmann::json out = nlohmann::json::object();
      for (const common::KeyValue& kv : value.kvlist_value().values())
        out[kv.key()] = json_of(kv.value(), depth + 1);
      return out;
    }
    case common::AnyValue::VALUE_NOT_SET: break;
  }
  return nullptr;
}

// Sorts one attribute into the record: GameVerse's own fields, or the attribute list.
void take(LogRecord& record, const common::KeyValue& kv) {
  const std::string& key = kv.key();
  if (key == "gameverse.plugin") {
    record.plugin = any_value_text(kv.value());
  } else if (key == "gameverse.generation") {
    record.generation = kv.value().has_int_value() ? kv.value().int_value() : 0;
  } else if (key == "gameverse.request_id") {
    record.request_id = any_value_text(kv.value());
  } else if (key == "service.name") {
    record.service = any_value_text(kv.value());
  } else if (key == "host.name") {
    record.host = any_value_text(kv.value());
  } else {
    record.attributes.push_back({key, any_value_text(kv.value())});
  }
}

}  // namespace

std::string any_value_text(const common::AnyValue& value) {
  if (value.has_string_value()) return value.string_value();
  if (value.value_case() == common::AnyValue::VALUE_NOT_SET) return {};
  return json_of(value, 0).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

size_t record_count(const opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest& request) {
  size_t n = 0;
  for (const otlp_logs::ResourceLogs& resource_logs : request.resource_logs()) {
    for (const otlp_logs::ScopeLogs& scope_logs : resource_logs.scope_logs()) {
      n += static_cast<size_t>(scope_logs.log_records_size());
    }
  }
  return n;
}

OtlpRecords records_of(const opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest& request,
                       int64_t now_unix_nano) {
  OtlpRecords out;
  constexpr auto kLatest = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (const otlp_logs::ResourceLogs& resource_logs : request.resource_logs()) {
    LogRecord resource;  // the resource's fields, copied into each of its records
    for (const common::KeyValue& kv : resource_logs.resource().attributes()) take(resource, kv);
    for (const otlp_logs::ScopeLogs& scope_logs : resource_logs.scope_logs()) {
      LogRecord scope = resource;  // and the scope's, as the host ships a plugin's lines
      for (const common::KeyValue& kv : scope_logs.scope().attributes()) take(scope, kv);
      const size_t shared = attribute_bytes(scope) + scope_logs.scope().name().size();
      const auto records = static_cast<size_t>(scope_logs.log_records_size());
      if (shared > kMaxSharedBytes || shared * records > kMaxSharedBytesTimesRecords) {
        out.refused += records;
        out.refused_reason = "a resource's and scope's attributes of " + std::to_string(shared) +
                             " bytes on " + std::to_string(records) + " records: at most " +
                             std::to_string(kMaxSharedBytes) + " bytes, and " +
                             std::to_string(kMaxSharedBytesTimesRecords) + " over all the records";
        continue;
      }
      const std::string& scope_name = scope_logs.scope().name();
      const bool name_scope = !scope_name.empty() && scope_name != scope.plugin && scope_name != "gameverse";
      for (const otlp_logs::LogRecord& in : scope_logs.log_records()) {
        if (in.time_unix_nano() > kLatest || in.observed_time_unix_nano() > kLatest) {
          ++out.refused;
          out.refused_reason = "a time_unix_nano or observed_time_unix_nano past the year 2262";
          continue;
        }
        LogRecord record = scope;
        record.time_unix_nano = static_cast<int64_t>(in.time_unix_nano());
        record.observed_unix_nano = in.observed_time_unix_nano() != 0
                                        ? static_cast<int64_t>(in.observed_time_unix_nano())
                                        : now_unix_nano;
        record.severity_number = static_cast<int32_t>(in.severity_number());
        record.severity_text = in.severity_text();
        if (record.severity_text.empty() && record.severity_number > 0) {
          record.severity_text = severity_name(record.severity_number);
        }
        record.body = any_value_text(in.body());
        record.trace_id = hex(in.trace_id());
        record.span_id = hex(in.span_id());
        if (name_scope) record.attributes.push_back({"otel.scope.name", scope_name});
        if (!in.event_name().empty()) record.attributes.push_back({"event.name", in.event_name()});
        for (const common::KeyValue& kv : in.attributes()) take(record, kv);
        out.records.push_back(std::move(record));
      }
    }
  }
  return out;
}

}  // namespace gameverse::logging
