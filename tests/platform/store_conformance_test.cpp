// One conformance suite for every store backend: SQLite on a temporary file, PostgreSQL on the
// server `tools/gv test` starts (GAMEVERSE_TEST_POSTGRES_URL). A backend that cannot be reached
// fails the suite; nothing is skipped.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "expect_contains.hpp"
#include "platform/store.hpp"

namespace gameverse::platform {
namespace {

std::string unique_space() {
  static std::atomic<int> counter{0};
  std::random_device random;
  return "test-" + std::to_string(random()) + "-" + std::to_string(counter++);
}

StoreWrite put(std::string collection, std::string key, std::string value, int64_t expected = kAnyVersion,
               std::string owner = "") {
  return {StoreWrite::Kind::kPut, std::move(collection), std::move(key),
          std::move(value),       std::move(owner),      expected};
}

StoreWrite erase(std::string collection, std::string key, int64_t expected = kAnyVersion) {
  return {StoreWrite::Kind::kDelete, std::move(collection), std::move(key), "", "", expected};
}

gv_status_code code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const PlatformError& e) {
    return e.code();
  }
  return GV_STATUS_OK;
}

class StoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      file_ = std::filesystem::temp_directory_path() / (unique_space() + ".db");
      store_ = open_sqlite_store(file_.string());
    } else {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr)
          << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`, "
             "which starts a PostgreSQL server for it";
      store_ = open_postgres_store(url, 4);
    }
    space_ = unique_space();
  }
  void TearDown() override {
    store_.reset();
    if (!file_.empty()) {
      std::filesystem::remove(file_);
      std::filesystem::remove(file_.string() + "-wal");
      std::filesystem::remove(file_.string() + "-shm");
    }
  }

  int64_t write1(const StoreWrite& w) { return store_->write(space_, {w}).at(0); }

  std::filesystem::path file_;
  std::unique_ptr<StoreBackend> store_;
  std::string space_;
};

TEST_P(StoreConformance, PutAndGetKeepBytesOwnerVersionAndTimes) {
  const std::string key("k\0\xff", 3);
  const std::string value("v\0al\xfe", 5);
  EXPECT_EQ(write1(put("things", key, value, kAnyVersion, "player-1")), 1);
  auto object = store_->get(space_, "things", key);
  ASSERT_TRUE(object);
  EXPECT_EQ(object->key, key);
  EXPECT_EQ(object->value, value);
  EXPECT_EQ(object->owner, "player-1");
  EXPECT_EQ(object->version, 1);
  EXPECT_EQ(object->created_unix_ms, object->updated_unix_ms);
  EXPECT_GT(object->created_unix_ms, 1'700'000'000'000);

  EXPECT_EQ(write1(put("things", key, "second")), 2);
  auto again = store_->get(space_, "things", key);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->value, "second");
  EXPECT_EQ(again->version, 2);
  EXPECT_EQ(again->created_unix_ms, object->created_unix_ms);
  EXPECT_GE(again->updated_unix_ms, object->updated_unix_ms);
  EXPECT_FALSE(store_->get(space_, "things", "missing"));
}

TEST_P(StoreConformance, StaleVersionIsAbortedAndChangesNothing) {
  write1(put("things", "k", "one"));
  write1(put("things", "k", "two"));
  EXPECT_EQ(code_of([&] { write1(put("things", "k", "stale", 1)); }), GV_STATUS_ABORTED);
  EXPECT_EQ(store_->get(space_, "things", "k")->value, "two");
  EXPECT_EQ(write1(put("things", "k", "three", 2)), 3);
  EXPECT_EQ(code_of([&] { write1(put("things", "absent", "x", 4)); }), GV_STATUS_ABORTED);
  EXPECT_FALSE(store_->get(space_, "things", "absent"));
}

TEST_P(StoreConformance, CreateOnly) {
  EXPECT_EQ(write1(put("things", "k", "first", 0)), 1);
  EXPECT_EQ(code_of([&] { write1(put("things", "k", "second", 0)); }), GV_STATUS_ALREADY_EXISTS);
  EXPECT_EQ(store_->get(space_, "things", "k")->value, "first");
}

TEST_P(StoreConformance, DeleteWithAndWithoutVersion) {
  write1(put("things", "k", "v"));
  EXPECT_EQ(code_of([&] { write1(erase("things", "k", 7)); }), GV_STATUS_ABORTED);
  EXPECT_TRUE(store_->get(space_, "things", "k"));
  EXPECT_EQ(write1(erase("things", "k", 1)), 0);
  EXPECT_FALSE(store_->get(space_, "things", "k"));
  EXPECT_EQ(write1(erase("things", "never-there")), 0);
}

TEST_P(StoreConformance, BatchIsAllOrNothingAcrossCollections) {
  write1(put("a", "existing", "v"));
  const std::vector<StoreWrite> failing = {put("a", "x", "1"), put("b", "y", "2"), erase("a", "existing"),
                                           put("a", "existing", "stale", 5)};
  EXPECT_EQ(code_of([&] { store_->write(space_, failing); }), GV_STATUS_ABORTED);
  EXPECT_FALSE(store_->get(space_, "a", "x"));
  EXPECT_FALSE(store_->get(space_, "b", "y"));
  EXPECT_TRUE(store_->get(space_, "a", "existing"));

  const auto versions =
      store_->write(space_, {put("a", "x", "1"), put("b", "y", "2"), erase("a", "existing", 1)});
  EXPECT_EQ(versions, (std::vector<int64_t>{1, 1, 0}));
  EXPECT_TRUE(store_->get(space_, "a", "x"));
  EXPECT_TRUE(store_->get(space_, "b", "y"));
  EXPECT_FALSE(store_->get(space_, "a", "existing"));
}

TEST_P(StoreConformance, ListByPrefixPagesInKeyOrder) {
  std::vector<StoreWrite> writes;
  for (int i = 24; i >= 0; --i) {
    writes.push_back(
        put("items", "item/" + std::string(i < 10 ? "0" : "") + std::to_string(i), std::to_string(i)));
  }
  writes.push_back(put("items", "itemz", "outside the prefix"));
  writes.push_back(put("items", "other/1", "outside"));
  writes.push_back(put("elsewhere", "item/00", "other collection"));
  store_->write(space_, writes);

  std::vector<std::string> seen;
  StoreQuery query{"items", "item/", "", "", 10};
  int pages = 0;
  for (;;) {
    StorePage page = store_->list(space_, query);
    ++pages;
    for (const auto& object : page.objects) seen.push_back(object.key);
    if (!page.more) break;
    query.after_key = page.objects.back().key;
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.front(), "item/00");
  EXPECT_EQ(seen.back(), "item/24");
}

TEST_P(StoreConformance, ListByOwner) {
  store_->write(space_,
                {put("inv", "sword", "1", kAnyVersion, "ada"), put("inv", "shield", "1", kAnyVersion, "bob"),
                 put("inv", "bow", "1", kAnyVersion, "ada")});
  StorePage page = store_->list(space_, {"inv", "", "ada", "", 100});
  ASSERT_EQ(page.objects.size(), 2u);
  EXPECT_EQ(page.objects[0].key, "bow");
  EXPECT_EQ(page.objects[1].key, "sword");
  EXPECT_FALSE(page.more);
}

TEST_P(StoreConformance, PrefixOfHighBytes) {
  store_->write(space_,
                {put("bin", std::string("\xff\xff", 2), "a"), put("bin", std::string("\xff\xff\x01", 3), "b"),
                 put("bin", std::string("\xfe", 1), "c")});
  StorePage page = store_->list(space_, {"bin", std::string("\xff\xff", 2), "", "", 100});
  EXPECT_EQ(page.objects.size(), 2u);
}

TEST_P(StoreConformance, SpacesAreSeparate) {
  const std::string other = unique_space();
  store_->write(space_, {put("c", "k", "mine")});
  store_->write(other, {put("c", "k", "theirs")});
  EXPECT_EQ(store_->get(space_, "c", "k")->value, "mine");
  EXPECT_EQ(store_->get(other, "c", "k")->value, "theirs");
  EXPECT_EQ(store_->get(other, "c", "k")->version, 1);
}

TEST_P(StoreConformance, MigrationsAreRecordedAndIdempotent) {
  EXPECT_EQ(store_->schema_version(), 1);
  if (GetParam() == "sqlite") {
    store_.reset();
    store_ = open_sqlite_store(file_.string());  // migrating an up-to-date file again is a no-op
  } else {
    store_ = open_postgres_store(std::getenv("GAMEVERSE_TEST_POSTGRES_URL"), 2);
  }
  EXPECT_EQ(store_->schema_version(), 1);
}

// Optimistic concurrency under contention: read, write with the version read, retry on ABORTED.
TEST_P(StoreConformance, ConcurrentOptimisticIncrementsLoseNothing) {
  write1(put("counters", "hits", "0"));
  constexpr int kThreads = 4;
  constexpr int kIncrements = 50;
  std::vector<std::thread> threads;
  std::atomic<int> unexpected{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        for (;;) {
          auto current = store_->get(space_, "counters", "hits");
          try {
            write1(put("counters", "hits", std::to_string(std::stoi(current->value) + 1), current->version));
            break;
          } catch (const PlatformError& e) {
            if (e.code() != GV_STATUS_ABORTED) {
              unexpected++;
              break;
            }
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(unexpected, 0);
  auto final_value = store_->get(space_, "counters", "hits");
  EXPECT_EQ(final_value->value, std::to_string(kThreads * kIncrements));
  EXPECT_EQ(final_value->version, kThreads * kIncrements + 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST(PrefixSuccessor, IncrementsTheLastByteBelowFf) {
  EXPECT_EQ(prefix_successor("ab"), "ac");
  EXPECT_EQ(prefix_successor(std::string("a\xff", 2)), "b");
  EXPECT_EQ(prefix_successor(std::string("\xff\xff", 2)), std::nullopt);
  EXPECT_EQ(prefix_successor(""), std::nullopt);
}

TEST(StoreOpen, UnreachableBackendsSayWhy) {
  try {
    open_postgres_store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", 1);
    FAIL() << "connected to nothing";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE);
    EXPECT_CONTAINS(e.what(), "cannot open the PostgreSQL store");
  }
  try {
    open_sqlite_store("/nonexistent-dir/gameverse.db");
    FAIL() << "opened a file in a missing directory";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE);
    EXPECT_CONTAINS(e.what(), "/nonexistent-dir/gameverse.db");
  }
}

}  // namespace
}  // namespace gameverse::platform
