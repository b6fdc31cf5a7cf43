#include "domain/log_service.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <stdexcept>
#include <tuple>

namespace gameverse::logging {

namespace {

// About what a record takes in the store, for chunk and size bounds.
size_t record_bytes(const LogRecord& r) {
  size_t n = 64 + r.severity_text.size() + r.service.size() + r.host.size() + r.plugin.size() +
             r.request_id.size() + r.trace_id.size() + r.span_id.size() + r.body.size();
  for (const Attribute& a : r.attributes) n += 4 + a.key.size() + a.value.size();
  return n;
}

// Cuts `text` to at most `max` bytes without splitting a UTF-8 sequence.
bool cut(std::string& text, size_t max) {
  if (text.size() <= max) return false;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
  return true;
}

bool wanted_family(int family, int32_t min_severity) {
  if (min_severity <= 0) return true;
  if (family == 0) return false;
  return family_floor(family) + 3 >= min_severity;
}

std::string chunk_id(int64_t first_time, const std::string& writer, uint64_t serial) {
  char out[64];
  std::snprintf(out, sizeof out, "%019lld-%s-%010llu", static_cast<long long>(first_time), writer.c_str(),
                static_cast<unsigned long long>(serial));
  return out;
}

bool before(const Position& a, const Position& b, bool newest_first) {
  return newest_first ? b < a : a < b;
}

}  // namespace

LogService::LogService(LogRepository& repository, LogSettings settings, std::string writer,
                       std::function<int64_t()> now_unix_nano)
    : repository_(repository),
      settings_(settings),
      writer_(std::move(writer)),
      now_(std::move(now_unix_nano)) {
  if (writer_.empty() || writer_.size() > 16 || !std::all_of(writer_.begin(), writer_.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    throw std::invalid_argument("a log writer id is 1 to 16 of [0-9a-f]");
  }
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i].writer = writer_ + std::to_string(i);
}

std::optional<std::string> LogService::refusal(LogRecord& r, int64_t now) const {
  if (r.observed_unix_nano <= 0) r.observed_unix_nano = now;
  if (r.time_unix_nano <= 0) r.time_unix_nano = r.observed_unix_nano;
  if (r.time_unix_nano > now + settings_.max_future_ns)
    return "time more than 5 minutes ahead of the service's clock";
  const int64_t max_age = settings_.max_age_ns[severity_family(r.severity_number)];
  if (max_age > 0 && r.time_unix_nano < now - max_age) return "time older than the retention of its severity";
  bool shortened = cut(r.body, settings_.max_body_bytes);
  if (r.attributes.size() > settings_.max_attributes) {
    r.attributes.resize(settings_.max_attributes);
    shortened = true;
  }
  for (Attribute& a : r.attributes) {
    shortened |= cut(a.key, settings_.max_attribute_bytes);
    shortened |= cut(a.value, settings_.max_attribute_bytes);
  }
  for (std::string* field :
       {&r.severity_text, &r.service, &r.host, &r.plugin, &r.request_id, &r.trace_id, &r.span_id}) {
    shortened |= cut(*field, 256);
  }
  if (shortened) r.attributes.push_back({"gameverse.truncated", "true"});
  return std::nullopt;
}

LogService::Slot& LogService::take_slot(std::unique_lock<std::mutex>& lock) {
  for (Slot& slot : slots_) {
    std::unique_lock attempt(slot.mu, std::try_to_lock);
    if (attempt.owns_lock()) {
      lock = std::move(attempt);
      return slot;
    }
  }
  Slot& slot = slots_[next_chunk_.load(std::memory_order_relaxed) % slots_.size()];
  lock = std::unique_lock(slot.mu);
  return slot;
}

AppendResult LogService::append(std::vector<LogRecord> records, std::vector<LogRecord>* stored) {
  AppendResult result;
  const int64_t now = now_();
  // (family, hour, minute) -> the records that go there, in the order they came.
  std::map<std::tuple<int, std::string, int>, std::vector<LogRecord>> groups;
  std::map<std::string, size_t> reasons;
  for (LogRecord& record : records) {
    if (std::optional<std::string> why = refusal(record, now)) {
      ++result.rejected;
      ++reasons[*why];
      continue;
    }
    const int minute = static_cast<int>((record.time_unix_nano % kNanosPerHour) / kNanosPerMinute);
    auto key =
        std::make_tuple(severity_family(record.severity_number), hour_of(record.time_unix_nano), minute);
    auto group = groups.find(key);
    if (group == groups.end()) {
      // Each (severity, minute) is a chunk of its own: a batch spread thin costs a write a record.
      if (groups.size() == settings_.max_groups_per_append) {
        ++result.rejected;
        ++reasons["spread over more than " + std::to_string(settings_.max_groups_per_append) +
                  " minutes and severities in one batch"];
        continue;
      }
      group = groups.emplace(std::move(key), std::vector<LogRecord>()).first;
    }
    group->second.push_back(std::move(record));
    ++result.accepted;
  }
  if (!reasons.empty()) {
    const auto& [why, count] = *reasons.begin();
    result.rejected_reason = std::to_string(count) + " record(s): " + why;
  }
  if (groups.empty()) return result;

  std::unique_lock<std::mutex> slot_lock;
  Slot& slot = take_slot(slot_lock);
  AppendBatch batch;
  std::map<std::pair<std::string, int>, SizeEntry> totals = slot.totals;
  std::set<std::string> request_refs;
  for (auto& [where, group] : groups) {
    const auto& [family, hour, minute] = where;
    const std::string marker = marker_key(hour, minute, family);
    SizeEntry& total = totals[{hour, family}];
    total.key = size_key(hour, family, slot.writer);
    size_t start = 0;
    while (start < group.size()) {
      StoredChunk chunk;
      size_t bytes = 0;
      while (start < group.size() && chunk.records.size() < settings_.chunk_records &&
             (chunk.records.empty() || bytes + record_bytes(group[start]) <= settings_.chunk_bytes)) {
        bytes += record_bytes(group[start]);
        chunk.records.push_back(std::move(group[start++]));
      }
      chunk.key = chunk_key(family, hour, minute,
                            chunk_id(chunk.records.front().time_unix_nano, writer_,
                                     next_chunk_.fetch_add(1, std::memory_order_relaxed)));
      for (const LogRecord& r : chunk.records) {
        if (indexable_request_id(r.request_id)) request_refs.insert(r.request_id + "/" + chunk.key);
      }
      total.bytes += static_cast<int64_t>(bytes);
      total.records += static_cast<int64_t>(chunk.records.size());
      result.chunk_keys.push_back(chunk.key);
      batch.chunks.push_back(std::move(chunk));
      batch.markers.push_back(marker);
    }
    batch.sizes.push_back(total);
  }
  batch.request_refs.assign(request_refs.begin(), request_refs.end());
  commit(batch);  // throws: nothing stored, the slot's totals unchanged
  slot.totals = std::move(totals);
  if (stored != nullptr) {
    for (const StoredChunk& chunk : batch.chunks)
      stored->insert(stored->end(), chunk.records.begin(), chunk.records.end());
  }
  return result;
}

void LogService::commit(const AppendBatch& batch) {
  Waiting me{&batch, false, nullptr};
  std::unique_lock lock(commit_mu_);
  commit_queue_.push_back(&me);
  commit_cv_.wait(lock, [&] { return me.done || !committing_; });
  if (!me.done) {
    // This caller stores what waits, its own first among it, in as few store batches as fit.
    committing_ = true;
    while (!me.done) {
      std::vector<Waiting*> group;
      std::vector<const AppendBatch*> batches;
      size_t writes = 0;
      while (!commit_queue_.empty()) {
        const AppendBatch& next = *commit_queue_.front()->batch;
        const size_t n = next.request_refs.size() + 2 * next.chunks.size() + next.sizes.size();
        if (!group.empty() && writes + n > settings_.max_writes_per_commit) break;
        writes += n;
        group.push_back(commit_queue_.front());
        batches.push_back(&next);
        commit_queue_.pop_front();
      }
      lock.unlock();
      std::exception_ptr error;
      try {
        repository_.append(batches);
      } catch (...) {
        error = std::current_exception();
      }
      lock.lock();
      for (Waiting* w : group) {
        w->done = true;
        w->error = error;
      }
      commit_cv_.notify_all();
    }
    committing_ = false;
    commit_cv_.notify_all();  // the others' batches are done, or one of them stores what waits
  }
  if (me.error) std::rethrow_exception(me.error);
}

std::vector<Entry> LogService::matching(const StoredChunk& chunk, const LogFilter& filter,
                                        const std::optional<Position>& after) const {
  std::vector<Entry> out;
  for (size_t i = 0; i < chunk.records.size(); ++i) {
    const LogRecord& r = chunk.records[i];
    Position p{r.time_unix_nano, chunk.key, static_cast<int64_t>(i)};
    if (after && !(*after < p)) continue;
    if (matches(filter, r)) out.push_back({std::move(p), r});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.position < b.position; });
  return out;
}

namespace {

// The first `page_size` entries in the query's order, kept as they stream in: memory stays
// about twice the page, however many records a minute holds.
class Best {
 public:
  Best(size_t page_size, bool newest_first) : page_size_(page_size), newest_first_(newest_first) {}
  void offer(Entry entry) {
    entries_.push_back(std::move(entry));
    if (entries_.size() >= 2 * page_size_ + 64) trim();
  }
  std::vector<Entry> take() {
    trim();
    return std::move(entries_);
  }

 private:
  void trim() {
    const auto order = [this](const Entry& a, const Entry& b) {
      return before(a.position, b.position, newest_first_);
    };
    if (entries_.size() > page_size_) {
      std::nth_element(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(page_size_),
                       entries_.end(), order);
      entries_.resize(page_size_);
    }
    std::sort(entries_.begin(), entries_.end(), order);
  }
  size_t page_size_;
  bool newest_first_;
  std::vector<Entry> entries_;
};

// Whether a cursor leaves nothing of the minute [begin, end) to read, in the query's order.
bool minute_done(const Position& after, int64_t begin, int64_t end, bool newest_first) {
  // A scan's place between minutes has an empty chunk key (newest first: before `begin`) or "~"
  // (oldest first: after `end - 1`).
  if (newest_first)
    return begin > after.time_unix_nano || (begin == after.time_unix_nano && after.chunk_key.empty());
  return end - 1 < after.time_unix_nano || (end - 1 == after.time_unix_nano && after.chunk_key == "~");
}

}  // namespace

Page LogService::query(const LogFilter& filter, bool newest_first, size_t page_size,
                       const std::optional<Position>& after) {
  if (indexable_request_id(filter.request_id))
    return query_by_request(filter, newest_first, page_size, after);
  const int64_t lo = filter.from_unix_nano;
  const int64_t hi = filter.to_unix_nano != 0 ? filter.to_unix_nano : std::numeric_limits<int64_t>::max();

  std::set<std::string> hours;
  for (const SizeEntry& entry : repository_.sizes()) {
    const std::optional<SizeKey> key = parse_size_key(entry.key);
    if (key && wanted_family(key->family, filter.min_severity)) hours.insert(key->hour);
  }
  std::vector<std::string> ordered(hours.begin(), hours.end());
  if (newest_first) std::reverse(ordered.begin(), ordered.end());

  Page page;
  size_t scanned = 0;
  size_t minutes_read = 0;
  for (const std::string& hour : ordered) {
    const int64_t hour_begin = *hour_start(hour);
    if (hour_begin >= hi || hour_begin + kNanosPerHour <= lo) continue;
    if (after && minute_done(*after, hour_begin, hour_begin + kNanosPerHour, newest_first)) continue;
    std::map<int, std::vector<int>> minutes;  // minute -> families stored there
    for (const std::string& key : repository_.markers(hour + "/")) {
      if (std::optional<MarkerKey> m = parse_marker_key(key);
          m && wanted_family(m->family, filter.min_severity)) {
        minutes[m->minute].push_back(m->family);
      }
    }
    std::vector<std::pair<int, std::vector<int>>> order(minutes.begin(), minutes.end());
    if (newest_first) std::reverse(order.begin(), order.end());
    for (const auto& [minute, families] : order) {
      const int64_t begin = hour_begin + minute * kNanosPerMinute;
      const int64_t end = begin + kNanosPerMinute;
      if (begin >= hi || end <= lo) continue;
      if (after && minute_done(*after, begin, end, newest_first)) continue;
      // A minute is read whole, so that its records come in order; only the page's worth is kept.
      Best best(page_size - page.entries.size(), newest_first);
      for (int family : families) {
        repository_.chunks(chunk_prefix(family, hour, minute), [&](StoredChunk&& chunk) {
          scanned += chunk.records.size();
          for (size_t i = 0; i < chunk.records.size(); ++i) {
            Position p{chunk.records[i].time_unix_nano, chunk.key, static_cast<int64_t>(i)};
            if (after && !before(*after, p, newest_first)) continue;
            if (matches(filter, chunk.records[i])) best.offer({std::move(p), std::move(chunk.records[i])});
          }
          return true;
        });
      }
      ++minutes_read;
      for (Entry& entry : best.take()) page.entries.push_back(std::move(entry));
      if (page.entries.size() == page_size) {
        page.next = page.entries.back().position;
        return page;
      }
      if (scanned >= settings_.max_scan_records || minutes_read >= settings_.max_scan_minutes) {
        // Answer with what was found; the next call goes on after this minute.
        page.next = newest_first ? Position{begin, "", -1}
                                 : Position{end - 1, "~", std::numeric_limits<int64_t>::max()};
        return page;
      }
    }
  }
  return page;
}

Page LogService::query_by_request(const LogFilter& filter, bool newest_first, size_t page_size,
                                  const std::optional<Position>& after) {
  Best best(page_size + 1, newest_first);  // one more tells whether there is a next page
  for (const std::string& ref : repository_.request_refs(filter.request_id, settings_.max_request_chunks)) {
    const std::string_view key = std::string_view(ref).substr(filter.request_id.size() + 1);
    std::optional<StoredChunk> chunk = repository_.chunk(key);
    if (!chunk) continue;  // dropped by retention since
    for (size_t i = 0; i < chunk->records.size(); ++i) {
      Position p{chunk->records[i].time_unix_nano, chunk->key, static_cast<int64_t>(i)};
      if (after && !before(*after, p, newest_first)) continue;
      if (matches(filter, chunk->records[i])) best.offer({std::move(p), std::move(chunk->records[i])});
    }
  }
  Page page;
  page.entries = best.take();
  if (page.entries.size() > page_size) {
    page.entries.resize(page_size);
    page.next = page.entries.back().position;
  }
  return page;
}

RetentionReport LogService::enforce_retention() {
  const int64_t now = now_();
  std::map<std::pair<std::string, int>, int64_t> bytes;  // (hour, family) -> stored
  for (const SizeEntry& entry : repository_.sizes()) {
    if (std::optional<SizeKey> key = parse_size_key(entry.key))
      bytes[{key->hour, key->family}] += entry.bytes;
  }
  std::vector<std::pair<std::string, int>> drop;
  int64_t kept = 0;
  for (const auto& [where, size] : bytes) {
    const int64_t max_age = settings_.max_age_ns[where.second];
    if (max_age > 0 && *hour_start(where.first) + kNanosPerHour <= now - max_age) {
      drop.push_back(where);
    } else {
      kept += size;
    }
  }
  if (settings_.max_stored_bytes > 0 && kept > settings_.max_stored_bytes) {
    std::vector<std::pair<std::string, int>> candidates;
    // Never the hour records are being written to: what arrives while it is dropped would be lost.
    const std::string current = hour_of(now);
    for (const auto& [where, size] : bytes) {
      if (where.first < current && std::find(drop.begin(), drop.end(), where) == drop.end())
        candidates.push_back(where);
    }
    // The least severe first, and of those the oldest.
    std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
      return std::tie(a.second, a.first) < std::tie(b.second, b.first);
    });
    for (const auto& where : candidates) {
      if (kept <= settings_.max_stored_bytes) break;
      kept -= bytes[where];
      drop.push_back(where);
    }
  }
  RetentionReport report;
  for (const auto& [hour, family] : drop) {
    const RetentionReport one = drop_hour(hour, family);
    report.hours_dropped += one.hours_dropped;
    report.bytes_dropped += one.bytes_dropped;
    report.records_dropped += one.records_dropped;
  }
  return report;
}

RetentionReport LogService::drop_hour(const std::string& hour, int family) {
  RetentionReport report;
  EraseBatch batch;
  auto flush = [&] {
    if (batch.empty()) return;
    repository_.erase(batch);
    batch = EraseBatch();
  };
  std::vector<std::string> markers;
  for (const std::string& key : repository_.markers(hour + "/")) {
    if (std::optional<MarkerKey> m = parse_marker_key(key); m && m->family == family) markers.push_back(key);
  }
  for (const std::string& marker : markers) {
    const MarkerKey m = *parse_marker_key(marker);
    // Keys first, erased once the listing is over: a listing is not read across its own deletes.
    std::vector<std::string> chunks;
    std::set<std::string> refs;
    repository_.chunks(chunk_prefix(family, hour, m.minute), [&](StoredChunk&& chunk) {
      for (const LogRecord& r : chunk.records) {
        if (indexable_request_id(r.request_id)) refs.insert(r.request_id + "/" + chunk.key);
      }
      report.records_dropped += static_cast<int64_t>(chunk.records.size());
      chunks.push_back(std::move(chunk.key));
      return true;
    });
    for (std::string& key : chunks) {
      batch.chunks.push_back(std::move(key));
      if (batch.chunks.size() >= 200) flush();
    }
    for (const std::string& ref : refs) {
      batch.request_refs.push_back(ref);
      if (batch.request_refs.size() >= 200) flush();
    }
  }
  flush();
  batch.markers = markers;
  for (const SizeEntry& entry : repository_.sizes()) {
    if (std::optional<SizeKey> key = parse_size_key(entry.key);
        key && key->hour == hour && key->family == family) {
      report.bytes_dropped += entry.bytes;
      batch.sizes.push_back(entry.key);
    }
  }
  flush();
  report.hours_dropped = 1;
  // This service's own totals for the hour start again from nothing, as its size entries do.
  for (Slot& slot : slots_) {
    std::lock_guard lock(slot.mu);
    slot.totals.erase({hour, family});
  }
  return report;
}

}  // namespace gameverse::logging
