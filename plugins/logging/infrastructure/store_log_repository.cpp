#include "infrastructure/store_log_repository.hpp"

#include <charconv>

#include "gameverse/logging/records/v1/records.pb.h"

namespace gameverse::logging {

namespace stored = ::gameverse::logging::records::v1;

namespace {

// The host store takes at most 500 writes in one batch.
constexpr size_t kBatchWrites = 500;

void commit_each(const sdk::Store& store, const std::vector<std::pair<const char*, std::string>>& erasures) {
  sdk::Store::Batch batch;
  for (const auto& [collection, key] : erasures) {
    batch.erase(collection, key);
    if (batch.size() == kBatchWrites) {
      store.commit(batch);
      batch = sdk::Store::Batch();
    }
  }
  if (!batch.empty()) store.commit(batch);
}

int64_t number(std::string_view text) {
  int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

}  // namespace

std::string StoreLogRepository::encode_chunk(const StoredChunk& chunk) {
  stored::StoredChunk out;
  for (const LogRecord& r : chunk.records) {
    stored::StoredRecord* s = out.add_records();
    s->set_time_unix_nano(r.time_unix_nano);
    s->set_observed_unix_nano(r.observed_unix_nano);
    s->set_severity_number(r.severity_number);
    s->set_severity_text(r.severity_text);
    s->set_service(r.service);
    s->set_host(r.host);
    s->set_plugin(r.plugin);
    s->set_generation(r.generation);
    s->set_request_id(r.request_id);
    s->set_trace_id(r.trace_id);
    s->set_span_id(r.span_id);
    s->set_body(r.body);
    for (const Attribute& a : r.attributes) {
      stored::StoredAttribute* sa = s->add_attributes();
      sa->set_key(a.key);
      sa->set_value(a.value);
    }
  }
  return out.SerializeAsString();
}

StoredChunk StoreLogRepository::decode_chunk(std::string key, std::string_view bytes) {
  const auto parsed =
      sdk::detail::parse_record<stored::StoredChunk>(bytes, "collection 'chunks' key '" + key + "'");
  StoredChunk chunk{std::move(key), {}};
  chunk.records.reserve(static_cast<size_t>(parsed.records_size()));
  for (const stored::StoredRecord& s : parsed.records()) {
    LogRecord r;
    r.time_unix_nano = s.time_unix_nano();
    r.observed_unix_nano = s.observed_unix_nano();
    r.severity_number = s.severity_number();
    r.severity_text = s.severity_text();
    r.service = s.service();
    r.host = s.host();
    r.plugin = s.plugin();
    r.generation = s.generation();
    r.request_id = s.request_id();
    r.trace_id = s.trace_id();
    r.span_id = s.span_id();
    r.body = s.body();
    for (const stored::StoredAttribute& a : s.attributes()) r.attributes.push_back({a.key(), a.value()});
    chunk.records.push_back(std::move(r));
  }
  return chunk;
}

void StoreLogRepository::append(std::span<const AppendBatch* const> batches) {
  // Request references first: one whose chunk never came is skipped by queries. Everything in one
  // store batch when it fits (the usual case), else slices of the store's 500 writes.
  sdk::Store::Batch writes;
  auto room_for = [&](size_t n) {
    if (writes.size() + n > kBatchWrites) {
      store_.commit(writes);
      writes = sdk::Store::Batch();
    }
  };
  for (const AppendBatch* batch : batches) {
    for (const std::string& ref : batch->request_refs) {
      room_for(1);
      writes.put("requests", ref, std::string());
    }
  }
  // Each chunk with its marker, in the same batch; the writers' sizes last.
  for (const AppendBatch* batch : batches) {
    for (size_t i = 0; i < batch->chunks.size(); ++i) {
      room_for(2);
      writes.put("chunks", batch->chunks[i].key, encode_chunk(batch->chunks[i]), sdk::Store::kCreateOnly);
      writes.put("minutes", batch->markers.at(i), std::string());
    }
  }
  for (const AppendBatch* batch : batches) {
    for (const SizeEntry& size : batch->sizes) {
      room_for(1);
      writes.put("sizes", size.key, std::to_string(size.bytes) + " " + std::to_string(size.records));
    }
  }
  if (!writes.empty()) store_.commit(writes);
}

void StoreLogRepository::erase(const EraseBatch& batch) {
  std::vector<std::pair<const char*, std::string>> erasures;
  for (const std::string& key : batch.chunks) erasures.emplace_back("chunks", key);
  for (const std::string& key : batch.request_refs) erasures.emplace_back("requests", key);
  for (const std::string& key : batch.markers) erasures.emplace_back("minutes", key);
  for (const std::string& key : batch.sizes) erasures.emplace_back("sizes", key);
  commit_each(store_, erasures);
}

std::vector<std::string> StoreLogRepository::markers(std::string_view prefix) {
  std::vector<std::string> out;
  sdk::Store::Query query{"minutes", std::string(prefix), {}, {}, 0};
  do {
    sdk::Store::Page page = store_.list(query);
    for (sdk::Store::Object& o : page.objects) out.push_back(std::move(o.key));
    query.cursor = std::move(page.next_cursor);
  } while (!query.cursor.empty());
  return out;
}

std::vector<SizeEntry> StoreLogRepository::sizes() {
  std::vector<SizeEntry> out;
  sdk::Store::Query query{"sizes", {}, {}, {}, 0};
  do {
    sdk::Store::Page page = store_.list(query);
    for (sdk::Store::Object& o : page.objects) {
      const size_t space = o.value.find(' ');
      const std::string_view value(o.value);
      out.push_back({std::move(o.key), number(value.substr(0, space)),
                     space == std::string::npos ? 0 : number(value.substr(space + 1))});
    }
    query.cursor = std::move(page.next_cursor);
  } while (!query.cursor.empty());
  return out;
}

void StoreLogRepository::chunks(std::string_view prefix, const std::function<bool(StoredChunk&&)>& each) {
  sdk::Store::Query query{"chunks", std::string(prefix), {}, {}, 0};
  do {
    sdk::Store::Page page = store_.list(query);
    for (sdk::Store::Object& o : page.objects) {
      StoredChunk chunk = decode_chunk(std::move(o.key), o.value);
      chunk.stored_unix_ms = o.created_unix_ms;
      if (!each(std::move(chunk))) return;
    }
    query.cursor = std::move(page.next_cursor);
  } while (!query.cursor.empty());
}

std::optional<StoredChunk> StoreLogRepository::chunk(std::string_view key) {
  std::optional<sdk::Store::Object> o = store_.get("chunks", key);
  if (!o) return std::nullopt;
  StoredChunk chunk = decode_chunk(std::move(o->key), o->value);
  chunk.stored_unix_ms = o->created_unix_ms;
  return chunk;
}

std::vector<std::string> StoreLogRepository::request_refs(std::string_view request_id, size_t limit) {
  std::vector<std::string> out;
  sdk::Store::Query query{"requests", std::string(request_id) + "/", {}, {}, 0};
  do {
    sdk::Store::Page page = store_.list(query);
    for (sdk::Store::Object& o : page.objects) {
      if (out.size() == limit) return out;
      out.push_back(std::move(o.key));
    }
    query.cursor = std::move(page.next_cursor);
  } while (!query.cursor.empty());
  return out;
}

}  // namespace gameverse::logging
