// What plugins call: the store backend behind checks of every argument, collection namespacing
// by plugin, limits, and tamper-evident cursors.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "platform/store.hpp"

namespace gameverse::platform {

struct StoreLimits {
  size_t max_key_bytes = 512;
  size_t max_owner_bytes = 128;
  size_t max_value_bytes = 1024 * 1024;
  size_t max_batch_writes = 500;
  uint32_t max_page = 1000;
  uint32_t default_page = 100;
};

struct ListResult {
  StorePage page;
  std::string next_cursor;  // empty on the last page
};

class Store {
 public:
  // Reads (or, on a new store, makes) the key that signs cursors; throws PlatformError when the
  // backend cannot.
  Store(std::unique_ptr<StoreBackend> backend, StoreLimits limits);

  // `space` is the plugin's name; `collections` what it declared. Every method throws
  // PlatformError with a message that names the argument at fault.
  std::optional<StoredObject> get(const std::string& space, const std::vector<std::string>& collections,
                                  const std::string& collection, const std::string& key);
  std::vector<int64_t> write(const std::string& space, const std::vector<std::string>& collections,
                             const std::vector<StoreWrite>& writes);
  ListResult list(const std::string& space, const std::vector<std::string>& collections, StoreQuery query,
                  const std::string& cursor);

  StoreBackend& backend() { return *backend_; }
  const StoreLimits& limits() const { return limits_; }

 private:
  void check_collection(const std::string& space, const std::vector<std::string>& collections,
                        const std::string& collection) const;
  void check_key(const std::string& key) const;
  std::string cursor_mac(const std::string& space, const StoreQuery& query,
                         const std::string& after_key) const;

  std::unique_ptr<StoreBackend> backend_;
  StoreLimits limits_;
  std::string cursor_secret_;  // kept in the store: a cursor from one host is valid on every other
};

}  // namespace gameverse::platform
