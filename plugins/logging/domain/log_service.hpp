// The logging service's rules: what is accepted and where it is kept, queries in either order with
// cursors, and retention by age and size per severity. Safe to call from several threads at once.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "domain/log_filter.hpp"
#include "domain/log_keys.hpp"
#include "domain/log_record.hpp"
#include "domain/repository.hpp"

namespace gameverse::logging {

struct LogSettings {
  size_t chunk_records = 1000;                  // records per stored chunk at most
  size_t chunk_bytes = 256 * 1024;              // bytes per stored chunk at most (about)
  size_t max_body_bytes = 16 * 1024;            // longer bodies are cut, and the record says so
  size_t max_attributes = 64;                   // more are left out, and the record says so
  size_t max_attribute_bytes = 4096;            // per key and value
  int64_t max_future_ns = 5 * kNanosPerMinute;  // records further ahead are refused
  size_t max_scan_records = 200'000;            // a query reads this many (whole minutes) and answers
  size_t max_scan_minutes = 2'000;              // and lists at most this many minutes
  size_t max_request_chunks = 1'000;            // chunks a request id's query reads at most
  size_t max_writes_per_commit = 500;           // the host store's bound on one batch
  size_t max_groups_per_append = 256;  // (severity, minute) pairs one append may touch; more are refused
  std::array<int64_t, kFamilies> max_age_ns{};  // per severity family; records older are refused and dropped
  int64_t max_stored_bytes = 0;  // 0: no bound; above it the least severe, oldest hours go first
};

struct AppendResult {
  size_t accepted = 0;
  size_t rejected = 0;
  std::string rejected_reason;          // the first reason, with how many it applies to
  std::vector<std::string> chunk_keys;  // where the accepted records are
};

struct Entry {
  Position position;
  LogRecord record;
};

struct Page {
  std::vector<Entry> entries;
  std::optional<Position> next;  // set: there may be more after this position
};

struct RetentionReport {
  size_t hours_dropped = 0;
  int64_t bytes_dropped = 0;
  int64_t records_dropped = 0;
};

class LogService {
 public:
  // `writer` tells this service's chunks from other writers' (other hosts, other generations):
  // unique, of [0-9a-f], at most 16 characters.
  LogService(LogRepository& repository, LogSettings settings, std::string writer,
             std::function<int64_t()> now_unix_nano);

  // Stores the records that meet the rules, all at once; refuses the rest, counted. Throws what
  // the repository throws, having stored nothing. `stored`: also gets a copy of what was stored.
  AppendResult append(std::vector<LogRecord> records, std::vector<LogRecord>* stored = nullptr);

  // The records that match, after `after` in the order asked for. A page may hold fewer than
  // `page_size` records (the scan bound) and still have a next position.
  Page query(const LogFilter& filter, bool newest_first, size_t page_size,
             const std::optional<Position>& after);

  // The records of one chunk that match and come after `after`, oldest first (for live tails).
  std::vector<Entry> matching(const StoredChunk& chunk, const LogFilter& filter,
                              const std::optional<Position>& after) const;

  // Drops whole hours of one severity that are older than its age bound, then, while more than
  // max_stored_bytes is kept, the oldest hours of the least severe records.
  RetentionReport enforce_retention();

  const LogSettings& settings() const { return settings_; }

 private:
  // Records one writer slot has stored, per (hour, family): what its size entries say.
  struct Slot {
    std::mutex mu;
    std::string writer;
    std::map<std::pair<std::string, int>, SizeEntry> totals;
  };

  std::optional<std::string> refusal(LogRecord& record, int64_t now) const;
  Page query_by_request(const LogFilter& filter, bool newest_first, size_t page_size,
                        const std::optional<Position>& after);
  RetentionReport drop_hour(const std::string& hour, int family);
  Slot& take_slot(std::unique_lock<std::mutex>& lock);
  void commit(const AppendBatch& batch);

  LogRepository& repository_;
  LogSettings settings_;
  std::string writer_;
  std::function<int64_t()> now_;
  std::atomic<uint64_t> next_chunk_{1};
  std::array<Slot, 4> slots_;
  // Group commit: appends that come while one is being stored go together in the next store
  // batch, one transaction for several senders.
  struct Waiting {
    const AppendBatch* batch;
    bool done = false;
    std::exception_ptr error;
  };
  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  std::deque<Waiting*> commit_queue_;
  bool committing_ = false;
};

}  // namespace gameverse::logging
