#include "domain/elasticsearch_bulk.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace gameverse::logging::elasticsearch {
namespace {

constexpr int64_t kNanosPerSecond = 1'000'000'000;
constexpr int64_t kSecondsPerDay = 86'400;

struct UtcTime {
  int year;
  unsigned month, day, hour, minute, second;
  int64_t nanos;
};

UtcTime utc(int64_t unix_nano) {
  // Floor division: -1 ns is 1969-12-31T23:59:59.999999999Z.
  int64_t seconds = unix_nano / kNanosPerSecond;
  int64_t nanos = unix_nano % kNanosPerSecond;
  if (nanos < 0) {
    nanos += kNanosPerSecond;
    --seconds;
  }
  int64_t days = seconds / kSecondsPerDay;
  int64_t second_of_day = seconds % kSecondsPerDay;
  if (second_of_day < 0) {
    second_of_day += kSecondsPerDay;
    --days;
  }
  const std::chrono::year_month_day date{std::chrono::sys_days{std::chrono::days{days}}};
  return UtcTime{static_cast<int>(date.year()),
                 static_cast<unsigned>(date.month()),
                 static_cast<unsigned>(date.day()),
                 static_cast<unsigned>(second_of_day / 3600),
                 static_cast<unsigned>(second_of_day / 60 % 60),
                 static_cast<unsigned>(second_of_day % 60),
                 nanos};
}

std::string two_digits(unsigned value) {
  char text[4];
  std::snprintf(text, sizeof text, "%02u", value % 100);
  return text;
}

std::string four_digits(int year) {
  char text[16];
  std::snprintf(text, sizeof text, "%04d", year);
  return text;
}

// Expands the pattern; the characters it adds are digits, so checking a sample expansion checks
// them all.
std::string expand(std::string_view pattern, const UtcTime& time, std::string_view field) {
  std::string name;
  name.reserve(pattern.size() + 8);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '%') {
      name += pattern[i];
      continue;
    }
    if (i + 1 == pattern.size()) {
      throw std::invalid_argument(std::string(field) + ": a lone % at the end (write %% for a literal %)");
    }
    switch (pattern[++i]) {
      case 'Y': name += four_digits(time.year); break;
      case 'm': name += two_digits(time.month); break;
      case 'd': name += two_digits(time.day); break;
      case '%': name += '%'; break;
      default:
        throw std::invalid_argument(std::string(field) + ": unknown placeholder %" + pattern[i] +
                                    " (use %Y, %m, %d or %%)");
    }
  }
  return name;
}

std::string severity_text(const LogRecord& record) {
  if (!record.severity_text.empty()) return record.severity_text;
  return severity_name(record.severity_number);
}

const nlohmann::json* member(const nlohmann::json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

}  // namespace

void validate_index_pattern(std::string_view pattern, std::string_view field) {
  const std::string where(field);
  if (pattern.empty()) throw std::invalid_argument(where + ": empty");
  const std::string name = expand(pattern, utc(0), field);
  if (name.size() > 255) throw std::invalid_argument(where + ": the index name is longer than 255 bytes");
  if (name == "." || name == "..") throw std::invalid_argument(where + ": the index name cannot be . or ..");
  if (name.front() == '-' || name.front() == '_' || name.front() == '+') {
    throw std::invalid_argument(where + ": the index name cannot start with -, _ or +");
  }
  for (const char c : name) {
    if (c >= 'A' && c <= 'Z') throw std::invalid_argument(where + ": index names must be lowercase");
    if (std::string_view("\\/*?\"<>|,# :").find(c) != std::string_view::npos) {
      throw std::invalid_argument(where + ": the index name cannot contain '" + std::string(1, c) + "'");
    }
    if (static_cast<unsigned char>(c) < 0x20) {
      throw std::invalid_argument(where + ": the index name cannot contain control characters");
    }
  }
}

std::string index_name(std::string_view pattern, int64_t unix_nano) {
  return expand(pattern, utc(unix_nano), "index pattern");
}

std::string rfc3339_nanos(int64_t unix_nano) {
  const UtcTime time = utc(unix_nano);
  char text[48];
  std::snprintf(text, sizeof text, "%04d-%02u-%02uT%02u:%02u:%02u.%09lldZ", time.year, time.month, time.day,
                time.hour, time.minute, time.second, static_cast<long long>(time.nanos));
  return text;
}

nlohmann::json document(const LogRecord& record) {
  nlohmann::json doc = nlohmann::json::object();
  doc["@timestamp"] = rfc3339_nanos(record.time_unix_nano);
  doc["observed_timestamp"] = rfc3339_nanos(record.observed_unix_nano);
  doc["severity_text"] = severity_text(record);
  doc["severity_number"] = record.severity_number;
  if (!record.service.empty()) doc["service"]["name"] = record.service;
  if (!record.host.empty()) doc["host"]["name"] = record.host;
  nlohmann::json& gameverse = doc["gameverse"];
  if (!record.plugin.empty()) gameverse["plugin"] = record.plugin;
  gameverse["generation"] = record.generation;
  if (!record.request_id.empty()) gameverse["request_id"] = record.request_id;
  if (!record.trace_id.empty()) doc["trace_id"] = record.trace_id;
  if (!record.span_id.empty()) doc["span_id"] = record.span_id;
  doc["message"] = record.body;
  if (!record.attributes.empty()) {
    nlohmann::json attributes = nlohmann::json::object();
    for (const Attribute& attribute : record.attributes) {
      if (!attribute.key.empty()) attributes[attribute.key] = attribute.value;
    }
    if (!attributes.empty()) doc["attributes"] = std::move(attributes);
  }
  return doc;
}

std::string bulk_body(std::span<const LogRecord> records, std::string_view index_pattern) {
  std::string body;
  for (const LogRecord& record : records) {
    const nlohmann::json action = {{"index", {{"_index", index_name(index_pattern, record.time_unix_nano)}}}};
    body += action.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    body += '\n';
    body += document(record).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    body += '\n';
  }
  return body;
}

ItemOutcome outcome_for_status(int status) {
  if (status >= 200 && status < 300) return ItemOutcome::kStored;
  if (status == 429 || status >= 500) return ItemOutcome::kRetry;
  return ItemOutcome::kRejected;
}

BulkResult parse_bulk_response(std::string_view body, size_t sent) {
  nlohmann::json answer = nlohmann::json::parse(body, nullptr, false);
  if (answer.is_discarded()) throw std::invalid_argument("the _bulk response is not JSON");
  if (!answer.is_object()) throw std::invalid_argument("the _bulk response is not a JSON object");
  BulkResult result;
  if (const nlohmann::json* errors = member(answer, "errors")) {
    if (!errors->is_boolean()) throw std::invalid_argument("errors is not a boolean");
    result.errors = errors->get<bool>();
  }
  const nlohmann::json* items = member(answer, "items");
  if (items == nullptr || !items->is_array()) throw std::invalid_argument("items is missing or not an array");
  if (items->size() != sent) {
    throw std::invalid_argument("items has " + std::to_string(items->size()) + " entries for " +
                                std::to_string(sent) + " sent");
  }
  result.items.reserve(sent);
  for (size_t i = 0; i < items->size(); ++i) {
    const std::string where = "items[" + std::to_string(i) + "]";
    const nlohmann::json& item = (*items)[i];
    // {"index": {...}} (or create/update/delete: whichever action it answers).
    if (!item.is_object() || item.size() != 1 || !item.begin()->is_object()) {
      throw std::invalid_argument(where + " is not an object holding one action");
    }
    const nlohmann::json& outcome = *item.begin();
    const nlohmann::json* status = member(outcome, "status");
    if (status == nullptr || !status->is_number_integer()) {
      throw std::invalid_argument(where + ".status is missing or not a number");
    }
    ItemResult entry;
    entry.status = status->get<int>();
    entry.outcome = outcome_for_status(entry.status);
    if (const nlohmann::json* error = member(outcome, "error")) {
      const nlohmann::json* type = member(*error, "type");
      const nlohmann::json* reason = member(*error, "reason");
      if (type != nullptr && type->is_string()) entry.reason = type->get<std::string>();
      if (reason != nullptr && reason->is_string()) {
        if (!entry.reason.empty()) entry.reason += ": ";
        entry.reason += reason->get<std::string>();
      }
      if (error->is_string()) entry.reason = error->get<std::string>();
    }
    if (entry.outcome != ItemOutcome::kStored && entry.reason.empty()) {
      entry.reason = "status " + std::to_string(entry.status);
    }
    result.items.push_back(std::move(entry));
  }
  return result;
}

Backoff::Backoff(BackoffPolicy policy, uint64_t seed) : policy_(policy), random_(seed) {
  if (policy.initial.count() < 0) throw std::invalid_argument("backoff initial: negative");
  if (policy.max < policy.initial) throw std::invalid_argument("backoff max: less than initial");
  if (!(policy.multiplier >= 1.0)) throw std::invalid_argument("backoff multiplier: less than 1");
}

std::chrono::milliseconds Backoff::next_delay() {
  ++failures_;
  const double max = static_cast<double>(policy_.max.count());
  // Capped before it can overflow: the exponent stops mattering once the cap is reached.
  const double grown =
      static_cast<double>(policy_.initial.count()) *
      std::pow(policy_.multiplier, static_cast<double>(std::min<uint32_t>(failures_ - 1, 64)));
  const auto wait = static_cast<int64_t>(std::min(grown, max));
  std::uniform_int_distribution<int64_t> jitter(wait - wait / 2, wait);
  return std::chrono::milliseconds{jitter(random_)};
}

RecordBuffer::RecordBuffer(size_t max_records, size_t max_bytes)
    : max_records_(max_records), max_bytes_(max_bytes) {
  if (max_records == 0) throw std::invalid_argument("elasticsearch_buffer_records: must be at least 1");
  if (max_bytes == 0) throw std::invalid_argument("elasticsearch_buffer_bytes: must be at least 1");
}

size_t RecordBuffer::estimated_bytes(const LogRecord& record) {
  size_t bytes = sizeof(LogRecord) + record.severity_text.size() + record.service.size() +
                 record.host.size() + record.plugin.size() + record.request_id.size() +
                 record.trace_id.size() + record.span_id.size() + record.body.size();
  for (const Attribute& attribute : record.attributes) {
    bytes += sizeof(Attribute) + attribute.key.size() + attribute.value.size();
  }
  return bytes;
}

size_t RecordBuffer::offer(std::span<const LogRecord> records) {
  std::lock_guard lock(mutex_);
  size_t taken = 0;
  for (const LogRecord& record : records) {
    const size_t bytes = estimated_bytes(record);
    if (waiting_.size() + taken_records_ >= max_records_ || held_bytes_ + bytes > max_bytes_) break;
    waiting_.push_back(record);
    held_bytes_ += bytes;
    ++taken;
  }
  dropped_ += records.size() - taken;
  return taken;
}

std::vector<LogRecord> RecordBuffer::take(size_t max) {
  std::lock_guard lock(mutex_);
  const size_t count = std::min(max, waiting_.size());
  std::vector<LogRecord> records;
  records.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    records.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  taken_records_ += count;
  return records;
}

void RecordBuffer::give_back(std::vector<LogRecord> records) {
  std::lock_guard lock(mutex_);
  taken_records_ -= std::min(taken_records_, records.size());
  for (auto it = records.rbegin(); it != records.rend(); ++it) waiting_.push_front(std::move(*it));
}

void RecordBuffer::release(std::span<const LogRecord> records) {
  size_t bytes = 0;
  for (const LogRecord& record : records) bytes += estimated_bytes(record);
  std::lock_guard lock(mutex_);
  taken_records_ -= std::min(taken_records_, records.size());
  held_bytes_ -= std::min(held_bytes_, bytes);
}

size_t RecordBuffer::size() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

size_t RecordBuffer::held() const {
  std::lock_guard lock(mutex_);
  return waiting_.size() + taken_records_;
}

uint64_t RecordBuffer::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

}  // namespace gameverse::logging::elasticsearch
