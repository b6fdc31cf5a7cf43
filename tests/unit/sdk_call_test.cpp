// Whom a call between services acts for when the plugin does not say: the caller of the handler
// running on the thread, or, outside any handler, nobody (the call fails instead of guessing).
#include <gtest/gtest.h>
#include <gameverse/sdk/plugin.hpp>

#include "plugin/plugin.hpp"

namespace gameverse::sdk {
namespace {

TEST(SdkCallsBetweenServices, AHandlersContextIsTheThreadsCurrentCallWhileItRuns) {
  EXPECT_EQ(CallContext::current(), nullptr);
  {
    const CallContext outer(nullptr);
    EXPECT_EQ(CallContext::current(), &outer);
    {
      const CallContext inner(nullptr);  // a handler called in process from the outer one
      EXPECT_EQ(CallContext::current(), &inner);
    }
    EXPECT_EQ(CallContext::current(), &outer);
  }
  EXPECT_EQ(CallContext::current(), nullptr);
}

TEST(SdkCallsBetweenServices, OutsideAHandlerTheDefaultCallFailsAndNamesTheChoices) {
  gv_host_api api = plugin::host_api(2);
  gv_host_plugin self;
  const Host host(&api, &self);
  const CallResult result = host.call("/gameverse.echo.v1.Echo/Echo", "");
  EXPECT_EQ(result.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(result.status.message(),
            "calling /gameverse.echo.v1.Echo/Echo outside a handler: pass the CallContext of the call it is "
            "made for, or sdk::as_plugin to call with this plugin's own trust");
}

}  // namespace
}  // namespace gameverse::sdk

TEST(SdkCallContext, APeersAddressIsItWithoutThePort) {
  using gameverse::sdk::detail::without_port;
  EXPECT_EQ(without_port("ipv4:127.0.0.1:53211"), "ipv4:127.0.0.1");
  EXPECT_EQ(without_port("ipv6:[::1]:8"), "ipv6:[::1]");
  EXPECT_EQ(without_port("ipv6:%5B::1%5D:8"), "ipv6:%5B::1%5D");
  EXPECT_EQ(without_port("ipv6:[::1]"), "ipv6:[::1]");
  EXPECT_EQ(without_port("inproc:echo"), "inproc:echo");
  EXPECT_EQ(without_port("unix:/run/gameverse.sock"), "unix:/run/gameverse.sock");
  EXPECT_EQ(without_port("weird:"), "weird:");
}

TEST(SdkCallContext, OnlyAnInProcessPeerNamesACallingPlugin) {
  using gameverse::sdk::detail::plugin_of_peer;
  EXPECT_EQ(plugin_of_peer("inproc:inventory"), "inventory");
  EXPECT_EQ(plugin_of_peer("inproc:"), "");
  EXPECT_EQ(plugin_of_peer("ipv4:127.0.0.1:53211"), "");
  EXPECT_EQ(plugin_of_peer("ipv6:[::1]:8"), "");
  EXPECT_EQ(plugin_of_peer("unix:/run/inproc:x"), "");
}

TEST(SdkAccess, AConfigListIsSplitTrimmedAndWithoutBlanksOrRepeats) {
  using gameverse::sdk::split_list;
  EXPECT_EQ(split_list(""), std::vector<std::string>{});
  EXPECT_EQ(split_list(" , ,"), std::vector<std::string>{});
  EXPECT_EQ(split_list("shop"), std::vector<std::string>{"shop"});
  EXPECT_EQ(split_list(" shop ,world-state,\tshop, "), (std::vector<std::string>{"shop", "world-state"}));
}

TEST(SdkAccess, OnlyAListedNonEmptyNameIsTrusted) {
  const gameverse::sdk::TrustedPlugins trusted("shop, world-state");
  EXPECT_TRUE(trusted.contains("shop"));
  EXPECT_TRUE(trusted.contains("world-state"));
  EXPECT_FALSE(trusted.contains(""));
  EXPECT_FALSE(trusted.contains("sho"));
  EXPECT_FALSE(gameverse::sdk::TrustedPlugins("").contains(""));
}

TEST(SdkAccess, ARoleIsHeldOnlyWhenNamedExactly) {
  gameverse::sdk::Principal ada{"ada", "s1", {"player", "moderator"}};
  EXPECT_TRUE(gameverse::sdk::has_role(ada, "moderator"));
  EXPECT_FALSE(gameverse::sdk::has_role(ada, "admin"));
  EXPECT_FALSE(gameverse::sdk::has_role(ada, "mod"));
  EXPECT_FALSE(gameverse::sdk::meets_role(ada, "admin"));
  EXPECT_TRUE(gameverse::sdk::meets_role(ada, "moderator"));
  const gameverse::sdk::Principal operator_{"operator", "", {"operator"}};
  EXPECT_TRUE(gameverse::sdk::meets_role(operator_, "admin"))
      << "the gate lets the operator through every policy";
  EXPECT_FALSE(gameverse::sdk::has_role(operator_, "admin"));
}
