// Which records a query or a tail wants.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "domain/log_record.hpp"

namespace gameverse::logging {

struct LogFilter {
  int64_t from_unix_nano = 0;  // inclusive; 0: no bound
  int64_t to_unix_nano = 0;    // exclusive; 0: no bound
  int32_t min_severity = 0;    // 0: all
  std::vector<std::string> services;
  std::vector<std::string> plugins;
  std::string request_id;
  std::vector<Attribute> attributes;  // every one must be on the record
  std::string text;                   // in the body, ignoring ASCII case
};

// Refuses a filter that would cost more than it can find: too many values, overlong text.
// Returns an empty string when it is fine, else what is wrong, naming the field.
std::string check_filter(const LogFilter& filter);

bool matches(const LogFilter& filter, const LogRecord& record);

}  // namespace gameverse::logging
