// The SDK's typed records and JSON helpers on the host's real store (SQLite in a temporary
// directory) and cache, reached through the host function table as a plugin reaches them.
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <gtest/gtest.h>
#include <gameverse/sdk/json.hpp>

#include "expect_contains.hpp"
#include "platform/cache.hpp"
#include "platform/store_service.hpp"
#include "plugin/plugin.hpp"
#include "temp_dir.hpp"

namespace gameverse::testing {
namespace {

class SdkStore : public ::testing::Test {
 protected:
  SdkStore() {
    store_ = std::make_unique<platform::Store>(platform::open_sqlite_store((dir_.path() / "gv.db").string()),
                                               platform::StoreLimits{});
    cache_ = platform::open_memory_cache();
    platform_.store = store_.get();
    platform_.cache = cache_.get();
    self_.name = "json-test";
    self_.collections = {"profiles"};
    self_.platform = &platform_;
  }
  TempDir dir_;
  std::unique_ptr<platform::Store> store_;
  std::unique_ptr<platform::CacheBackend> cache_;
  platform::Platform platform_;
  gv_host_plugin self_;
  gv_host_api api_ = plugin::host_api(GV_ABI_VERSION_MINOR);
  sdk::Host host_{&api_, &self_};
};

TEST_F(SdkStore, StoredAndCachedValuesRoundTrip) {
  const nlohmann::json profile = {{"name", "Ada"}, {"level", 3}, {"items", {"sword", "shield"}}};
  const int64_t version = sdk::put_json(host_.store(), "profiles", "p1", profile);
  EXPECT_EQ(version, 1);
  auto read = sdk::get_json(host_.store(), "profiles", "p1");
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, profile);
  EXPECT_EQ(host_.store().get("profiles", "p1")->value,
            profile.dump());  // compact text, readable by any client
  EXPECT_FALSE(sdk::get_json(host_.store(), "profiles", "nobody"));
  // Optimistic concurrency carries over.
  EXPECT_THROW(sdk::put_json(host_.store(), "profiles", "p1", profile, /*expected_version=*/7), sdk::Error);

  sdk::set_json(host_.cache(), "session", {{"user", "p1"}});
  auto cached = sdk::get_json(host_.cache(), "session");
  ASSERT_TRUE(cached);
  EXPECT_EQ((*cached)["user"], "p1");
}

TEST_F(SdkStore, TextThatIsNotJsonIsNamed) {
  host_.store().put("profiles", "broken", "{not json");
  try {
    sdk::get_json(host_.store(), "profiles", "broken");
    FAIL() << "read broken JSON";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::StatusCode::kDataLoss);
    EXPECT_STREQ(e.what(), "the value of profiles/broken is not JSON");
  }
  try {
    sdk::parse_json("[1, 2", "the request's inventory");
    FAIL() << "parsed broken JSON";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::StatusCode::kInvalidArgument);
    EXPECT_CONTAINS(e.what(), "the request's inventory is not JSON: ");
  }
}

// A plugin's own messages as stored records: typed both ways, versions and conditional writes as
// for bytes.
TEST_F(SdkStore, TypedRecordsRoundTripWithTheirVersions) {
  google::protobuf::Timestamp seen;
  seen.set_seconds(1700000000);
  seen.set_nanos(42);
  const sdk::Store store = host_.store();
  EXPECT_EQ(store.put("profiles", "p1", seen, sdk::Store::kCreateOnly, "player-1"), 1);
  auto record = store.get<google::protobuf::Timestamp>("profiles", "p1");
  ASSERT_TRUE(record);
  EXPECT_EQ(record->value.seconds(), 1700000000);
  EXPECT_EQ(record->value.nanos(), 42);
  EXPECT_EQ(record->version, 1);
  EXPECT_EQ(record->owner, "player-1");
  EXPECT_FALSE(store.get<google::protobuf::Timestamp>("profiles", "nobody"));

  // Only over the version read; a stale write changes nothing.
  seen.set_seconds(1700000001);
  EXPECT_EQ(store.put("profiles", "p1", seen, record->version), 2);
  try {
    store.put("profiles", "p1", seen, record->version);
    FAIL() << "wrote over a newer version";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::StatusCode::kAborted);
  }

  sdk::Store::Batch batch;
  batch.put("profiles", "p2", seen).put("profiles", "p3", seen, sdk::Store::kCreateOnly);
  EXPECT_EQ(store.commit(batch), (std::vector<int64_t>{1, 1}));
  auto page = store.list<google::protobuf::Timestamp>({"profiles", "p", "", "", 10});
  ASSERT_EQ(page.records.size(), 3u);
  EXPECT_EQ(page.records[2].key, "p3");
  EXPECT_EQ(page.records[2].value.seconds(), 1700000001);

  host_.cache().set("last-seen", seen);
  auto cached = host_.cache().get<google::protobuf::Timestamp>("last-seen");
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->seconds(), 1700000001);
}

// A record that lacks a required field, or bytes of something else, is DATA_LOSS naming where it
// lies: never a message silently filled with defaults.
TEST_F(SdkStore, ARecordThatDoesNotParseIsNamedNotDefaulted) {
  google::protobuf::UninterpretedOption::NamePart part;  // proto2: both fields required
  part.set_name_part("only the name");
  host_.store().put("profiles", "half", part.SerializePartialAsString());
  try {
    host_.store().get<google::protobuf::UninterpretedOption::NamePart>("profiles", "half");
    FAIL() << "read a record without its required field";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::StatusCode::kDataLoss);
    EXPECT_STREQ(
        e.what(),
        "collection 'profiles' key 'half' holds a google.protobuf.UninterpretedOption.NamePart without its "
        "required fields: is_extension");
  }
  // Writing one is refused before it reaches the store.
  try {
    host_.store().put("profiles", "half2", part);
    FAIL() << "wrote a record without its required field";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(host_.store().get("profiles", "half2"));

  host_.cache().set("garbage", std::string_view("\xff\xff\xff"));
  try {
    host_.cache().get<google::protobuf::Timestamp>("garbage");
    FAIL() << "read garbage as a record";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::StatusCode::kDataLoss);
    EXPECT_STREQ(e.what(),
                 "cache key 'garbage' holds 3 bytes that do not parse as google.protobuf.Timestamp");
  }
}

}  // namespace
}  // namespace gameverse::testing
