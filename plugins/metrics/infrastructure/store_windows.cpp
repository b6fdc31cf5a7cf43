#include "infrastructure/store_windows.hpp"

#include <optional>

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

rec::FamilyRecord family_record(const Family& f) {
  rec::FamilyRecord r;
  r.set_name(f.name);
  r.set_kind(static_cast<int32_t>(f.kind));
  for (const auto& n : f.label_names) r.add_label_names(n);
  for (double b : f.bounds) r.add_bounds(b);
  r.set_creator(f.creator);
  return r;
}

Family family_of(const rec::FamilyRecord& r) {
  Family f;
  f.name = r.name();
  f.kind = static_cast<Kind>(r.kind());
  f.label_names.assign(r.label_names().begin(), r.label_names().end());
  f.bounds.assign(r.bounds().begin(), r.bounds().end());
  f.creator = r.creator();
  return f;
}

StoreWindows::WriteResult StoreWindows::write(std::vector<WindowEntry> entries,
                                              const std::vector<Family>& families) {
  // One record to write, and where it came from: families[family] or entries[entry].
  struct Item {
    std::string collection, key, value;
    const Family* family = nullptr;
    WindowEntry* entry = nullptr;
  };
  WriteResult result;
  std::vector<Item> slice;
  auto fail = [&](Item& item) {
    if (item.family != nullptr) result.failed_families.push_back(*item.family);
    if (item.entry != nullptr) result.failed.push_back(std::move(*item.entry));
  };
  auto commit = [&](std::vector<Item>& items) -> std::optional<sdk::Error> {
    sdk::Store::Batch batch;
    for (const Item& i : items) batch.put(i.collection, i.key, i.value);
    try {
      store_.commit(batch);
      return std::nullopt;
    } catch (const sdk::Error& e) {
      return e;
    }
  };
  auto flush_slice = [&] {
    if (slice.empty()) return;
    std::optional<sdk::Error> e = commit(slice);
    if (e && e->code() == sdk::StatusCode::kInvalidArgument) {
      // Something in the batch is refused for what it is: find it by writing one at a time.
      for (Item& item : slice) {
        std::vector<Item> one(1, item);
        std::optional<sdk::Error> single = commit(one);
        if (!single) continue;
        if (single->code() == sdk::StatusCode::kInvalidArgument) {
          if (result.set_aside++ == 0) result.set_aside_reason = item.key + ": " + single->what();
        } else {
          if (result.error.empty()) result.error = single->what();
          fail(item);
        }
      }
    } else if (e) {
      if (result.error.empty()) result.error = e->what();
      for (Item& item : slice) fail(item);
    }
    slice.clear();
  };
  for (const Family& f : families) {
    slice.push_back({"families", f.name, family_record(f).SerializeAsString(), &f, nullptr});
    if (slice.size() >= kBatchWrites) flush_slice();
  }
  for (WindowEntry& e : entries) {
    const std::string key =
        e.metric + "|" + padded_time(e.start_s) + "|" + writer_ + "-" + std::to_string(++written_);
    slice.push_back(
        {resolutions_.at(e.resolution).collection, key, record_of(e).SerializeAsString(), nullptr, &e});
    if (slice.size() >= kBatchWrites) flush_slice();
  }
  flush_slice();
  return result;
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
        throw MetricsError(MetricsError::Kind::kResourceExhausted,
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
    for (const auto& r : page.records) out.push_back(family_of(r.value));
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());
  return out;
}

}  // namespace gameverse::metrics
