// One log record as the logging service keeps it: what an OpenTelemetry LogRecord carries, with
// the resource's service and host and GameVerse's own fields (plugin, generation, request id)
// lifted out for queries. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gameverse::logging {

// OpenTelemetry's severity numbers (1..24): TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16,
// ERROR 17-20, FATAL 21-24; 0 is unspecified.
enum class Severity : int32_t {
  kUnspecified = 0,
  kTrace = 1,
  kDebug = 5,
  kInfo = 9,
  kWarn = 13,
  kError = 17,
  kFatal = 21,
};

// An attribute with its value as text: strings as they are, numbers and booleans as written in
// JSON, arrays and maps as JSON.
struct Attribute {
  std::string key;
  std::string value;
  friend bool operator==(const Attribute&, const Attribute&) = default;
};

struct LogRecord {
  int64_t time_unix_nano = 0;      // when it happened (the observed time when the sender gave none)
  int64_t observed_unix_nano = 0;  // when it was received
  int32_t severity_number = 0;     // Severity's scale
  std::string severity_text;       // as the sender wrote it ("info", "WARN", ...)
  std::string service;             // resource attribute service.name
  std::string host;                // resource attribute host.name
  std::string plugin;              // gameverse.plugin: the plugin that wrote it, empty for the host
  int64_t generation = 0;          // gameverse.generation: the plugin's generation
  std::string request_id;          // gameverse.request_id: the call it was written for
  std::string trace_id;            // hex, empty when none
  std::string span_id;             // hex, empty when none
  std::string body;
  std::vector<Attribute> attributes;  // the record's and the resource's other attributes
  friend bool operator==(const LogRecord&, const LogRecord&) = default;
};

// The severity's family name, "TRACE" .. "FATAL", or "UNSPECIFIED".
inline const char* severity_name(int32_t number) {
  if (number >= 21) return "FATAL";
  if (number >= 17) return "ERROR";
  if (number >= 13) return "WARN";
  if (number >= 9) return "INFO";
  if (number >= 5) return "DEBUG";
  if (number >= 1) return "TRACE";
  return "UNSPECIFIED";
}

}  // namespace gameverse::logging
