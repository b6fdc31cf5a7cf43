// The host's TOML configuration: loading and validation. Every error names file, line, column
// and key; an unknown key is an error, never ignored.
#pragma once

#include "config/access.hpp"

#include <toml++/toml.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gameverse::config {

struct SourcePosition {
  uint32_t line = 0;  // 1-based; 0 when unknown
  uint32_t column = 0;
};

struct ConfigError {
  std::string file;
  SourcePosition where;
  std::string key;  // dotted path: "server.listen", "plugin[2].config.max_count"
  std::string message;

  // "config/gameverse.toml:12:3: server.listen: <message>"
  std::string to_string() const;
};

// [server.tls]: the one port serves TLS when cert_file is set.
struct TlsConfig {
  std::filesystem::path cert_file;       // PEM: the server's certificate (chain)
  std::filesystem::path key_file;        // PEM: its private key
  std::filesystem::path client_ca_file;  // PEM: CAs that client certificates must chain to
  bool require_client_cert = false;      // mTLS: refuse clients without a valid certificate
  bool enabled() const { return !cert_file.empty(); }
  bool operator==(const TlsConfig&) const = default;
};

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  int64_t max_message_bytes = 4 * 1024 * 1024;
  int64_t worker_threads = 0;  // 0: one per usable CPU (platform::usable_cpus)
  int64_t drain_timeout_ms = 5000;
  int64_t health_watchers = 1000;  // open grpc.health.v1.Health/Watch streams; more: RESOURCE_EXHAUSTED
  TlsConfig tls;
};

struct HostSection {
  std::string log_level = "info";
  std::string log_format = "text";    // text | json (logging/format.hpp)
  std::filesystem::path plugin_dir;   // where a plugin without `path` is looked up, and the only
                                      // place LoadPlugin may load from; default: the config's directory
  std::filesystem::path staging_dir;  // where plugin files are copied before they are mapped
  std::filesystem::path data_dir;     // the host's own files (the SQLite store)
  bool watch = true;                  // reload on changes to the config and plugin files
  int64_t watch_debounce_ms = 200;    // quiet time after the last change before reloading
  bool ship_logs = true;              // send log lines to the plugin serving OTLP LogsService/Export
  int64_t ship_queue_lines = 10000;   // lines waiting to be shipped at most; more are dropped, counted
};

struct StoreSection {
  std::string backend = "sqlite";  // sqlite | postgresql
  std::string postgresql_url;      // a libpq connection string, for backend = "postgresql"
  int64_t pool_size = 8;           // PostgreSQL connections
  int64_t max_value_bytes = 1024 * 1024;
};

// [cache] and [pubsub]: in process ("memory", the default) or through [redis].
struct BusSection {
  std::string backend = "memory";  // memory | redis
};

struct RedisSection {
  std::string url;                // redis[s]://[[user]:password@]host:port, for a cache or pub/sub on Redis
  std::filesystem::path ca_file;  // rediss://: PEM CAs Redis's certificate must chain to; empty: the system's
};

// [blocking]: the host's pool for plugins' blocking work (store, cache, calls, hashing).
struct BlockingSection {
  int64_t threads = 0;              // 0: 4 per CPU the process may use, at least 8
  int64_t threads_per_plugin = 0;   // how many one plugin may use at once; 0: half the pool
  int64_t queue_per_plugin = 1024;  // work one plugin may have waiting; more is RESOURCE_EXHAUSTED
  int64_t queue_bytes_per_plugin = 64 * 1024 * 1024;  // and the request bytes that work may hold
};

struct AdminSection {
  bool enabled = true;
  std::string token;            // the operator's credential: "authorization: Bearer <token>"
  bool allow_loopback = false;  // true: loopback callers may administer the host without the token
};

// [http]: the HTTP port (/metrics, /healthz, /readyz); off while listen is empty.
struct HttpSection {
  std::string listen;                   // host:port, e.g. "127.0.0.1:8080"
  int64_t max_connections = 64;         // open at once; more are closed as soon as accepted
  int64_t max_header_bytes = 8 * 1024;  // a larger request head gets 431
  int64_t max_body_bytes = 64 * 1024;   // a larger request body gets 413
  int64_t request_timeout_ms = 10'000;  // a request must arrive whole (and a response go) within this
  // The JSON gateway and gRPC-Web: plugin methods at POST /<package.Service>/<Method>. Off unless
  // asked for: a port opened for /metrics alone must not start serving every method in plaintext.
  bool gateway = false;
  int64_t gateway_timeout_ms = 30'000;  // a unary call's deadline when the request names none
  int64_t max_streams = 16;             // server streams at once; calls at once are max_connections / 2
  // Origins whose pages may call the gateway from a browser (CORS): "https://game.example", or
  // "*" for any. Empty: none (same-origin pages only).
  std::vector<std::string> cors_origins;
  int64_t threads = 1;  // threads serving the port
  bool enabled() const { return !listen.empty(); }
};

// [metrics]: what the host measures beyond what plugins register.
struct MetricsSection {
  bool per_method = true;  // gRPC calls, status codes and latency per method
};

// [cluster]: how this host calls services that other hosts serve, and how they call it.
struct ClusterSection {
  std::string name = "default";        // hosts with the same name (and secret) form one cluster
  std::string secret;                  // shared by the hosts: a call that carries it may forward a caller
  std::string advertise;               // host:port other hosts reach this one at; empty: the bound address
  bool registry = false;               // announce and discover services through [redis]
  int64_t lease_ms = 10'000;           // an announcement lasts this long unless refreshed (every lease / 3)
  int64_t max_pending_calls = 10'000;  // forwarded calls in flight at once; more: RESOURCE_EXHAUSTED
  int64_t max_channels = 256;          // connections to other hosts (one per address)
  int64_t eject_ms = 1000;           // a host that stops answering is skipped this long, doubling up to 30 s
  std::filesystem::path ca_file;     // PEM: other hosts serve TLS with certificates chaining to it
  int64_t call_timeout_ms = 30'000;  // the deadline of a forwarded call that has none
  // Mutual TLS between hosts, on top of the signed calls: the certificate (and its key) this host
  // presents when it forwards a call, and whether a forwarded call must arrive with a client
  // certificate verified against [server.tls] client_ca_file, naming one of peer_names.
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  bool require_peer_certificate = false;
  // Lower-case DNS names or IP addresses, matched against the certificate's DNS or IP
  // subjectAltNames (its CN only when it has no DNS one); required with require_peer_certificate.
  std::vector<std::string> peer_names;
  bool enabled() const { return !secret.empty(); }
  bool operator==(const ClusterSection&) const = default;
};

// [[remote]]: a service that other hosts serve, at fixed addresses.
struct RemoteService {
  std::string service;                 // "gameverse.echo.v1.Echo"
  std::vector<std::string> addresses;  // host:port
  SourcePosition where;
};

struct PluginConfig {
  std::string name;
  std::filesystem::path path;  // absolute
  bool enabled = true;
  toml::table settings;  // [plugin.config], checked against the plugin's schema on load
  std::map<std::string, SourcePosition> settings_where;  // where each of its values stands
  // [plugin.access]: method full name → the policy that replaces the plugin's own.
  std::map<std::string, AccessPolicy> access;
  std::map<std::string, SourcePosition> access_where;
  std::string source_file;
  SourcePosition where;
  std::string key_prefix;  // "plugin[1]", for error messages about this entry
};

struct Config {
  std::string source_file;
  ServerConfig server;
  HostSection host;
  StoreSection store;
  BusSection cache;
  BusSection pubsub;
  RedisSection redis;
  BlockingSection blocking;
  AdminSection admin;
  HttpSection http;
  MetricsSection metrics;
  std::vector<PluginConfig> plugins;
  ClusterSection cluster;
  std::vector<RemoteService> remotes;
};

struct LoadResult {
  std::optional<Config> config;  // set only when errors is empty
  std::vector<ConfigError> errors;
};

// Reads and validates a config file. Relative paths in it are relative to its directory.
LoadResult load_config_file(const std::filesystem::path& file);

// Validates config text; `source_name` names it in errors, `base_dir` anchors relative paths.
LoadResult parse_config(std::string_view text, const std::string& source_name,
                        const std::filesystem::path& base_dir);

SourcePosition position_of(const toml::source_region& region);

// Why `name` cannot name a plugin ("" when it can): lower-case letters, digits and '-'. The one
// rule for the config and for plugins loaded at run time.
std::string plugin_name_refusal(std::string_view name);

}  // namespace gameverse::config
