// The PostgreSQL store: a pool of connections with prepared statements; every batch is one
// transaction, retried on serialization failures and deadlocks; a lost connection is replaced on
// next use and the call in flight fails with UNAVAILABLE, never half-applied.
#include <libpq-fe.h>

#include <pqxx/pqxx>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "platform/store.hpp"

namespace gameverse::platform {

namespace {

constexpr int kMaxAttempts = 5;
constexpr auto kPoolWait = std::chrono::seconds(5);

const SchemaMigration kMigrations[] = {
    {1, "objects",
     "CREATE TABLE gv_objects ("
     "  space TEXT NOT NULL, collection TEXT NOT NULL, key BYTEA NOT NULL, value BYTEA NOT NULL,"
     "  owner TEXT NOT NULL, version BIGINT NOT NULL, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,"
     "  PRIMARY KEY (space, collection, key));"
     "CREATE INDEX gv_objects_by_owner ON gv_objects (space, collection, owner, key);"},
};

const char* kColumns = "collection, key, value, owner, version, created_ms, updated_ms";

pqxx::binarystring bytes(const std::string& s) {
  return pqxx::binarystring(s.data(), s.size());
}

StoredObject read_object(const pqxx::row& row) {
  StoredObject o;
  o.collection = row[0].as<std::string>();
  o.key = pqxx::binarystring(row[1]).str();
  o.value = pqxx::binarystring(row[2]).str();
  o.owner = row[3].as<std::string>();
  o.version = row[4].as<int64_t>();
  o.created_unix_ms = row[5].as<int64_t>();
  o.updated_unix_ms = row[6].as<int64_t>();
  return o;
}

class PostgresStore final : public StoreBackend {
 public:
  PostgresStore(const std::string& url, int pool_size)
      : url_(with_postgres_connection_defaults(url)), pool_size_(pool_size) {
    auto connection = connect();
    migrate(*connection);
    release(std::move(connection));
  }

  std::optional<StoredObject> get(const std::string& space, const std::string& collection,
                                  const std::string& key) override {
    return run([&](pqxx::connection& c) -> std::optional<StoredObject> {
      pqxx::read_transaction tx(c);
      pqxx::result r = tx.exec_prepared("get", space, collection, bytes(key));
      if (r.empty()) return std::nullopt;
      return read_object(r[0]);
    });
  }

  std::vector<int64_t> write(const std::string& space, const std::vector<StoreWrite>& writes) override {
    return run([&](pqxx::connection& c) {
      pqxx::work tx(c);
      std::vector<int64_t> versions;
      const int64_t now = now_unix_ms();
      for (const StoreWrite& w : writes) versions.push_back(apply(tx, space, w, now));
      tx.commit();
      return versions;
    });
  }

  StorePage list(const std::string& space, const StoreQuery& query) override {
    const std::optional<std::string> upper =
        query.key_prefix.empty() ? std::nullopt : prefix_successor(query.key_prefix);
    // Unused bounds become no-ops ($8 false, $6 empty), so one statement serves every query.
    return run([&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      pqxx::result r = tx.exec_prepared("list", space, query.collection, bytes(query.after_key),
                                        bytes(query.key_prefix), bytes(upper.value_or("")), query.owner,
                                        static_cast<int64_t>(query.limit) + 1, upper.has_value());
      auto row = r.begin();
      return collect_page(query.limit, [&]() -> std::optional<StoredObject> {
        if (row == r.end()) return std::nullopt;
        return read_object(*row++);
      });
    });
  }

  int schema_version() override {
    return run([&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      return tx.exec1("SELECT COALESCE(MAX(version), 0) FROM gv_schema_migrations")[0].as<int>();
    });
  }

  std::string name() const override { return "postgresql"; }

 private:
  std::unique_ptr<pqxx::connection> connect() {
    auto c = std::make_unique<pqxx::connection>(url_);
    c->prepare("get", std::string("SELECT ") + kColumns +
                          " FROM gv_objects WHERE space = $1 AND collection = $2 AND key = $3");
    c->prepare(
        "upsert",
        "INSERT INTO gv_objects (space, collection, key, value, owner, version, created_ms, updated_ms)"
        " VALUES ($1, $2, $3, $4, $5, 1, $6, $6) ON CONFLICT (space, collection, key) DO UPDATE SET"
        " value = excluded.value, owner = excluded.owner, version = gv_objects.version + 1,"
        " updated_ms = excluded.updated_ms RETURNING version");
    c->prepare(
        "create",
        "INSERT INTO gv_objects (space, collection, key, value, owner, version, created_ms, updated_ms)"
        " VALUES ($1, $2, $3, $4, $5, 1, $6, $6) ON CONFLICT (space, collection, key) DO NOTHING"
        " RETURNING version");
    c->prepare("update",
               "UPDATE gv_objects SET value = $4, owner = $5, version = version + 1, updated_ms = $6"
               " WHERE space = $1 AND collection = $2 AND key = $3 AND version = $7 RETURNING version");
    c->prepare("delete_any", "DELETE FROM gv_objects WHERE space = $1 AND collection = $2 AND key = $3");
    c->prepare("delete_version",
               "DELETE FROM gv_objects WHERE space = $1 AND collection = $2 AND key = $3 AND version = $4"
               " RETURNING version");
    c->prepare("version", "SELECT version FROM gv_objects WHERE space = $1 AND collection = $2 AND key = $3");
    c->prepare("list", std::string("SELECT ") + kColumns +
                           " FROM gv_objects WHERE space = $1 AND collection = $2 AND key > $3 AND key >= $4"
                           " AND (NOT $8 OR key < $5) AND ($6 = '' OR owner = $6)"
                           " ORDER BY key LIMIT $7");
    return c;
  }

  void migrate(pqxx::connection& c) {
    pqxx::work tx(c);
    // Two hosts starting together migrate one after the other.
    tx.exec("SELECT pg_advisory_xact_lock(7355608)");
    tx.exec(
        "CREATE TABLE IF NOT EXISTS gv_schema_migrations ("
        " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_ms BIGINT NOT NULL)");
    const int current = tx.exec1("SELECT COALESCE(MAX(version), 0) FROM gv_schema_migrations")[0].as<int>();
    for (const SchemaMigration& m : kMigrations) {
      if (m.version <= current) continue;
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO gv_schema_migrations VALUES ($1, $2, $3)", m.version, m.description,
                     now_unix_ms());
    }
    tx.commit();
  }

  int64_t apply(pqxx::work& tx, const std::string& space, const StoreWrite& w, int64_t now) {
    const bool put = w.kind == StoreWrite::Kind::kPut;
    pqxx::result r;
    if (put && w.expected_version == kAnyVersion) {
      r = tx.exec_prepared("upsert", space, w.collection, bytes(w.key), bytes(w.value), w.owner, now);
    } else if (put && w.expected_version == 0) {
      r = tx.exec_prepared("create", space, w.collection, bytes(w.key), bytes(w.value), w.owner, now);
      if (r.empty()) {
        throw PlatformError(GV_STATUS_ALREADY_EXISTS,
                            "collection '" + w.collection + "': the key exists and the put was create-only");
      }
    } else if (put) {
      r = tx.exec_prepared("update", space, w.collection, bytes(w.key), bytes(w.value), w.owner, now,
                           w.expected_version);
    } else if (w.expected_version == kAnyVersion) {
      tx.exec_prepared("delete_any", space, w.collection, bytes(w.key));
      return 0;
    } else {
      r = tx.exec_prepared("delete_version", space, w.collection, bytes(w.key), w.expected_version);
    }
    if (r.empty()) {
      pqxx::result now_version = tx.exec_prepared("version", space, w.collection, bytes(w.key));
      throw PlatformError(GV_STATUS_ABORTED, "collection '" + w.collection + "': expected version " +
                                                 std::to_string(w.expected_version) + " of the key, it is " +
                                                 (now_version.empty() ? std::string("absent")
                                                                      : now_version[0][0].as<std::string>()));
    }
    return put ? r[0][0].as<int64_t>() : 0;
  }

  // Runs `f` on a pooled connection; retries what PostgreSQL asks to retry, and turns a lost
  // connection into UNAVAILABLE (its transaction was rolled back by the server).
  template <class F>
  auto run(F&& f) -> decltype(f(std::declval<pqxx::connection&>())) {
    for (int attempt = 1;; ++attempt) {
      std::unique_ptr<pqxx::connection> c = acquire();
      try {
        auto result = f(*c);
        release(std::move(c));
        return result;
      } catch (const pqxx::in_doubt_error& e) {
        discard();
        throw PlatformError(GV_STATUS_UNAVAILABLE,
                            std::string("PostgreSQL connection lost while committing; the "
                                        "batch may or may not be applied: ") +
                                e.what());
      } catch (const pqxx::broken_connection& e) {
        // The server went away (a restart, a failover): its other pooled connections are as dead.
        // The transaction was rolled back, so one retry on a fresh connection is safe.
        discard();
        drop_idle();
        if (attempt >= 2) {
          throw PlatformError(GV_STATUS_UNAVAILABLE, std::string("PostgreSQL connection lost: ") + e.what());
        }
      } catch (const pqxx::serialization_failure& e) {
        release(std::move(c));
        if (attempt == kMaxAttempts) throw PlatformError(GV_STATUS_ABORTED, e.what());
      } catch (const pqxx::deadlock_detected& e) {
        release(std::move(c));
        if (attempt == kMaxAttempts) throw PlatformError(GV_STATUS_ABORTED, e.what());
      } catch (const PlatformError&) {
        release(std::move(c));
        throw;
      } catch (const pqxx::sql_error& e) {
        if (c->is_open()) {
          release(std::move(c));
        } else {
          discard();
        }
        throw PlatformError(GV_STATUS_INTERNAL, std::string("PostgreSQL: ") + e.what());
      }
    }
  }

  std::unique_ptr<pqxx::connection> acquire() {
    std::unique_lock lock(mu_);
    if (!available_.wait_for(lock, kPoolWait, [this] { return !idle_.empty() || open_ < pool_size_; })) {
      throw PlatformError(GV_STATUS_UNAVAILABLE, "all " + std::to_string(pool_size_) +
                                                     " PostgreSQL connections stayed busy for 5 s");
    }
    if (!idle_.empty()) {
      auto c = std::move(idle_.front());
      idle_.pop_front();
      return c;
    }
    ++open_;
    lock.unlock();
    try {
      return connect();
    } catch (const std::exception& e) {
      discard();
      throw PlatformError(GV_STATUS_UNAVAILABLE, std::string("cannot connect to PostgreSQL: ") + e.what());
    }
  }

  void release(std::unique_ptr<pqxx::connection> c) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(c));
    available_.notify_one();
  }

  void discard() {
    std::lock_guard lock(mu_);
    --open_;
    available_.notify_one();
  }

  void drop_idle() {
    std::lock_guard lock(mu_);
    open_ -= static_cast<int>(idle_.size());
    idle_.clear();
    available_.notify_all();
  }

  std::string url_;
  int pool_size_;
  std::mutex mu_;
  std::condition_variable available_;
  std::deque<std::unique_ptr<pqxx::connection>> idle_;
  int open_ = 1;  // the first connection, opened by the constructor
};

}  // namespace

std::string with_postgres_connection_defaults(const std::string& url) {
  static constexpr std::pair<const char*, const char*> kDefaults[] = {
      {"connect_timeout", "5"},     {"keepalives", "1"},       {"keepalives_idle", "10"},
      {"keepalives_interval", "5"}, {"keepalives_count", "3"}, {"tcp_user_timeout", "30000"},
  };
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? error : "out of memory";
    PQfreemem(error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT,
                        "[store] postgresql_url is not a libpq connection string: " + message);
  }
  std::string out = url;
  const bool is_uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
  bool has_query = is_uri && url.find('?') != std::string::npos;
  for (const auto& [key, value] : kDefaults) {
    bool set = false;
    for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::string_view(o->keyword) == key) set = o->val != nullptr;
    }
    if (set) continue;
    if (is_uri) {
      out += has_query ? '&' : '?';
      has_query = true;
      out += std::string(key) + "=" + value;
    } else {
      out += std::string(out.empty() ? "" : " ") + key + "=" + value;
    }
  }
  PQconninfoFree(options);
  return out;
}

std::unique_ptr<StoreBackend> open_postgres_store(const std::string& url, int pool_size) {
  try {
    return std::make_unique<PostgresStore>(url, pool_size);
  } catch (const PlatformError&) {
    throw;
  } catch (const std::exception& e) {
    throw PlatformError(GV_STATUS_UNAVAILABLE, std::string("cannot open the PostgreSQL store: ") + e.what());
  }
}

}  // namespace gameverse::platform
