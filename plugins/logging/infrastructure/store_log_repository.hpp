// The logging repository over the host's document store. Collections and keys as in
// domain/log_keys.hpp; chunks hold records.v1.StoredChunk (proto/ beside this file), sizes hold
// "<bytes> <records>", markers and request references hold nothing.
#pragma once

#include <gameverse/sdk/store.hpp>

#include "domain/repository.hpp"

namespace gameverse::logging {

class StoreLogRepository final : public LogRepository {
 public:
  explicit StoreLogRepository(sdk::Store store) : store_(store) {}
  // Request references, then each chunk with its marker, then the sizes: one store batch when
  // they fit, else slices of the store's 500 writes (a reference whose chunk never came is
  // skipped by queries; a chunk never goes without its marker).
  void append(std::span<const AppendBatch* const> batches) override;
  void erase(const EraseBatch& batch) override;
  std::vector<std::string> markers(std::string_view prefix) override;
  std::vector<SizeEntry> sizes() override;
  void chunks(std::string_view prefix, const std::function<bool(StoredChunk&&)>& each) override;
  std::optional<StoredChunk> chunk(std::string_view key) override;
  std::vector<std::string> request_refs(std::string_view request_id, size_t limit) override;

  // Bytes of a chunk as stored, and back (for the pub/sub path to tails on other hosts, too).
  static std::string encode_chunk(const StoredChunk& chunk);
  static StoredChunk decode_chunk(std::string key, std::string_view bytes);

 private:
  sdk::Store store_;
};

}  // namespace gameverse::logging
