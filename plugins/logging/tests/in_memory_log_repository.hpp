// The logging repository in memory, for domain tests: each collection a sorted map, with a switch
// that makes storage fail.
#pragma once

#include <map>
#include <set>
#include <stdexcept>

#include "domain/repository.hpp"

namespace gameverse::logging {

class InMemoryLogRepository final : public LogRepository {
 public:
  bool failing = false;
  int commits = 0;  // append calls
  std::map<std::string, std::vector<LogRecord>> chunk_map;
  std::map<std::string, SizeEntry> size_map;
  std::set<std::string> marker_set, ref_set;

  void append(std::span<const AppendBatch* const> batches) override {
    if (failing) throw std::runtime_error("storage is down");
    ++commits;
    for (const AppendBatch* batch : batches) {
      for (const StoredChunk& c : batch->chunks) chunk_map[c.key] = c.records;
      marker_set.insert(batch->markers.begin(), batch->markers.end());
      ref_set.insert(batch->request_refs.begin(), batch->request_refs.end());
      for (const SizeEntry& s : batch->sizes) size_map[s.key] = s;
    }
  }
  void erase(const EraseBatch& batch) override {
    if (failing) throw std::runtime_error("storage is down");
    for (const auto& k : batch.chunks) chunk_map.erase(k);
    for (const auto& k : batch.markers) marker_set.erase(k);
    for (const auto& k : batch.request_refs) ref_set.erase(k);
    for (const auto& k : batch.sizes) size_map.erase(k);
  }
  std::vector<std::string> markers(std::string_view prefix) override {
    std::vector<std::string> out;
    for (const auto& k : marker_set) {
      if (k.starts_with(prefix)) out.push_back(k);
    }
    return out;
  }
  std::vector<SizeEntry> sizes() override {
    std::vector<SizeEntry> out;
    for (const auto& [k, v] : size_map) out.push_back(v);
    return out;
  }
  void chunks(std::string_view prefix, const std::function<bool(StoredChunk&&)>& each) override {
    for (const auto& [k, v] : chunk_map) {
      if (k.starts_with(prefix) && !each(StoredChunk{k, v})) return;
    }
  }
  std::optional<StoredChunk> chunk(std::string_view key) override {
    auto it = chunk_map.find(std::string(key));
    if (it == chunk_map.end()) return std::nullopt;
    return StoredChunk{it->first, it->second};
  }
  std::vector<std::string> request_refs(std::string_view request_id, size_t limit) override {
    std::vector<std::string> out;
    const std::string prefix = std::string(request_id) + "/";
    for (const auto& k : ref_set) {
      if (k.starts_with(prefix) && out.size() < limit) out.push_back(k);
    }
    return out;
  }
};

}  // namespace gameverse::logging
