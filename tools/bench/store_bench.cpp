// gv-store-bench: the store as plugins call it (gv_host_api store_write / store_get, through the
// host's checks and backend) against the same statements issued directly with SQLiteCpp or
// libpqxx, in the same run, rounds interleaved (each side first in every other round). Prints ops/s and the
// ratio for put, get and a 10-object batch on SQLite and (with --postgres-url) PostgreSQL.
#include <SQLiteCpp/SQLiteCpp.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <pqxx/pqxx>

#include "platform/store_service.hpp"
#include "plugin/plugin.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace gp = gameverse::platform;

gv_bytes bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

double ops_per_second(int ops, const std::function<void(int)>& op) {
  const auto start = Clock::now();
  for (int i = 0; i < ops; ++i) op(i);
  return ops / std::chrono::duration<double>(Clock::now() - start).count();
}

std::string key(int i) {
  return "player-" + std::to_string(i % 1000);
}

const std::string kValue(200, 'v');

// The plugin path: the host function table, as a plugin's SDK calls it.
struct ViaHost {
  gv_host_api api = gameverse::plugin::host_api(GV_ABI_VERSION_MINOR);
  gv_host_plugin self;
  gp::Platform platform;
  std::unique_ptr<gp::Store> store;

  explicit ViaHost(std::unique_ptr<gp::StoreBackend> backend) {
    store = std::make_unique<gp::Store>(std::move(backend), gp::StoreLimits{});
    platform.store = store.get();
    self.name = "bench";
    self.collections = {"profiles"};
    self.platform = &platform;
  }
  void put(int i) {
    const std::string k = key(i);
    gv_store_write w{sizeof w,      GV_STORE_PUT, bytes("profiles"),   bytes(k),
                     bytes(kValue), bytes(""),    GV_STORE_ANY_VERSION};
    int64_t version = 0;
    char message[256];
    if (api.store_write(&self, &w, 1, &version, {message, sizeof message}) != GV_STATUS_OK)
      throw std::runtime_error(message);
  }
  void batch(int i) {
    std::vector<std::string> keys;
    std::vector<gv_store_write> writes;
    for (int j = 0; j < 10; ++j) keys.push_back(key(i * 10 + j));
    for (const auto& k : keys) {
      writes.push_back({sizeof(gv_store_write), GV_STORE_PUT, bytes("profiles"), bytes(k), bytes(kValue),
                        bytes(""), GV_STORE_ANY_VERSION});
    }
    int64_t versions[10];
    char message[256];
    if (api.store_write(&self, writes.data(), writes.size(), versions, {message, sizeof message}) !=
        GV_STATUS_OK) {
      throw std::runtime_error(message);
    }
  }
  void get(int i) {
    const std::string k = key(i);
    size_t seen = 0;
    char message[256];
    api.store_get(&self, bytes("profiles"), bytes(k),
                  [](void* c, const gv_store_object* o) { *static_cast<size_t*>(c) += o->value.size; }, &seen,
                  {message, sizeof message});
    if (seen != kValue.size()) throw std::runtime_error("get returned nothing");
  }
};

const char* kUpsertSqlite =
    "INSERT INTO gv_objects (space, collection, key, value, owner, version, created_ms, updated_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6) ON CONFLICT (space, collection, key) DO UPDATE SET value = "
    "excluded.value,"
    " owner = excluded.owner, version = gv_objects.version + 1, updated_ms = excluded.updated_ms RETURNING "
    "version";
const char* kGetSqlite =
    "SELECT collection, key, value, owner, version, created_ms, updated_ms FROM gv_objects"
    " WHERE space = ?1 AND collection = ?2 AND key = ?3";

// The baseline: the same statements straight on SQLiteCpp, one connection.
struct DirectSqlite {
  SQLite::Database db;
  SQLite::Statement upsert;
  SQLite::Statement select;
  // The same connection settings as the host's store: WAL (kept by the file), synchronous NORMAL.
  explicit DirectSqlite(const std::string& file)
      : db(file, SQLite::OPEN_READWRITE), upsert(db, kUpsertSqlite), select(db, kGetSqlite) {
    db.setBusyTimeout(5000);
    db.exec("PRAGMA synchronous = NORMAL");
  }
  void put_one(const std::string& k) {
    upsert.bind(1, "direct");
    upsert.bind(2, "profiles");
    upsert.bind(3, k.data(), static_cast<int>(k.size()));
    upsert.bind(4, kValue.data(), static_cast<int>(kValue.size()));
    upsert.bind(5, "");
    upsert.bind(6, gp::now_unix_ms());
    upsert.executeStep();
    upsert.reset();
  }
  void put(int i) {
    db.exec("BEGIN IMMEDIATE");
    put_one(key(i));
    db.exec("COMMIT");
  }
  void batch(int i) {
    db.exec("BEGIN IMMEDIATE");
    for (int j = 0; j < 10; ++j) put_one(key(i * 10 + j));
    db.exec("COMMIT");
  }
  void get(int i) {
    const std::string k = key(i);
    select.bind(1, "direct");
    select.bind(2, "profiles");
    select.bind(3, k.data(), static_cast<int>(k.size()));
    if (!select.executeStep()) throw std::runtime_error("direct get found nothing");
    select.reset();
  }
};

// The baseline on PostgreSQL: the same statements straight on libpqxx, one connection.
struct DirectPostgres {
  pqxx::connection c;
  explicit DirectPostgres(const std::string& url) : c(url) {
    c.prepare("upsert",
              "INSERT INTO gv_objects (space, collection, key, value, owner, version, created_ms, updated_ms)"
              " VALUES ($1, $2, $3, $4, $5, 1, $6, $6) ON CONFLICT (space, collection, key) DO UPDATE SET"
              " value = excluded.value, owner = excluded.owner, version = gv_objects.version + 1,"
              " updated_ms = excluded.updated_ms RETURNING version");
    c.prepare("get",
              "SELECT collection, key, value, owner, version, created_ms, updated_ms FROM gv_objects"
              " WHERE space = $1 AND collection = $2 AND key = $3");
  }
  void put(int i) {
    pqxx::work tx(c);
    const std::string k = key(i);
    tx.exec_prepared("upsert", "direct", "profiles", pqxx::binarystring(k.data(), k.size()),
                     pqxx::binarystring(kValue.data(), kValue.size()), "", gp::now_unix_ms());
    tx.commit();
  }
  void batch(int i) {
    pqxx::work tx(c);
    for (int j = 0; j < 10; ++j) {
      const std::string k = key(i * 10 + j);
      tx.exec_prepared("upsert", "direct", "profiles", pqxx::binarystring(k.data(), k.size()),
                       pqxx::binarystring(kValue.data(), kValue.size()), "", gp::now_unix_ms());
    }
    tx.commit();
  }
  void get(int i) {
    pqxx::read_transaction tx(c);
    const std::string k = key(i);
    if (tx.exec_prepared("get", "direct", "profiles", pqxx::binarystring(k.data(), k.size())).empty()) {
      throw std::runtime_error("direct get found nothing");
    }
  }
};

template <class Direct>
void compare(const char* backend, ViaHost& host, Direct& direct, int ops, int rounds) {
  struct Row {
    const char* name;
    std::function<void(int)> host_op;
    std::function<void(int)> direct_op;
    int ops;
    std::vector<double> host_rates, direct_rates;
  };
  std::vector<Row> rows = {
      {"put", [&](int i) { host.put(i); }, [&](int i) { direct.put(i); }, ops, {}, {}},
      {"get", [&](int i) { host.get(i); }, [&](int i) { direct.get(i); }, ops, {}, {}},
      {"batch10", [&](int i) { host.batch(i); }, [&](int i) { direct.batch(i); }, ops / 10, {}, {}},
  };
  for (int round = 0; round < rounds; ++round) {
    for (auto& row : rows) {
      // Whichever side runs second pays for pruning the rows the first side just updated (they
      // share heap pages), so the order alternates between rounds.
      if (round % 2 == 0) {
        row.direct_rates.push_back(ops_per_second(row.ops, row.direct_op));
        row.host_rates.push_back(ops_per_second(row.ops, row.host_op));
      } else {
        row.host_rates.push_back(ops_per_second(row.ops, row.host_op));
        row.direct_rates.push_back(ops_per_second(row.ops, row.direct_op));
      }
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  for (auto& row : rows) {
    const double h = median(row.host_rates);
    const double d = median(row.direct_rates);
    std::printf("%-10s %-8s direct %9.0f ops/s   plugin API %9.0f ops/s   ratio %.2f\n", backend, row.name, d,
                h, h / d);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Store benchmark: the plugin store API against the direct driver"};
  std::string postgres_url;
  int ops = 2000;
  int rounds = 6;  // even: each side runs first in half of them
  app.add_option("--postgres-url", postgres_url, "Also measure PostgreSQL");
  app.add_option("--ops", ops)->capture_default_str();
  app.add_option("--rounds", rounds)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const auto file =
      std::filesystem::temp_directory_path() / ("gv-store-bench-" + std::to_string(getpid()) + ".db");
  {
    ViaHost host(gp::open_sqlite_store(file.string()));
    DirectSqlite direct(file.string());
    for (int i = 0; i < 1000; ++i) {  // both paths read existing keys
      host.put(i);
      direct.put(i);
    }
    compare("sqlite", host, direct, ops, rounds);
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(file.string() + suffix);
  if (!postgres_url.empty()) {
    ViaHost host(gp::open_postgres_store(postgres_url, 1));
    DirectPostgres direct(postgres_url);
    for (int i = 0; i < 1000; ++i) {
      host.put(i);
      direct.put(i);
    }
    compare("postgresql", host, direct, ops, rounds);
  }
  return 0;
}
