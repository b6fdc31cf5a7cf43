#include "infrastructure/store_windows.hpp"

#include "domain/query.hpp"

namespace gameverse::metrics {

namespace {

constexpr size_t kBatchWrites = 500;  // the host's default [store] max_batch_writes
constexpr uint32_t kPage = 1000;

}  // namespace

rec::WindowRecord record_of(const WindowEntry& e) {
  rec::WindowRecord r;
  r.set_metric(e.metric);
  for (const auto& [name, value] : e.labels) {
    rec::Label* l = r.add_labels();
    l->set_name(name);
    l->set_value(value);
  }
  r.set_kind(static_cast<int32_t>(e.kind));
  r.set_window_start_s(e.start_s);
  const Aggregate& a = e.aggregate;
  r.set_sum(a.sum);
  r.set_count(a.count);
  r.set_min(a.min);
  r.set_max(a.max);
  r.set_last(a.last);
  r.set_last_ms(a.last_ms);
  for (double b : e.bounds) r.add_bounds(b);
  for (uint64_t c : a.buckets) r.add_buckets(c);
  return r;
}

WindowEntry entry_of(size_t resolution, const rec::WindowRecord& r) {
  WindowEntry e;
  e.resolution = resolution;
  e.start_s = r.window_start_s();
  e.metric = r.metric();
  for (const auto& l : r.labels()) e.labels[l.name()] = l.value();
  e.kind = static_cast<Kind>(r.kind());
  e.bounds.assign(r.bounds().begin(), r.bounds().end());
  Aggregate& a = e.aggregate;
  a.sum = r.sum();
  a.count = r.count();
  a.min = r.min();
  a.max = r.max();
  a.last = r.last();
  a.last_ms = r.last_ms();
  a.buckets.assign(r.buckets().begin(), r.buckets().end());
  return e;
}

std::vector<WindowEntry> StoreWindows::write(std::vector<WindowEntry> entries,
                                             const std::vector<Family>& families, std::string& error) {
  std::vector<WindowEntry> failed;
  sdk::Store::Batch batch;
  std::vector<WindowEntry> in_batch;
  auto commit = [&] {
    if (batch.empty()) return;
    try {
      store_.commit(batch);
    } catch (const sdk::Error& e) {
      if (error.empty()) error = e.what();
      for (auto& entry : in_batch) failed.push_back(std::move(entry));
    }
    batch = sdk::Store::Batch();
    in_batch.clear();
  };
  for (const Family& f : families) {
    rec::FamilyRecord r;
    r.set_name(f.name);
    r.set_kind(static_cast<int32_t>(f.kind));
    for (const auto& n : f.label_names) r.add_label_names(n);
    for (double b : f.bounds) r.add_bounds(b);
    batch.put("families", f.name, r);
  }
  for (WindowEntry& e : entries) {
    const std::string key =
        e.metric + "|" + padded_time(e.start_s) + "|" + writer_ + "-" + std::to_string(++written_);
    batch.put(resolutions_.at(e.resolution).collection, key, record_of(e));
    in_batch.push_back(std::move(e));
    if (batch.size() >= kBatchWrites) commit();
  }
  commit();
  return failed;
}

std::vector<WindowEntry> StoreWindows::read(size_t resolution, const std::string& metric, int64_t from_s,
                                            int64_t to_s, size_t max_entries) const {
  std::vector<WindowEntry> out;
  for (const std::string& prefix : decimal_prefixes(from_s, to_s)) {
    sdk::Store::Query query;
    query.collection = resolutions_.at(resolution).collection;
    query.key_prefix = metric + "|" + prefix;
    query.limit = kPage;
    do {
      auto page = store_.list<rec::WindowRecord>(query);
      for (const auto& r : page.records) out.push_back(entry_of(resolution, r.value));
      if (out.size() > max_entries) {
        throw MetricsError(MetricsError::Code::kResourceExhausted,
                           "the query reads more than " + std::to_string(max_entries) +
                               " stored windows (max_query_windows): narrow it with a shorter range or a "
                               "larger step");
      }
      query.cursor = page.next_cursor;
    } while (!query.cursor.empty());
  }
  return out;
}

size_t StoreWindows::erase_before(size_t resolution, const std::string& metric, int64_t cutoff_s) const {
  if (cutoff_s <= 0) return 0;
  // Keys of a metric sort by window start: the oldest come first, and the first key at or past
  // the cutoff ends the walk (usually the first key of all: one listing per metric).
  const std::string prefix = metric + "|";
  const std::string cutoff_key = prefix + padded_time(cutoff_s);
  size_t erased = 0;
  for (;;) {
    sdk::Store::Query query;
    query.collection = resolutions_.at(resolution).collection;
    query.key_prefix = prefix;
    query.limit = static_cast<uint32_t>(kBatchWrites);
    const auto page = store_.list(query);
    sdk::Store::Batch batch;
    bool reached_cutoff = false;
    for (const auto& o : page.objects) {
      if (o.key >= cutoff_key) {
        reached_cutoff = true;
        break;
      }
      batch.erase(query.collection, o.key);
    }
    if (!batch.empty()) store_.commit(batch);
    erased += batch.size();
    // Deleted keys no longer list: the next round reads the first page again.
    if (reached_cutoff || batch.empty() || page.next_cursor.empty()) return erased;
  }
}

std::vector<Family> StoreWindows::families() const {
  std::vector<Family> out;
  sdk::Store::Query query;
  query.collection = "families";
  query.limit = kPage;
  do {
    auto page = store_.list<rec::FamilyRecord>(query);
    for (const auto& r : page.records) {
      Family f;
      f.name = r.value.name();
      f.kind = static_cast<Kind>(r.value.kind());
      f.label_names.assign(r.value.label_names().begin(), r.value.label_names().end());
      f.bounds.assign(r.value.bounds().begin(), r.value.bounds().end());
      out.push_back(std::move(f));
    }
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());
  return out;
}

}  // namespace gameverse::metrics
