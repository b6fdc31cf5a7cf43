// The SQLite store: one file, WAL, a busy timeout; one connection behind a mutex (SQLite allows
// one writer at a time anyway), with its statements prepared once.
#include <SQLiteCpp/SQLiteCpp.h>

#include <chrono>
#include <map>
#include <mutex>

#include "platform/store.hpp"

namespace gameverse::platform {

namespace {

const SchemaMigration kMigrations[] = {
    {1, "objects",
     "CREATE TABLE gv_objects ("
     "  space TEXT NOT NULL, collection TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
     "  owner TEXT NOT NULL, version INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT "
     "NULL,"
     "  PRIMARY KEY (space, collection, key));"
     "CREATE INDEX gv_objects_by_owner ON gv_objects (space, collection, owner, key);"},
};

void bind_blob(SQLite::Statement& statement, int index, const std::string& bytes) {
  statement.bind(index, bytes.data(), static_cast<int>(bytes.size()));
}

std::string blob(const SQLite::Column& column) {
  return std::string(static_cast<const char*>(column.getBlob()), static_cast<size_t>(column.getBytes()));
}

class SqliteStore final : public StoreBackend {
 public:
  explicit SqliteStore(const std::string& file)
      : db_(file, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_FULLMUTEX) {
    db_.setBusyTimeout(5000);
    db_.exec("PRAGMA journal_mode = WAL");
    db_.exec("PRAGMA synchronous = NORMAL");
    migrate();
    upsert_ = prepare(
        "INSERT INTO gv_objects (space, collection, key, value, owner, version, created_ms, updated_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)"
        " ON CONFLICT (space, collection, key) DO UPDATE SET value = excluded.value, owner = excluded.owner,"
        " version = gv_objects.version + 1, updated_ms = excluded.updated_ms RETURNING version");
    create_ = prepare(
        "INSERT INTO gv_objects (space, collection, key, value, owner, version, created_ms, updated_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6) ON CONFLICT (space, collection, key) DO NOTHING RETURNING "
        "version");
    update_ = prepare(
        "UPDATE gv_objects SET value = ?4, owner = ?5, version = version + 1, updated_ms = ?6"
        " WHERE space = ?1 AND collection = ?2 AND key = ?3 AND version = ?7 RETURNING version");
    delete_any_ = prepare("DELETE FROM gv_objects WHERE space = ?1 AND collection = ?2 AND key = ?3");
    delete_version_ = prepare(
        "DELETE FROM gv_objects WHERE space = ?1 AND collection = ?2 AND key = ?3 AND version = ?4 RETURNING "
        "version");
    get_ = prepare(
        "SELECT collection, key, value, owner, version, created_ms, updated_ms FROM gv_objects"
        " WHERE space = ?1 AND collection = ?2 AND key = ?3");
  }

  std::optional<StoredObject> get(const std::string& space, const std::string& collection,
                                  const std::string& key) override {
    std::lock_guard lock(mu_);
    SQLite::Statement& q = *get_;
    Reset reset(q);
    q.bind(1, space);
    q.bind(2, collection);
    bind_blob(q, 3, key);
    if (!q.executeStep()) return std::nullopt;
    return read_object(q);
  }

  std::vector<int64_t> write(const std::string& space, const std::vector<StoreWrite>& writes) override {
    std::lock_guard lock(mu_);
    std::vector<int64_t> versions;
    versions.reserve(writes.size());
    db_.exec("BEGIN IMMEDIATE");
    try {
      const int64_t now = now_unix_ms();
      for (const StoreWrite& w : writes) versions.push_back(apply(space, w, now));
      db_.exec("COMMIT");
    } catch (...) {
      db_.exec("ROLLBACK");
      throw;
    }
    return versions;
  }

  StorePage list(const std::string& space, const StoreQuery& query) override {
    const std::optional<std::string> upper =
        query.key_prefix.empty() ? std::nullopt : prefix_successor(query.key_prefix);
    std::string sql =
        "SELECT collection, key, value, owner, version, created_ms, updated_ms FROM gv_objects"
        " WHERE space = ?1 AND collection = ?2 AND key > ?3 AND key >= ?4";
    if (upper) sql += " AND key < ?5";
    if (!query.owner.empty()) sql += " AND owner = ?6";
    sql += " ORDER BY key LIMIT ?7";
    std::lock_guard lock(mu_);
    SQLite::Statement& q = cached(sql);
    Reset reset(q);
    q.bind(1, space);
    q.bind(2, query.collection);
    bind_blob(q, 3, query.after_key);
    bind_blob(q, 4, query.key_prefix);
    if (upper) bind_blob(q, 5, *upper);
    if (!query.owner.empty()) q.bind(6, query.owner);
    q.bind(7, static_cast<int64_t>(query.limit) + 1);
    return collect_page(query.limit, [&]() -> std::optional<StoredObject> {
      if (!q.executeStep()) return std::nullopt;
      return read_object(q);
    });
  }

  int schema_version() override {
    std::lock_guard lock(mu_);
    return db_.execAndGet("SELECT COALESCE(MAX(version), 0) FROM gv_schema_migrations").getInt();
  }

  std::string name() const override { return "sqlite"; }

 private:
  // Resets a cached statement when the scope ends, whatever happened.
  struct Reset {
    explicit Reset(SQLite::Statement& s) : statement(s) {}
    ~Reset() {
      statement.reset();
      statement.clearBindings();
    }
    SQLite::Statement& statement;
  };

  std::unique_ptr<SQLite::Statement> prepare(const std::string& sql) {
    return std::make_unique<SQLite::Statement>(db_, sql);
  }

  SQLite::Statement& cached(const std::string& sql) {
    auto& slot = statements_[sql];
    if (!slot) slot = prepare(sql);
    return *slot;
  }

  void migrate() {
    db_.exec(
        "CREATE TABLE IF NOT EXISTS gv_schema_migrations ("
        " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_ms INTEGER NOT NULL)");
    db_.exec("BEGIN IMMEDIATE");
    try {
      const int current =
          db_.execAndGet("SELECT COALESCE(MAX(version), 0) FROM gv_schema_migrations").getInt();
      for (const SchemaMigration& m : kMigrations) {
        if (m.version <= current) continue;
        db_.exec(m.sql);
        SQLite::Statement record(db_, "INSERT INTO gv_schema_migrations VALUES (?, ?, ?)");
        record.bind(1, m.version);
        record.bind(2, m.description);
        record.bind(3, now_unix_ms());
        record.exec();
      }
      db_.exec("COMMIT");
    } catch (...) {
      db_.exec("ROLLBACK");
      throw;
    }
  }

  static StoredObject read_object(SQLite::Statement& q) {
    StoredObject o;
    o.collection = q.getColumn(0).getString();
    o.key = blob(q.getColumn(1));
    o.value = blob(q.getColumn(2));
    o.owner = q.getColumn(3).getString();
    o.version = q.getColumn(4).getInt64();
    o.created_unix_ms = q.getColumn(5).getInt64();
    o.updated_unix_ms = q.getColumn(6).getInt64();
    return o;
  }

  int64_t current_version(const std::string& space, const StoreWrite& w) {
    SQLite::Statement& q = *get_;
    Reset reset(q);
    q.bind(1, space);
    q.bind(2, w.collection);
    bind_blob(q, 3, w.key);
    return q.executeStep() ? q.getColumn(4).getInt64() : 0;
  }

  [[noreturn]] void conflict(const std::string& space, const StoreWrite& w) {
    const int64_t now = current_version(space, w);
    throw PlatformError(GV_STATUS_ABORTED, "collection '" + w.collection + "': expected version " +
                                               std::to_string(w.expected_version) + " of the key, it is " +
                                               (now == 0 ? std::string("absent") : std::to_string(now)));
  }

  int64_t apply(const std::string& space, const StoreWrite& w, int64_t now) {
    const bool put = w.kind == StoreWrite::Kind::kPut;
    SQLite::Statement& q = put ? (w.expected_version == kAnyVersion ? *upsert_
                                  : w.expected_version == 0         ? *create_
                                                                    : *update_)
                               : (w.expected_version == kAnyVersion ? *delete_any_ : *delete_version_);
    Reset reset(q);
    q.bind(1, space);
    q.bind(2, w.collection);
    bind_blob(q, 3, w.key);
    if (put) {
      bind_blob(q, 4, w.value);
      q.bind(5, w.owner);
      q.bind(6, now);
      if (w.expected_version > 0) q.bind(7, w.expected_version);
    } else if (w.expected_version != kAnyVersion) {
      q.bind(4, w.expected_version);
    }
    if (!put && w.expected_version == kAnyVersion) {
      q.exec();
      return 0;
    }
    if (!q.executeStep()) {
      if (put && w.expected_version == 0) {
        throw PlatformError(GV_STATUS_ALREADY_EXISTS,
                            "collection '" + w.collection + "': the key exists and the put was create-only");
      }
      q.reset();
      conflict(space, w);
    }
    return put ? q.getColumn(0).getInt64() : 0;
  }

  std::mutex mu_;
  SQLite::Database db_;
  std::unique_ptr<SQLite::Statement> upsert_, create_, update_, delete_any_, delete_version_, get_;
  std::map<std::string, std::unique_ptr<SQLite::Statement>> statements_;
};

}  // namespace

std::unique_ptr<StoreBackend> open_sqlite_store(const std::string& file) {
  try {
    return std::make_unique<SqliteStore>(file);
  } catch (const SQLite::Exception& e) {
    throw PlatformError(GV_STATUS_UNAVAILABLE, "cannot open the SQLite store " + file + ": " + e.what());
  }
}

std::optional<std::string> prefix_successor(const std::string& prefix) {
  std::string next = prefix;
  while (!next.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(next.back());
    if (last != 0xff) {
      ++last;
      return next;
    }
    next.pop_back();
  }
  return std::nullopt;
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace gameverse::platform
