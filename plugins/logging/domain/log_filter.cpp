#include "domain/log_filter.hpp"

#include <algorithm>
#include <string_view>

namespace gameverse::logging {

namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool contains_ignoring_case(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return true;
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                     [](char a, char b) { return lower(a) == lower(b); }) != haystack.end();
}

bool any_of_or_empty(const std::vector<std::string>& wanted, const std::string& value) {
  return wanted.empty() || std::find(wanted.begin(), wanted.end(), value) != wanted.end();
}

}  // namespace

std::string check_filter(const LogFilter& filter) {
  if (filter.services.size() > 32) return "filter.services: at most 32";
  if (filter.plugins.size() > 32) return "filter.plugins: at most 32";
  if (filter.attributes.size() > 16) return "filter.attributes: at most 16";
  if (filter.text.size() > 256) return "filter.text: at most 256 bytes";
  if (filter.request_id.size() > 256) return "filter.request_id: at most 256 bytes";
  if (filter.from_unix_nano < 0 || filter.to_unix_nano < 0) return "filter: times are nanoseconds since 1970";
  if (filter.to_unix_nano != 0 && filter.to_unix_nano <= filter.from_unix_nano) {
    return "filter.to_unix_nano must be after filter.from_unix_nano";
  }
  return {};
}

bool matches(const LogFilter& filter, const LogRecord& record) {
  if (record.time_unix_nano < filter.from_unix_nano) return false;
  if (filter.to_unix_nano != 0 && record.time_unix_nano >= filter.to_unix_nano) return false;
  if (filter.min_severity > 0 && record.severity_number < filter.min_severity) return false;
  if (!any_of_or_empty(filter.services, record.service)) return false;
  if (!any_of_or_empty(filter.plugins, record.plugin)) return false;
  if (!filter.request_id.empty() && record.request_id != filter.request_id) return false;
  for (const Attribute& wanted : filter.attributes) {
    if (std::find(record.attributes.begin(), record.attributes.end(), wanted) == record.attributes.end()) {
      return false;
    }
  }
  return contains_ignoring_case(record.body, filter.text);
}

}  // namespace gameverse::logging
