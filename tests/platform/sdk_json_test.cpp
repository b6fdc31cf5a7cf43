// The SDK's JSON helpers on the host's real store (SQLite in a temporary directory) and cache,
// reached through the host function table as a plugin reaches them.
#include <gtest/gtest.h>
#include <gameverse/sdk/json.hpp>

#include "expect_contains.hpp"
#include "platform/cache.hpp"
#include "platform/store_service.hpp"
#include "plugin/plugin.hpp"
#include "temp_dir.hpp"

namespace gameverse::testing {
namespace {

class SdkJson : public ::testing::Test {
 protected:
  SdkJson() {
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

TEST_F(SdkJson, StoredAndCachedValuesRoundTrip) {
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

TEST_F(SdkJson, TextThatIsNotJsonIsNamed) {
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

}  // namespace
}  // namespace gameverse::testing
