// The host's document store: what plugins reach through gv_host_api. Objects live in collections
// namespaced by plugin; each has a key, a value, an owner, a version for optimistic concurrency,
// and created/updated times. Backends: SQLite (the default, one file) and PostgreSQL.
#pragma once

#include <gameverse/abi.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "platform/platform_error.hpp"

namespace gameverse::platform {

struct StoredObject {
  std::string collection;
  std::string key;
  std::string value;
  std::string owner;
  int64_t version = 0;  // 1 on create, +1 on every put
  int64_t created_unix_ms = 0;
  int64_t updated_unix_ms = 0;
};

// expected_version: kAnyVersion writes whatever is there; 0 creates only (ALREADY_EXISTS if the
// key exists); N > 0 writes only over version N (ABORTED otherwise).
inline constexpr int64_t kAnyVersion = -1;

struct StoreWrite {
  enum class Kind { kPut = 1, kDelete = 2 };
  Kind kind = Kind::kPut;
  std::string collection;
  std::string key;
  std::string value;
  std::string owner;
  int64_t expected_version = kAnyVersion;
};

struct StoreQuery {
  std::string collection;
  std::string key_prefix;  // empty: every key
  std::string owner;       // empty: any owner
  std::string after_key;   // from the cursor: list keys strictly after this one
  uint32_t limit = 100;
};

struct StorePage {
  std::vector<StoredObject> objects;
  bool more = false;  // another page follows the last object
};

// One step of a backend's schema: applied once, in order, and recorded in gv_schema_migrations.
struct SchemaMigration {
  int version;
  const char* description;
  const char* sql;
};

// Builds a page from rows fetched with LIMIT limit + 1: `next` yields objects until it returns
// nullopt; a row beyond `limit` only tells that more follow.
template <class Next>
StorePage collect_page(uint32_t limit, Next&& next) {
  StorePage page;
  while (std::optional<StoredObject> object = next()) {
    if (page.objects.size() == limit) {
      page.more = true;
      break;
    }
    page.objects.push_back(std::move(*object));
  }
  return page;
}

// One backend. Every method is safe from any thread. `space` is the owning plugin's name.
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  virtual std::optional<StoredObject> get(const std::string& space, const std::string& collection,
                                          const std::string& key) = 0;
  // All writes or none; returns each write's new version (0 for a delete).
  virtual std::vector<int64_t> write(const std::string& space, const std::vector<StoreWrite>& writes) = 0;
  // Objects in key order (byte-wise), at most query.limit of them.
  virtual StorePage list(const std::string& space, const StoreQuery& query) = 0;
  // The schema version this backend's tables are at, after its migrations.
  virtual int schema_version() = 0;
  virtual std::string name() const = 0;
};

// Opens (creating if needed) an SQLite store in `file`, and migrates it.
std::unique_ptr<StoreBackend> open_sqlite_store(const std::string& file);

// Connects to PostgreSQL (`url`: a libpq connection string) with a pool of `pool_size`
// connections, and migrates the schema.
std::unique_ptr<StoreBackend> open_postgres_store(const std::string& url, int pool_size);

// `url` with the connection settings a server that stops answering needs, where it does not set
// them itself: connect_timeout (a connect waits 5 s at most) and TCP keepalives with
// tcp_user_timeout (a silent server fails the call in flight in about 30 s, not after the
// kernel's 15 minutes). Throws PlatformError (INVALID_ARGUMENT) naming what libpq could not parse.
std::string with_postgres_connection_defaults(const std::string& url);

// The smallest byte string greater than every string that starts with `prefix`; nullopt when
// there is none (the prefix is all 0xff).
std::optional<std::string> prefix_successor(const std::string& prefix);

int64_t now_unix_ms();

}  // namespace gameverse::platform
