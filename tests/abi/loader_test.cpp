// The loader against one fixture plugin per failure mode: each is refused with its own message.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <fstream>

#include "expect_contains.hpp"
#include "plugin/manager.hpp"
#include "plugin/plugin.hpp"

namespace gameverse::plugin {
namespace {

config::PluginConfig entry(const std::string& name, const std::string& dir = GV_FIXTURE_DIR) {
  config::PluginConfig e;
  e.name = name;
  e.path = dir + std::string("/") + name + ".so";
  e.source_file = "test.toml";
  e.where = {3, 1};
  e.key_prefix = "plugin[0]";
  return e;
}

// Opens and initialises the plugin, returning the refusal message ("" when it loaded).
std::string refusal(const config::PluginConfig& e) {
  try {
    auto plugin = Plugin::open(e);
    plugin->init();
  } catch (const LoadError& error) {
    return error.what();
  }
  return "";
}

TEST(Loader, MissingFile) {
  auto e = entry("abi-not-built");
  const std::string message = refusal(e);
  EXPECT_CONTAINS(message, "no such file");
  EXPECT_CONTAINS(message, "test.toml:3:1");
}

TEST(Loader, CorruptFile) {
  const auto path = std::filesystem::temp_directory_path() / "gv-corrupt-plugin.so";
  { std::ofstream(path) << "this is not an ELF file"; }
  config::PluginConfig e = entry("corrupt");
  e.path = path;
  EXPECT_CONTAINS(refusal(e), "cannot be loaded");
  std::filesystem::remove(path);
}

TEST(Loader, NoEntrySymbol) {
  const std::string message = refusal(entry("abi-no-entry"));
  EXPECT_CONTAINS(message, "plugin 'abi-no-entry'");
  EXPECT_CONTAINS(message, "exports no gv_plugin_entry_v1 symbol");
}

TEST(Loader, MajorMismatchNamesBothVersions) {
  const std::string message = refusal(entry("abi-major-mismatch"));
  EXPECT_CONTAINS(message, "built for ABI major 2");
  EXPECT_CONTAINS(message, "this host speaks ABI 1." + std::to_string(GV_ABI_VERSION_MINOR));
}

TEST(Loader, StructLargerThanTheHostKnows) {
  const std::string message = refusal(entry("abi-struct-too-large"));
  EXPECT_CONTAINS(message, "larger than the");
  EXPECT_CONTAINS(message, "it needs a newer host");
  EXPECT_CONTAINS(message, "plugin (ABI 1." + std::to_string(GV_ABI_VERSION_MINOR + 1) + ")");
}

TEST(Loader, InitFailureCarriesThePluginsMessage) {
  const std::string message = refusal(entry("abi-init-fails"));
  EXPECT_CONTAINS(message, "init failed with status 14");
  EXPECT_CONTAINS(message, "the fixture's backing store is unreachable");
}

TEST(Loader, MalformedDescriptorSet) {
  EXPECT_CONTAINS(refusal(entry("abi-malformed-descriptor-set")), "malformed descriptor set");
}

TEST(Loader, CallKindMustMatchTheProto) {
  const std::string message = refusal(entry("abi-kind-mismatch"));
  EXPECT_CONTAINS(message, "/gameverse.hello.v1.Hello/Greet is declared server-streaming");
  EXPECT_CONTAINS(message, "its .proto makes it unary");
}

TEST(Loader, NameMustMatchTheConfig) {
  config::PluginConfig e = entry("abi-init-fails");
  e.name = "something-else";
  EXPECT_CONTAINS(refusal(e), "holds plugin 'abi-init-fails', not 'something-else'");
}

TEST(Loader, ExamplePluginsLoad) {
  EXPECT_EQ(refusal(entry("echo", GV_PLUGIN_DIR)), "");
  EXPECT_EQ(refusal(entry("hello-c", GV_PLUGIN_DIR)), "");
}

TEST(Loader, PrivatePoolKnowsThePluginsMethods) {
  auto plugin = Plugin::open(entry("echo", GV_PLUGIN_DIR));
  ASSERT_EQ(plugin->methods().size(), 12u);
  const auto* method = plugin->pool().FindMethodByName("gameverse.echo.v1.Echo.Chat");
  ASSERT_NE(method, nullptr);
  EXPECT_TRUE(method->client_streaming());
  EXPECT_EQ(method->input_type()->full_name(), "gameverse.echo.v1.EchoRequest");
}

TEST(Loader, PluginConfigIsCheckedAgainstItsSchema) {
  config::PluginConfig e = entry("echo", GV_PLUGIN_DIR);
  e.settings = toml::parse(std::string_view("max_stream_mesages = 5\nmax_sleep_ms = \"long\"\n"),
                           std::string_view("test.toml"));
  const std::string message = refusal(e);
  EXPECT_CONTAINS(message, "test.toml:1:1: plugin[0].config.max_stream_mesages: unknown key");
  EXPECT_CONTAINS(message, "declares: max_stream_messages, max_sleep_ms");
  EXPECT_CONTAINS(message, "test.toml:2:16: plugin[0].config.max_sleep_ms: must be an integer");
}

TEST(Loader, PluginConfigRulesAreTheHosts) {
  config::PluginConfig e = entry("echo", GV_PLUGIN_DIR);
  e.settings = toml::parse(std::string_view("max_stream_messages = 0\n"), std::string_view("test.toml"));
  // The echo plugin declares max_stream_messages at least 1: the host refuses 0, naming its place.
  EXPECT_CONTAINS(refusal(e),
                  "test.toml:1:23: plugin[0].config.max_stream_messages: must be at least 1, not 0");
}

// A config value the host checked and filled in, as the plugin reads it.
template <class T>
T config_value(Plugin& plugin, const char* key) {
  return std::get<T>(plugin.self()->config.at(key));
}

// Plugins built against ABI 1.0 and 1.1 had smaller method and config key entries and no
// entry sizes in the descriptor: the host still reads every entry right.
TEST(Loader, PluginsOfAbi10And11StillLoad) {
  for (const char* name : {"abi-legacy-1-0", "abi-legacy-1-1"}) {
    SCOPED_TRACE(name);
    config::PluginConfig e = entry(name);
    e.settings = toml::parse(std::string_view("greeting = \"hello\"\n"), std::string_view("test.toml"));
    std::unique_ptr<Plugin> plugin;
    ASSERT_NO_THROW(plugin = Plugin::open(e));
    ASSERT_EQ(plugin->methods().size(), 2u);
    EXPECT_EQ(plugin->methods()[1].full_name, "/gameverse.echo.v1.Echo/Expand");
    EXPECT_EQ(plugin->methods()[1].kind, GV_CALL_SERVER_STREAMING);
    EXPECT_EQ(config_value<int64_t>(*plugin, "rounds"), 3);
    EXPECT_EQ(config_value<std::string>(*plugin, "greeting"), "hello");
    plugin->init();
    EXPECT_EQ(plugin->abi_minor(), std::string(name) == "abi-legacy-1-0" ? 0u : 1u);
  }
  // 1.1's access table beside the methods still counts.
  auto plugin = Plugin::open(entry("abi-legacy-1-1"));
  EXPECT_EQ(plugin->methods()[0].access.kind, config::AccessPolicy::Kind::kPublic);
  EXPECT_EQ(plugin->methods()[1].access.kind, config::AccessPolicy::Kind::kRole);
  EXPECT_EQ(plugin->methods()[1].access.role, "admin");
  // 1.0 had none: both need a signed-in caller.
  auto old = Plugin::open(entry("abi-legacy-1-0"));
  EXPECT_EQ(old->methods()[1].access.kind, config::AccessPolicy::Kind::kAuthenticated);
}

TEST(Loader, AMistakeInDescribeReachesTheMessage) {
  const std::string message = refusal(entry("abi-describe-fails"));
  EXPECT_CONTAINS(message, "plugin 'abi-describe-fails'");
  EXPECT_CONTAINS(message, "describe() failed: method /gameverse.hello.v1.Hello/Greet is declared twice");
}

TEST(Loader, ConfigRulesAreCheckedWithTheValuesPlace) {
  config::PluginConfig e = entry("abi-config-rules");
  e.settings = toml::parse(std::string_view("workers = 0\nratio = 1.5\nmode = \"turbo\"\nregion = \"\"\n"),
                           std::string_view("test.toml"));
  const std::string message = refusal(e);
  EXPECT_CONTAINS(message, "test.toml:1:11: plugin[0].config.workers: must be at least 1, not 0");
  EXPECT_CONTAINS(message, "test.toml:2:9: plugin[0].config.ratio: must be at most 1, not 1.5");
  EXPECT_CONTAINS(message,
                  "test.toml:3:8: plugin[0].config.mode: must be one of \"fast\", \"safe\", not \"turbo\"");
  EXPECT_CONTAINS(message, "test.toml:4:10: plugin[0].config.region: must not be empty");

  // Values within the rules load, and the defaults meet them too.
  e.settings = toml::parse(std::string_view("workers = 64\nratio = 0\nmode = \"safe\"\n"),
                           std::string_view("test.toml"));
  std::unique_ptr<Plugin> plugin;
  ASSERT_NO_THROW(plugin = Plugin::open(e));
  EXPECT_EQ(config_value<int64_t>(*plugin, "workers"), 64);
  EXPECT_EQ(config_value<double>(*plugin, "ratio"), 0.0);
  EXPECT_EQ(config_value<std::string>(*plugin, "mode"), "safe");
  EXPECT_EQ(config_value<std::string>(*plugin, "region"), "eu");
}

PluginManager::Options manager_options() {
  return {std::filesystem::temp_directory_path() / ("gv-loader-test-" + std::to_string(getpid())),
          std::chrono::milliseconds(1000)};
}

TEST(PluginManager, MethodOwnedTwiceIsRefusedNamingBoth) {
  config::Config config;
  config.plugins.push_back(entry("echo", GV_PLUGIN_DIR));
  config.plugins.push_back(entry("abi-method-twice"));
  config.plugins.push_back(entry("hello-c", GV_PLUGIN_DIR));
  PluginManager manager(manager_options());
  const auto outcomes = manager.load_all(config);
  ASSERT_EQ(outcomes.size(), 3u);
  const auto refused =
      std::find_if(outcomes.begin(), outcomes.end(), [](const Outcome& o) { return !o.ok(); });
  ASSERT_NE(refused, outcomes.end());
  EXPECT_EQ(refused->plugin, "abi-method-twice");
  EXPECT_CONTAINS(refused->message, "/gameverse.echo.v1.Echo/Echo is already served by plugin 'echo'");
  EXPECT_EQ(std::count_if(outcomes.begin(), outcomes.end(), [](const Outcome& o) { return o.ok(); }), 2);
  // The others serve on.
  EXPECT_EQ(manager.routes()->at("/gameverse.echo.v1.Echo/Echo").plugin->name(), "echo");
  EXPECT_EQ(manager.routes()->count("/gameverse.hello.v1.Hello/Greet"), 1u);
  EXPECT_EQ(manager.status("abi-method-twice")->last_error, refused->message);
  manager.unload_all();
  EXPECT_TRUE(manager.routes()->empty());
}

}  // namespace
}  // namespace gameverse::plugin
