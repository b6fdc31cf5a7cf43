#include "plugin/load_order.hpp"

#include <gtest/gtest.h>

namespace gameverse::plugin {
namespace {

using Names = std::vector<std::string>;

TEST(LoadOrder, IndependentPluginsKeepTheirOrder) {
  const LoadOrder result = load_order({{"b", {"B"}, {}}, {"a", {"A"}, {}}}, {});
  EXPECT_EQ(result.order, (Names{"b", "a"}));
  EXPECT_TRUE(result.refused.empty());
}

TEST(LoadOrder, ADependencyStartsFirst) {
  const LoadOrder result = load_order(
      {{"chat", {"Chat"}, {"Auth", "Log"}}, {"log", {"Log"}, {}}, {"auth", {"Auth"}, {"Log"}}}, {});
  EXPECT_EQ(result.order, (Names{"log", "auth", "chat"}));
  EXPECT_EQ(result.provider.at("Auth"), "auth");
}

TEST(LoadOrder, AServiceOfAServingPluginIsProvided) {
  const LoadOrder result = load_order({{"chat", {"Chat"}, {"Auth"}}}, {{"auth", {"Auth"}, {}}});
  EXPECT_EQ(result.order, (Names{"chat"}));
  EXPECT_EQ(result.provider.at("Auth"), "auth");
}

TEST(LoadOrder, DependingOnItsOwnServiceIsFine) {
  const LoadOrder result = load_order({{"a", {"A"}, {"A"}}}, {});
  EXPECT_EQ(result.order, (Names{"a"}));
}

TEST(LoadOrder, AMissingServiceRefusesThePluginAndThoseThatReachIt) {
  const LoadOrder result = load_order({{"lobby", {"Lobby"}, {"Chat"}}, {"chat", {"Chat"}, {"Auth"}}}, {});
  EXPECT_TRUE(result.order.empty());
  EXPECT_EQ(result.refused.at("chat"), "depends on Auth, which no configured plugin serves");
  EXPECT_EQ(result.refused.at("lobby"), "depends on Auth, which no configured plugin serves");
}

// Its start then finds the provider refused and says so.
TEST(LoadOrder, APluginWhoseProviderWasRefusedEarlierIsOrdered) {
  const LoadOrder result = load_order({{"chat", {"Chat"}, {"Auth"}}, {"lobby", {"Lobby"}, {"Chat"}}}, {});
  EXPECT_EQ(result.order, (Names{"lobby"}));
  EXPECT_EQ(result.refused.at("chat"), "depends on Auth, which no configured plugin serves");
  EXPECT_EQ(result.provider.at("Chat"), "chat");
}

TEST(LoadOrder, ACycleIsNamed) {
  const LoadOrder result = load_order({{"x", {"X"}, {"Y"}}, {"y", {"Y"}, {"X"}}, {"z", {"Z"}, {}}}, {});
  EXPECT_EQ(result.order, (Names{"z"}));
  EXPECT_EQ(result.refused.at("x"), "dependency cycle: x -> y -> x");
  EXPECT_EQ(result.refused.at("y"), "dependency cycle: x -> y -> x");
}

TEST(LoadOrder, AServiceServedTwiceIsProvidedByTheFirstByName) {
  const LoadOrder result = load_order({{"b", {"S"}, {}}, {"a", {"S"}, {}}, {"c", {"C"}, {"S"}}}, {});
  EXPECT_EQ(result.provider.at("S"), "a");
  EXPECT_EQ(result.order, (Names{"b", "a", "c"}));
}

}  // namespace
}  // namespace gameverse::plugin
