// What the logging service needs from storage (infrastructure/store_log_repository.* over the host
// store; an in-memory one in the tests). Keys as in log_keys.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "domain/log_record.hpp"

namespace gameverse::logging {

struct StoredChunk {
  std::string key;
  std::vector<LogRecord> records;
  int64_t stored_unix_ms = 0;  // when the service stored it, by the host's clock (0: not known)
};

struct SizeEntry {
  std::string key;  // size_key
  int64_t bytes = 0;
  int64_t records = 0;
};

// Written all together or not at all, where the store takes it in one batch; else each chunk
// with its marker (markers[i] is chunks[i]'s), so no chunk is ever stored unseen.
struct AppendBatch {
  std::vector<StoredChunk> chunks;
  std::vector<std::string> markers;       // minutes keys, one per chunk, written every time
  std::vector<std::string> request_refs;  // requests keys
  std::vector<SizeEntry> sizes;           // replace the writer's own entries
};

struct EraseBatch {
  std::vector<std::string> chunks, markers, request_refs, sizes;
  bool empty() const { return chunks.empty() && markers.empty() && request_refs.empty() && sizes.empty(); }
};

class LogRepository {
 public:
  virtual ~LogRepository() = default;
  // Several appends at once, in one store batch where they fit. Throws when storage fails;
  // nothing of them is kept then (but see AppendBatch for what does not fit in one).
  virtual void append(std::span<const AppendBatch* const> batches) = 0;
  virtual void erase(const EraseBatch& batch) = 0;
  // Keys of the minutes collection that begin with `prefix`, in key order.
  virtual std::vector<std::string> markers(std::string_view prefix) = 0;
  virtual std::vector<SizeEntry> sizes() = 0;
  // Every chunk whose key begins with `prefix`, in key order, until `each` returns false.
  virtual void chunks(std::string_view prefix, const std::function<bool(StoredChunk&&)>& each) = 0;
  virtual std::optional<StoredChunk> chunk(std::string_view key) = 0;
  // Keys of the requests collection under "<request_id>/", at most `limit`.
  virtual std::vector<std::string> request_refs(std::string_view request_id, size_t limit) = 0;
};

}  // namespace gameverse::logging
