#include "config/config.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace gameverse::config {
namespace {

LoadResult parse(std::string_view text) {
  return parse_config(text, "test.toml", "/etc/gv");
}

// The single error of a config that must have exactly one.
ConfigError only_error(std::string_view text) {
  LoadResult result = parse(text);
  EXPECT_FALSE(result.config.has_value());
  EXPECT_EQ(result.errors.size(), 1u) << "errors: " << [&] {
    std::string all;
    for (const auto& e : result.errors) all += e.to_string() + "\n";
    return all;
  }();
  return result.errors.empty() ? ConfigError{} : result.errors.front();
}

TEST(Config, EmptyFileGivesDefaults) {
  LoadResult result = parse("");
  ASSERT_TRUE(result.config) << result.errors.front().to_string();
  EXPECT_EQ(result.config->server.listen, "127.0.0.1:50051");
  EXPECT_EQ(result.config->server.max_message_bytes, 4 * 1024 * 1024);
  EXPECT_EQ(result.config->server.drain_timeout_ms, 5000);
  EXPECT_EQ(result.config->host.log_level, "info");
  EXPECT_TRUE(result.config->plugins.empty());
}

TEST(Config, FullConfigIsRead) {
  LoadResult result = parse(R"(
[server]
listen = "0.0.0.0:6000"
max_message_bytes = 1048576
worker_threads = 3
drain_timeout_ms = 250

[host]
log_level = "debug"
plugin_dir = "plugins"

[[plugin]]
name = "echo"
[plugin.config]
max_stream_messages = 7

[[plugin]]
name = "chat"
path = "/opt/chat.so"
enabled = false
)");
  ASSERT_TRUE(result.config) << result.errors.front().to_string();
  const Config& c = *result.config;
  EXPECT_EQ(c.server.listen, "0.0.0.0:6000");
  EXPECT_EQ(c.server.max_message_bytes, 1048576);
  EXPECT_EQ(c.server.worker_threads, 3);
  EXPECT_EQ(c.server.drain_timeout_ms, 250);
  EXPECT_EQ(c.host.log_level, "debug");
  ASSERT_EQ(c.plugins.size(), 2u);
  EXPECT_EQ(c.plugins[0].name, "echo");
  EXPECT_EQ(c.plugins[0].path, "/etc/gv/plugins/echo.so");  // from plugin_dir, relative to the file
  EXPECT_TRUE(c.plugins[0].enabled);
  EXPECT_EQ(c.plugins[0].settings["max_stream_messages"].value<int64_t>(), 7);
  EXPECT_EQ(c.plugins[0].where.line, 12u);  // the [[plugin]] header
  EXPECT_EQ(c.plugins[1].path, "/opt/chat.so");
  EXPECT_FALSE(c.plugins[1].enabled);
}

TEST(Config, SyntaxErrorNamesLineAndColumn) {
  ConfigError e = only_error("[server]\nlisten = \"127.0.0.1:1\"\nworker_threads = = 2\n");
  EXPECT_EQ(e.file, "test.toml");
  EXPECT_EQ(e.where.line, 3u);
  EXPECT_GT(e.where.column, 0u);
  EXPECT_NE(e.message.find("TOML syntax error"), std::string::npos) << e.message;
}

TEST(Config, UnknownTopLevelKey) {
  ConfigError e = only_error("[sever]\nlisten = \"x:1\"\n");
  EXPECT_EQ(e.key, "sever");
  EXPECT_EQ(e.where.line, 1u);
  EXPECT_NE(e.message.find("unknown key"), std::string::npos);
  EXPECT_NE(e.message.find("server"), std::string::npos) << "should list the expected keys";
}

TEST(Config, UnknownServerKeyNamesItsLine) {
  ConfigError e = only_error("[server]\nlisten = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n");
  EXPECT_EQ(e.key, "server.listen_adress");
  EXPECT_EQ(e.where.line, 3u);
  EXPECT_EQ(e.where.column, 1u);
  EXPECT_EQ(e.to_string(),
            "test.toml:3:1: server.listen_adress: unknown key (expected one of: listen, "
            "max_message_bytes, worker_threads, drain_timeout_ms, health_watchers, tls)");
}

TEST(Config, WrongTypes) {
  EXPECT_EQ(only_error("[server]\nlisten = 50051\n").message, "must be a string, not an integer");
  EXPECT_EQ(only_error("[server]\nworker_threads = \"4\"\n").message, "must be an integer, not a string");
  EXPECT_EQ(only_error("[[plugin]]\nname = \"a\"\nenabled = 1\n").message,
            "must be a boolean, not an integer");
  EXPECT_EQ(only_error("server = 3\n").message, "must be a table, not an integer");
  EXPECT_EQ(only_error("[[plugin]]\nname = \"a\"\nconfig = 3\n").key, "plugin[0].config");
}

TEST(Config, RangesAreChecked) {
  ConfigError e = only_error("[server]\nworker_threads = 1000\n");
  EXPECT_EQ(e.key, "server.worker_threads");
  EXPECT_EQ(e.message, "must be between 0 and 256, not 1000");
  EXPECT_EQ(only_error("[server]\ndrain_timeout_ms = -1\n").key, "server.drain_timeout_ms");
  EXPECT_EQ(only_error("[server]\nmax_message_bytes = 10\n").key, "server.max_message_bytes");
  EXPECT_EQ(only_error("[server]\nhealth_watchers = -1\n").message, "must be between 0 and 1000000, not -1");
}

TEST(Config, ListenAddressIsChecked) {
  EXPECT_EQ(only_error("[server]\nlisten = \"localhost\"\n").key, "server.listen");
  EXPECT_EQ(only_error("[server]\nlisten = \"127.0.0.1:70000\"\n").key, "server.listen");
  EXPECT_TRUE(parse("[server]\nlisten = \"[::1]:0\"\n").config);
  EXPECT_TRUE(parse("[server]\nlisten = \"unix:/tmp/gv.sock\"\n").config);
}

TEST(Config, LogLevelIsChecked) {
  ConfigError e = only_error("[host]\nlog_level = \"verbose\"\n");
  EXPECT_EQ(e.key, "host.log_level");
  EXPECT_NE(e.message.find("trace, debug, info"), std::string::npos);
}

TEST(Config, LogFormatIsTextOrJson) {
  EXPECT_EQ(parse("").config->host.log_format, "text");
  EXPECT_EQ(parse("[host]\nlog_format = \"json\"\n").config->host.log_format, "json");
  ConfigError e = only_error("[host]\nlog_level = \"info\"\nlog_format = \"yaml\"\n");
  EXPECT_EQ(e.key, "host.log_format");
  EXPECT_EQ(e.where.line, 3u);
  EXPECT_EQ(e.message, "'yaml' is not one of text, json");
  EXPECT_EQ(e.to_string(), "test.toml:3:14: host.log_format: 'yaml' is not one of text, json");
  EXPECT_EQ(only_error("[host]\nlog_format = 1\n").key, "host.log_format");
  // Misspelt, it is an unknown key that lists the right one.
  ConfigError unknown = only_error("[host]\nlog_formt = \"json\"\n");
  EXPECT_EQ(unknown.key, "host.log_formt");
  EXPECT_NE(unknown.message.find("log_format"), std::string::npos);
}

TEST(Config, PluginNeedsAValidName) {
  EXPECT_EQ(only_error("[[plugin]]\npath = \"x.so\"\n").message, "missing required key 'name'");
  ConfigError e = only_error("[[plugin]]\nname = \"Echo Plugin\"\n");
  EXPECT_EQ(e.key, "plugin[0].name");
  EXPECT_NE(e.message.find("not a plugin name"), std::string::npos);
}

TEST(Config, DuplicatePluginNamesPointAtTheFirst) {
  ConfigError e = only_error("[[plugin]]\nname = \"echo\"\n\n[[plugin]]\nname = \"echo\"\n");
  EXPECT_EQ(e.key, "plugin[1].name");
  EXPECT_EQ(e.where.line, 5u);
  EXPECT_NE(e.message.find("already configured at line 2"), std::string::npos) << e.message;
}

TEST(Config, UnknownPluginKey) {
  ConfigError e = only_error("[[plugin]]\nname = \"echo\"\nenable = false\n");
  EXPECT_EQ(e.key, "plugin[0].enable");
  EXPECT_EQ(e.where.line, 3u);
}

TEST(Config, PluginMustBeAnArrayOfTables) {
  EXPECT_EQ(only_error("plugin = \"echo\"\n").message, "must be an array of tables, written [[plugin]]");
}

TEST(Config, EveryErrorIsReportedAtOnce) {
  LoadResult result = parse("[server]\nlisten = 1\nworker_threads = -5\n[host]\nlog_level = \"loud\"\n");
  EXPECT_FALSE(result.config);
  EXPECT_EQ(result.errors.size(), 3u);
}

TEST(Config, MissingFileIsAnError) {
  LoadResult result = load_config_file("/nonexistent/gameverse.toml");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].file, "/nonexistent/gameverse.toml");
  EXPECT_NE(result.errors[0].message.find("cannot open"), std::string::npos);
}

TEST(Config, FilePathsAreRelativeToTheFile) {
  const auto dir = std::filesystem::temp_directory_path() / ("gv-config-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "host.toml";
  std::ofstream(file) << "[[plugin]]\nname = \"echo\"\npath = \"lib/echo.so\"\n";
  LoadResult result = load_config_file(file);
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->plugins[0].path, dir / "lib/echo.so");
  std::filesystem::remove_all(dir);
}

TEST(Config, StoreCacheAndPubSubBackends) {
  LoadResult result = parse(R"(
[store]
backend = "postgresql"
postgresql_url = "postgresql://gv@db/gameverse"
pool_size = 16
[redis]
url = "redis://cache:6379"
[cache]
backend = "redis"
[pubsub]
backend = "redis"
)");
  ASSERT_TRUE(result.config) << result.errors.front().to_string();
  EXPECT_EQ(result.config->store.backend, "postgresql");
  EXPECT_EQ(result.config->store.pool_size, 16);
  EXPECT_EQ(result.config->redis.url, "redis://cache:6379");
  EXPECT_EQ(result.config->cache.backend, "redis");
  EXPECT_EQ(result.config->pubsub.backend, "redis");
  LoadResult defaults = parse("");
  ASSERT_TRUE(defaults.config);
  EXPECT_EQ(defaults.config->store.backend, "sqlite");
  EXPECT_EQ(defaults.config->cache.backend, "memory");
  EXPECT_EQ(defaults.config->pubsub.backend, "memory");
}

TEST(Config, BackendErrorsNameTheKey) {
  ConfigError store = only_error("[store]\nbackend = \"mysql\"\n");
  EXPECT_EQ(store.to_string(),
            "test.toml:2:11: store.backend: 'mysql' is not a store backend (sqlite or postgresql)");
  EXPECT_EQ(only_error("[store]\nbackend = \"postgresql\"\n").key, "store.postgresql_url");
  ConfigError cache = only_error("[cache]\nbackend = \"memcached\"\n");
  EXPECT_EQ(cache.to_string(),
            "test.toml:2:11: cache.backend: 'memcached' is not a cache backend (memory or redis)");
  ConfigError no_url = only_error("[pubsub]\nbackend = \"redis\"\n");
  EXPECT_EQ(no_url.to_string(),
            "test.toml:2:11: pubsub.backend: \"redis\" needs [redis] url = \"redis://host:port\"");
  ConfigError bad_url = only_error("[redis]\nurl = \"localhost:6379\"\n");
  EXPECT_EQ(bad_url.key, "redis.url");
  EXPECT_NE(bad_url.message.find("redis://127.0.0.1:6379"), std::string::npos) << bad_url.message;
  EXPECT_EQ(only_error("[cache]\nbackend = \"memory\"\nttl = 5\n").key, "cache.ttl");
}

// The shipped configs stay valid as the schema grows.
TEST(Config, ShippedConfigsAreValid) {
  for (const char* name : {"gameverse.toml", "production.toml"}) {
    LoadResult result = load_config_file(std::string(GV_CONFIG_DIR) + "/" + name);
    EXPECT_TRUE(result.config) << name << ": "
                               << (result.errors.empty() ? "" : result.errors.front().to_string());
  }
  LoadResult production = load_config_file(GV_CONFIG_DIR "/production.toml");
  ASSERT_TRUE(production.config);
  EXPECT_EQ(production.config->store.backend, "postgresql");
  EXPECT_EQ(production.config->cache.backend, "redis");
  EXPECT_EQ(production.config->pubsub.backend, "redis");
}

TEST(Config, TlsFilesAreRelativeToTheConfigAndComplete) {
  LoadResult result = parse(
      "[server.tls]\ncert_file = \"tls/server.pem\"\nkey_file = \"tls/server.key\"\n"
      "client_ca_file = \"/etc/ca.pem\"\nrequire_client_cert = true\n");
  ASSERT_TRUE(result.config) << result.errors.front().to_string();
  EXPECT_EQ(result.config->server.tls.cert_file, "/etc/gv/tls/server.pem");
  EXPECT_EQ(result.config->server.tls.key_file, "/etc/gv/tls/server.key");
  EXPECT_EQ(result.config->server.tls.client_ca_file, "/etc/ca.pem");
  EXPECT_TRUE(result.config->server.tls.require_client_cert);
  EXPECT_FALSE(parse("").config->server.tls.enabled());

  EXPECT_EQ(only_error("[server.tls]\ncert_file = \"a.pem\"\n").to_string(),
            "test.toml:1:1: server.tls.key_file: TLS needs both cert_file and key_file");
  EXPECT_EQ(
      only_error("[server.tls]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\nrequire_client_cert = true\n")
          .key,
      "server.tls.client_ca_file");
  EXPECT_EQ(only_error("[server.tls]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\nciphers = \"x\"\n").key,
            "server.tls.ciphers");
}

// Loopback is no proof of who calls (behind a proxy on the same machine, every client is
// loopback): the admin service trusts it only when told to.
TEST(Config, LoopbackIsNotTrustedUnlessConfigured) {
  EXPECT_FALSE(parse("").config->admin.allow_loopback);
  EXPECT_TRUE(parse("[admin]\nallow_loopback = true\n").config->admin.allow_loopback);
}

// A token copied from an example is no secret: refused, naming the key and the line, never the value.
TEST(Config, PlaceholderAdminTokensAreRefused) {
  for (const std::string token :
       {"replace-with-a-long-random-secret", "changeme-changeme-changeme", "an-EXAMPLE-token-of-some-length",
        "at-least-16-characters", "<placeholder-for-the-token>", "<openssl rand -hex 32>",
        "<64 hexadecimal digits>"}) {
    ConfigError e = only_error("[admin]\nenabled = true\ntoken = \"" + token + "\"\n");
    EXPECT_EQ(e.key, "admin.token") << token;
    EXPECT_EQ(e.where.line, 3u) << token;
    EXPECT_NE(e.message.find("is a placeholder"), std::string::npos) << e.message;
    EXPECT_EQ(e.message.find(token), std::string::npos) << "the message shows the token: " << e.message;
  }
  EXPECT_EQ(only_error("[admin]\ntoken = \"short\"\n").message, "must be at least 16 characters");
  const LoadResult real = parse("[admin]\ntoken = \"3f9a61c0d2b84e7f95a1c6d0e2b7f418\"\n");
  ASSERT_TRUE(real.config) << real.errors.front().to_string();
  EXPECT_EQ(real.config->admin.token, "3f9a61c0d2b84e7f95a1c6d0e2b7f418");
}

// One rule for plugin names, in the config and for LoadPlugin; the plugin directory defaults to
// the config's own.
TEST(Config, PluginNamesAndThePluginDirectory) {
  EXPECT_EQ(plugin_name_refusal("player-data"), "");
  for (const char* name : {"auth:lock", "Auth", "-x", "../x", "", "a b"}) {
    EXPECT_EQ(
        plugin_name_refusal(name),
        "'" + std::string(name) + "' is not a plugin name (lower-case letters, digits and '-', at most 63)");
  }
  EXPECT_EQ(only_error("[[plugin]]\nname = \"auth:lock\"\n").message, plugin_name_refusal("auth:lock"));
  for (const char* name : {"gameverse", "gameverse-health", "gameverse-x"}) {
    EXPECT_EQ(plugin_name_refusal(name),
              "'" + std::string(name) + "' is the host's own name; a plugin needs another");
  }
  EXPECT_EQ(parse("").config->host.plugin_dir, "/etc/gv");
  EXPECT_EQ(parse("[host]\nplugin_dir = \"plugins/../lib\"\n").config->host.plugin_dir, "/etc/gv/lib");
}

// The shipped production config serves TLS where it listens beyond loopback, and trusts no loopback.
TEST(Config, TheProductionConfigIsTheSafeOne) {
  LoadResult production = load_config_file(GV_CONFIG_DIR "/production.toml");
  ASSERT_TRUE(production.config) << production.errors.front().to_string();
  EXPECT_TRUE(production.config->server.tls.enabled());
  EXPECT_FALSE(production.config->admin.allow_loopback);
}

TEST(Config, RedisUrlsMayCarryAPasswordThatMessagesMask) {
  EXPECT_TRUE(parse("[redis]\nurl = \"redis://:pw@cache.internal:6379\"\n").config);
  EXPECT_TRUE(parse("[redis]\nurl = \"redis://game:pw@cache.internal:6379\"\n").config);
  ConfigError bad = only_error("[redis]\nurl = \"redis://:hunter2@cache.internal\"\n");
  EXPECT_EQ(bad.key, "redis.url");
  EXPECT_EQ(bad.message.find("hunter2"), std::string::npos) << bad.message;
  EXPECT_NE(bad.message.find("redis://:***@cache.internal"), std::string::npos) << bad.message;
  const LoadResult tls = parse("[redis]\nurl = \"rediss://cache.internal:6380\"\nca_file = \"tls/ca.pem\"\n");
  ASSERT_TRUE(tls.config) << tls.errors.front().to_string();
  EXPECT_EQ(tls.config->redis.ca_file, "/etc/gv/tls/ca.pem");
  ConfigError plaintext =
      only_error("[redis]\nurl = \"redis://cache.internal:6379\"\nca_file = \"ca.pem\"\n");
  EXPECT_EQ(plaintext.to_string(),
            "test.toml:3:11: redis.ca_file: is for TLS: the url must start with rediss://");
}

}  // namespace
}  // namespace gameverse::config

namespace gameverse::config {
namespace {

TEST(Config, HttpPortIsOffUnlessListenIsSet) {
  LoadResult empty = parse("");
  ASSERT_TRUE(empty.config);
  EXPECT_FALSE(empty.config->http.enabled());
  EXPECT_TRUE(empty.config->metrics.per_method);
  LoadResult set = parse(
      "[http]\nlisten = \"127.0.0.1:8080\"\nmax_connections = 3\nmax_header_bytes = 2048\nmax_body_bytes = "
      "0\n"
      "request_timeout_ms = 750\n[metrics]\nper_method = false\n");
  ASSERT_TRUE(set.config) << set.errors.front().to_string();
  EXPECT_TRUE(set.config->http.enabled());
  EXPECT_EQ(set.config->http.listen, "127.0.0.1:8080");
  EXPECT_EQ(set.config->http.max_connections, 3);
  EXPECT_EQ(set.config->http.max_header_bytes, 2048);
  EXPECT_EQ(set.config->http.max_body_bytes, 0);
  EXPECT_EQ(set.config->http.request_timeout_ms, 750);
  EXPECT_FALSE(set.config->metrics.per_method);
}

TEST(Config, HttpErrorsNameTheKeyAndValue) {
  ConfigError listen = only_error("[http]\nlisten = \"8080\"\n");
  EXPECT_EQ(listen.key, "http.listen");
  EXPECT_EQ(listen.where.line, 2u);
  EXPECT_EQ(listen.message, "'8080' is not an address with a TCP port, like 127.0.0.1:8080");
  EXPECT_EQ(only_error("[http]\nlisten = \"unix:/tmp/x\"\n").key, "http.listen");
  ConfigError connections = only_error("[http]\nmax_connections = 0\n");
  EXPECT_EQ(connections.key, "http.max_connections");
  EXPECT_EQ(connections.message, "must be between 1 and 100000, not 0");
  EXPECT_EQ(only_error("[http]\nmax_header_bytes = 10\n").key, "http.max_header_bytes");
  EXPECT_EQ(only_error("[http]\nrequest_timeout_ms = \"1s\"\n").message, "must be an integer, not a string");
  EXPECT_EQ(only_error("[http]\nport = 8080\n").key, "http.port");
  EXPECT_EQ(only_error("[metrics]\nper_method = 1\n").key, "metrics.per_method");
}

TEST(Config, TheGatewaysSettingsAreReadAndCheckedOriginByOrigin) {
  LoadResult set = parse(
      "[http]\nlisten = \"127.0.0.1:8080\"\ngateway = false\ngateway_timeout_ms = 500\nmax_streams = 4\n"
      "threads = 2\ncors_origins = [\"https://play.example\", \"http://[::1]:5173\", \"*\"]\n");
  ASSERT_TRUE(set.config) << set.errors.front().to_string();
  EXPECT_FALSE(set.config->http.gateway);
  EXPECT_EQ(set.config->http.gateway_timeout_ms, 500);
  EXPECT_EQ(set.config->http.max_streams, 4);
  EXPECT_EQ(set.config->http.threads, 2);
  EXPECT_EQ(set.config->http.cors_origins,
            (std::vector<std::string>{"https://play.example", "http://[::1]:5173", "*"}));
  EXPECT_FALSE(parse("").config->http.gateway);  // a port opened for /metrics serves no methods

  // A path, a trailing slash or a wildcard inside is no origin: the browser would never match it.
  ConfigError path =
      only_error("[http]\ncors_origins = [\n  \"https://ok.example\",\n  \"https://x.example/\"]\n");
  EXPECT_EQ(path.key, "http.cors_origins");
  EXPECT_EQ(path.where.line, 4u);
  EXPECT_EQ(
      path.message,
      "'https://x.example/' is not an origin like https://game.example or http://localhost:5173 (or \"*\")");
  EXPECT_EQ(only_error("[http]\ncors_origins = [\"https://*.example\"]\n").key, "http.cors_origins");
  EXPECT_EQ(only_error("[http]\ncors_origins = \"*\"\n").message,
            "must be an array of strings, not a string");
  EXPECT_EQ(only_error("[http]\ncors_origins = [1]\n").message, "must hold strings only, not an integer");
  EXPECT_EQ(only_error("[http]\nthreads = 0\n").key, "http.threads");
}

TEST(Config, TheShippedConfigServesHttpOnLoopback) {
  LoadResult result = load_config_file(GV_CONFIG_DIR "/gameverse.toml");
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->http.listen, "127.0.0.1:8080");
  EXPECT_TRUE(result.config->http.gateway);
  // Production's HTTP port is plaintext on every interface: no gateway (tokens) there by default.
  LoadResult production = load_config_file(GV_CONFIG_DIR "/production.toml");
  ASSERT_TRUE(production.config) << production.errors.front().to_string();
  EXPECT_FALSE(production.config->http.gateway);
}

// Secrets in files of their own, as Kubernetes and Docker mount them: *_file keys, relative to the
// config's directory, the trailing newline dropped; errors name the key, never the value.
TEST(Config, SecretsAreReadFromFiles) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("gv-secrets-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "token") << "3f9a61c0d2b84e7f95a1c6d0e2b7f418\n";
  std::ofstream(dir / "db") << "postgresql://gameverse:s3cret@db:5432/gameverse\n";
  std::ofstream(dir / "redis") << "redis://:pw@cache:6379";
  std::ofstream(dir / "empty") << "\n";
  std::ofstream(dir / "short") << "short";
  const auto with = [&](std::string_view text) { return parse_config(text, "test.toml", dir); };

  const LoadResult ok = with(
      "[store]\nbackend = \"postgresql\"\npostgresql_url_file = \"db\"\n[redis]\nurl_file = \"redis\"\n"
      "[cache]\nbackend = \"redis\"\n[admin]\ntoken_file = \"token\"\n");
  ASSERT_TRUE(ok.config) << ok.errors.front().to_string();
  EXPECT_EQ(ok.config->store.postgresql_url, "postgresql://gameverse:s3cret@db:5432/gameverse");
  EXPECT_EQ(ok.config->redis.url, "redis://:pw@cache:6379");
  EXPECT_EQ(ok.config->admin.token, "3f9a61c0d2b84e7f95a1c6d0e2b7f418");

  const auto error_of = [&](std::string_view text) {
    const LoadResult result = with(text);
    EXPECT_FALSE(result.config.has_value()) << text;
    EXPECT_EQ(result.errors.size(), 1u) << text;
    return result.errors.empty() ? ConfigError{} : result.errors.front();
  };
  const ConfigError missing = error_of("[admin]\ntoken_file = \"nope\"\n");
  EXPECT_EQ(missing.key, "admin.token_file");
  EXPECT_EQ(missing.where.line, 2u);
  EXPECT_NE(missing.message.find((dir / "nope").string()), std::string::npos) << missing.message;
  EXPECT_NE(error_of("[admin]\ntoken_file = \"empty\"\n").message.find("is empty"), std::string::npos);
  const ConfigError too_short = error_of("[admin]\ntoken_file = \"short\"\n");
  EXPECT_EQ(too_short.key, "admin.token_file");
  EXPECT_EQ(too_short.message, "must be at least 16 characters");
  const ConfigError both =
      error_of("[admin]\ntoken = \"3f9a61c0d2b84e7f95a1c6d0e2b7f418\"\ntoken_file = \"token\"\n");
  EXPECT_EQ(both.key, "admin.token_file");
  EXPECT_EQ(both.message, "set token or token_file, not both");
  EXPECT_EQ(error_of("[store]\nbackend = \"postgresql\"\npostgresql_url_file = \"nope\"\n").key,
            "store.postgresql_url_file");
  std::ofstream(dir / "bad-redis") << "http://cache:6379";
  EXPECT_EQ(error_of("[redis]\nurl_file = \"bad-redis\"\n").key, "redis.url_file");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gameverse::config
