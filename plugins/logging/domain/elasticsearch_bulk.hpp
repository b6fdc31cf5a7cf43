// Shipping log records to Elasticsearch, the parts that need no network: the `_bulk` request body,
// reading its answer, when to try again, and the bounded buffer between the logging service and
// the sink. Plain C++ (nlohmann_json): no SDK, no protobuf, no sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "domain/log_record.hpp"

namespace gameverse::logging::elasticsearch {

// ---- The request ------------------------------------------------------------------------------

// An index name pattern: the record's UTC date replaces %Y (4 digits), %m and %d (2 digits), and %%
// is a literal %. Checked against Elasticsearch's index name rules (lowercase; none of
// \ / * ? " < > | , # space; not starting with - _ +; not . or ..; at most 255 bytes).
// The default gives one index per day, which Kibana's data view `gameverse-logs-*` and an ILM or
// curator policy that deletes old days both expect.
inline constexpr std::string_view kDefaultIndexPattern = "gameverse-logs-%Y.%m.%d";

// Throws std::invalid_argument naming `field` and what is wrong when `pattern` cannot give a valid
// index name.
void validate_index_pattern(std::string_view pattern, std::string_view field = "elasticsearch_index");

// The index for a record written at `unix_nano` (UTC). The pattern must be valid.
std::string index_name(std::string_view pattern, int64_t unix_nano);

// RFC 3339 in UTC with nanoseconds: "2026-11-30T07:15:59.123456789Z". Negative times (before 1970)
// are written as they are, not clamped.
std::string rfc3339_nanos(int64_t unix_nano);

// The document for one record, with Kibana-friendly names:
//   @timestamp, observed_timestamp       RFC 3339 with nanoseconds
//   severity_text                        as sent; the family name ("INFO") when the sender gave none
//   severity_number
//   service.name, host.name              omitted when empty
//   gameverse.plugin, gameverse.request_id omitted when empty; gameverse.generation always
//   trace_id, span_id                    omitted when empty
//   message                              the body
//   attributes.<key>                     every attribute as text (a key given twice: the last wins;
//                                        an empty key is left out)
// Objects are nested ("service": {"name": ...}); attributes' keys are kept as they are, dots and
// all, which config/elasticsearch/gameverse-logs-template.json maps as one `flattened` field.
nlohmann::json document(const LogRecord& record);

// A whole `_bulk` body: per record an action line {"index":{"_index":...}} and the document line,
// each ending in "\n" (so the body does too). Text that is not UTF-8 is replaced with U+FFFD
// rather than failing the batch. The pattern must be valid.
std::string bulk_body(std::span<const LogRecord> records, std::string_view index_pattern);

// ---- The answer -------------------------------------------------------------------------------

enum class ItemOutcome {
  kStored = 1,    // 2xx: the document is in the index
  kRetry = 2,     // 429 or 5xx: the cluster was busy or failing; send it again later
  kRejected = 3,  // any other status (400 mapping error, ...): sending it again cannot help
};

struct ItemResult {
  ItemOutcome outcome = ItemOutcome::kRejected;
  int status = 0;
  std::string reason;  // "<error.type>: <error.reason>" when the item failed, else empty
};

// What each item came to, in the order sent. `errors` is Elasticsearch's own flag.
struct BulkResult {
  bool errors = false;
  std::vector<ItemResult> items;
};

ItemOutcome outcome_for_status(int status);

// Parses a `_bulk` response body for a request of `sent` items. Throws std::invalid_argument
// naming what is missing or malformed ("items[3].status is not a number", "items has 2 entries
// for 3 sent") when the body is not such a response; the caller then treats the whole request as
// failed and sends it all again.
BulkResult parse_bulk_response(std::string_view body, size_t sent);

// ---- When to try again -------------------------------------------------------------------------

struct BackoffPolicy {
  std::chrono::milliseconds initial{500};  // the wait after the first failure, before jitter
  std::chrono::milliseconds max{30'000};   // no wait is longer
  double multiplier = 2.0;                 // each further failure multiplies the wait by this
};

// Exponential backoff with jitter, capped: after the n-th failure in a row the wait is drawn
// uniformly from [w/2, w] with w = min(max, initial * multiplier^(n-1)) — half of it certain, so
// a struggling cluster always gets a pause, half random, so many hosts do not retry in step.
class Backoff {
 public:
  // Throws std::invalid_argument naming the field when initial is negative, max < initial or
  // multiplier < 1.
  explicit Backoff(BackoffPolicy policy, uint64_t seed = std::random_device{}());

  // Records one more failure and returns how long to wait before the next attempt.
  std::chrono::milliseconds next_delay();
  // A success: the next failure starts again from `initial`.
  void reset() { failures_ = 0; }
  uint32_t failures() const { return failures_; }

 private:
  BackoffPolicy policy_;
  std::mt19937_64 random_;
  uint32_t failures_ = 0;
};

// ---- The buffer --------------------------------------------------------------------------------

// Records waiting to be sent, bounded by a number of records and of bytes (an estimate: the
// records' text). When full, it drops the NEWEST records — the ones being offered — and counts
// them: what is already held stays, so a batch taken out for sending can always be put back
// (retried items are never the ones lost), and during an outage the records from its start,
// which usually explain it, are kept rather than overwritten by the flood that follows.
// Thread-safe; no call waits for anything but a short lock.
class RecordBuffer {
 public:
  // Throws std::invalid_argument when a limit is zero.
  RecordBuffer(size_t max_records, size_t max_bytes);

  // Copies in as many records as fit, in order, and drops the rest. Returns how many were taken.
  size_t offer(std::span<const LogRecord> records);
  // Takes up to `max` records from the front for sending. They still count against the limits
  // until give_back() or release().
  std::vector<LogRecord> take(size_t max);
  // Puts records taken earlier back at the front, in their order, to be sent again first.
  void give_back(std::vector<LogRecord> records);
  // Forgets records taken earlier that are done with (stored, or rejected for good).
  void release(std::span<const LogRecord> records);

  size_t size() const;       // waiting, not counting those taken
  size_t held() const;       // waiting plus taken
  uint64_t dropped() const;  // dropped since construction

  static size_t estimated_bytes(const LogRecord& record);

 private:
  const size_t max_records_;
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::deque<LogRecord> waiting_;
  size_t taken_records_ = 0;
  size_t held_bytes_ = 0;  // waiting and taken
  uint64_t dropped_ = 0;
};

}  // namespace gameverse::logging::elasticsearch
