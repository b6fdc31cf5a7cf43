// A plugin built with this SDK on a host of an older minor: what the host lacks fails clearly
// instead of calling through a table entry the host never filled in.
#include <gtest/gtest.h>
#include <gameverse/sdk/plugin.hpp>

#include "plugin/plugin.hpp"

namespace gameverse::sdk {
namespace {

TEST(SdkOnAnOlderHost, CacheAndPubSubNeedAbi11) {
  gv_host_api api = plugin::host_api(0);  // the table as a 1.0 host hands it over
  api.struct_size = offsetof(gv_host_api, cache_get);
  api.cache_get = nullptr;
  api.publish = nullptr;
  api.subscribe = nullptr;
  gv_host_plugin self;
  const Host host(&api, &self);
  try {
    host.cache();
    FAIL() << "the cache was offered by a 1.0 host";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kFailedPrecondition);
    EXPECT_STREQ(e.what(), "the cache needs a host with ABI 1.1 or newer; this host speaks ABI 1.0");
  }
  EXPECT_THROW(host.publish("t", "x"), Error);
  EXPECT_THROW(host.subscribe("t", [](std::string_view, std::string_view) {}), Error);
}

TEST(SdkOnAnOlderHost, CompareAndSetNeedsAbi14) {
  gv_host_api api = plugin::host_api(3);  // the table as a 1.3 host hands it over
  api.struct_size = offsetof(gv_host_api, cache_compare_and_set);
  api.cache_compare_and_set = nullptr;
  gv_host_plugin self;
  const Host host(&api, &self);
  try {
    host.cache().compare_and_set("lease", std::nullopt, "me");
    FAIL() << "compare_and_set was offered by a 1.3 host";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), StatusCode::kFailedPrecondition);
    EXPECT_STREQ(e.what(),
                 "compare_and_set in the cache needs a host with ABI 1.4 or newer; this host speaks ABI 1.3");
  }
}

}  // namespace
}  // namespace gameverse::sdk
