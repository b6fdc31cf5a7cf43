// gameverse: the plugin host. Loads the plugins its config names and serves them on one port.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "admin/admin_plugin.hpp"
#include "config/config.hpp"
#include "http/gateway.hpp"
#include "http/host_endpoints.hpp"
#include "logging/format.hpp"
#include "platform/cache.hpp"
#include "platform/cpu_budget.hpp"
#include "platform/log_shipping.hpp"
#include "platform/metrics.hpp"
#include "platform/pubsub.hpp"
#include "platform/redis.hpp"
#include "platform/remote_calls.hpp"
#include "platform/service_registry.hpp"
#include "platform/store_service.hpp"
#include "platform/thread_priority.hpp"
#include "platform/timers.hpp"
#include "platform/work_pool.hpp"
#include "plugin/file_watcher.hpp"
#include "plugin/manager.hpp"
#include "rpc/gate.hpp"
#include "rpc/health.hpp"
#include "rpc/reflection.hpp"
#include "rpc/server.hpp"
#include "rpc/tls.hpp"

namespace {

// Written once the port is bound, by rename, so a reader never sees a half-written file.
void write_port_file(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << '\n';
  }
  std::filesystem::rename(tmp, path);
}

// Re-reads the config and brings the plugins in line with it; a config with errors changes
// nothing. Then reloads every plugin whose file changed.
// Settings the running host cannot change; a new value only takes effect after a restart.
void warn_about_restart_settings(const gameverse::config::Config& running,
                                 const gameverse::config::Config& next) {
  const auto& a = running.server;
  const auto& b = next.server;
  if (a.listen != b.listen || a.max_message_bytes != b.max_message_bytes ||
      a.worker_threads != b.worker_threads || a.drain_timeout_ms != b.drain_timeout_ms ||
      a.health_watchers != b.health_watchers || a.tls != b.tls ||
      running.host.staging_dir != next.host.staging_dir || running.host.log_format != next.host.log_format ||
      running.host.watch != next.host.watch || running.admin.enabled != next.admin.enabled ||
      running.admin.token != next.admin.token || running.admin.allow_loopback != next.admin.allow_loopback) {
    spdlog::warn(
        "[server], [admin] and [host] watch/staging/log_format settings changed in the config; they apply "
        "after a "
        "restart");
  }
  const auto& h = running.http;
  const auto& g = next.http;
  if (h.listen != g.listen || h.max_connections != g.max_connections ||
      h.max_header_bytes != g.max_header_bytes || h.max_body_bytes != g.max_body_bytes ||
      h.request_timeout_ms != g.request_timeout_ms || h.threads != g.threads || h.gateway != g.gateway ||
      h.gateway_timeout_ms != g.gateway_timeout_ms || h.max_streams != g.max_streams ||
      h.cors_origins != g.cors_origins || running.metrics.per_method != next.metrics.per_method) {
    spdlog::warn("[http] and [metrics] settings changed in the config; they apply after a restart");
  }
}

// [[remote]] applies at once; [cluster] itself only after a restart.
void apply_remotes(const gameverse::config::Config& running, const gameverse::config::Config& next,
                   gameverse::platform::RemoteCalls* remote) {
  if (running.cluster != next.cluster) {
    spdlog::warn("[cluster] settings changed in the config; they apply after a restart");
  }
  if (remote == nullptr) {
    if (!next.remotes.empty())
      spdlog::warn("[[remote]] needs a host started with [cluster]: restart to use it");
    return;
  }
  std::map<std::string, std::vector<std::string>> services;
  for (const auto& entry : next.remotes) services[entry.service] = entry.addresses;
  if (remote->set_static_services(std::move(services))) {
    spdlog::info("[[remote]] changed: {} service(s) listed now", next.remotes.size());
  }
}

void reload_from_disk(const std::string& config_path, const gameverse::config::Config& running,
                      gameverse::plugin::PluginManager& plugins, gameverse::platform::RemoteCalls* remote) {
  auto loaded = gameverse::config::load_config_file(config_path);
  if (!loaded.config) {
    for (const auto& error : loaded.errors) spdlog::error("config refused: {}", error.to_string());
    spdlog::error("the new config has {} error(s); nothing was changed", loaded.errors.size());
  } else {
    warn_about_restart_settings(running, *loaded.config);
    apply_remotes(running, *loaded.config, remote);
    plugins.apply_config(*loaded.config);
  }
  plugins.reload_changed();
}

// [blocking]: mostly waiting on the store, the cache and other services, so more threads than the
// CPUs this process may use.
gameverse::platform::WorkPool::Limits blocking_limits(const gameverse::config::BlockingSection& section) {
  const size_t cpus = gameverse::platform::usable_cpus().count;
  gameverse::platform::WorkPool::Limits limits;
  limits.threads = section.threads > 0 ? static_cast<size_t>(section.threads) : std::max<size_t>(8, 4 * cpus);
  limits.per_owner_threads = section.threads_per_plugin > 0 ? static_cast<size_t>(section.threads_per_plugin)
                                                            : std::max<size_t>(1, limits.threads / 2);
  limits.per_owner_queue = static_cast<size_t>(section.queue_per_plugin);
  limits.per_owner_queue_bytes = static_cast<size_t>(section.queue_bytes_per_plugin);
  return limits;
}

// The HTTP port's endpoints and limits ([http]); started by the caller.
std::unique_ptr<gameverse::http::HttpServer> make_http_port(const gameverse::config::Config& config,
                                                            gameverse::http::HostEndpoints endpoints,
                                                            gameverse::platform::Store& store,
                                                            gameverse::platform::CacheBackend& cache,
                                                            gameverse::platform::PubSub& pubsub,
                                                            gameverse::http::Gateway* gateway) {
  const bool on_redis = config.cache.backend == "redis" || config.pubsub.backend == "redis";
  const bool cache_on_redis = config.cache.backend == "redis";
  auto check = [&store, &cache, &pubsub, on_redis, cache_on_redis] {
    std::vector<std::string> problems;
    try {
      store.backend().get("host", "readiness", "probe");
    } catch (const std::exception& e) {
      problems.push_back("the store (" + store.backend().name() + ") is unreachable: " + e.what());
    }
    try {
      if (cache_on_redis) {
        cache.get("gameverse:readiness");
      } else if (on_redis) {
        pubsub.publish("gameverse.readiness", "");
      }
    } catch (const std::exception& e) {
      problems.push_back(std::string("Redis is unreachable: ") + e.what());
    }
    return problems;
  };
  // Off the HTTP thread: a store that hangs must not hold /healthz.
  auto watch = std::make_shared<gameverse::http::DependencyWatch>(check, std::chrono::seconds(1));
  endpoints.unreachable_dependencies = [watch] { return watch->problems(); };
  gameverse::http::Router router;
  gameverse::http::add_host_endpoints(router, std::move(endpoints));
  if (gateway != nullptr) gateway->serve(router);
  gameverse::http::Limits limits;
  limits.max_connections = static_cast<size_t>(config.http.max_connections);
  limits.max_header_bytes = static_cast<uint32_t>(config.http.max_header_bytes);
  limits.max_body_bytes = static_cast<uint64_t>(config.http.max_body_bytes);
  limits.request_timeout = std::chrono::milliseconds(config.http.request_timeout_ms);
  limits.threads = static_cast<size_t>(config.http.threads);
  return std::make_unique<gameverse::http::HttpServer>(config.http.listen, limits, std::move(router));
}

std::unique_ptr<gameverse::platform::Store> open_store(const gameverse::config::Config& config) {
  std::unique_ptr<gameverse::platform::StoreBackend> backend;
  if (config.store.backend == "postgresql") {
    backend = gameverse::platform::open_postgres_store(config.store.postgresql_url,
                                                       static_cast<int>(config.store.pool_size));
  } else {
    std::filesystem::create_directories(config.host.data_dir);
    backend = gameverse::platform::open_sqlite_store((config.host.data_dir / "gameverse.db").string());
  }
  spdlog::info("store: {} at schema version {}", backend->name(), backend->schema_version());
  gameverse::platform::StoreLimits limits;
  limits.max_value_bytes = static_cast<size_t>(config.store.max_value_bytes);
  return std::make_unique<gameverse::platform::Store>(std::move(backend), limits);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GameVerse: a plugin host for game backends"};
  std::string config_path = "config/gameverse.toml";
  std::string listen;
  std::string port_file;
  std::string http_port_file;
  std::string log_level;
  std::string log_format;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "The TOML config file")->capture_default_str();
  app.add_option("--listen", listen, "Override [server] listen, e.g. 127.0.0.1:0");
  app.add_option("--port-file", port_file, "Write the bound port to this file once serving");
  app.add_option("--http-port-file", http_port_file, "Write the bound [http] port to this file once serving");
  app.add_option("--log-level", log_level, "Override [host] log_level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--log-format", log_format, "Override [host] log_format")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--check", check_only, "Validate the config and load every plugin, then exit");
  CLI11_PARSE(app, argc, argv);

  auto loaded = gameverse::config::load_config_file(config_path);
  if (!loaded.config) {
    for (const auto& error : loaded.errors) std::cerr << "error: " << error.to_string() << '\n';
    std::cerr << "gameverse: the config has " << loaded.errors.size() << " error(s); nothing was started\n";
    return 2;
  }
  gameverse::config::Config& config = *loaded.config;
  const gameverse::config::Config file_config = config;  // before command-line overrides
  if (!listen.empty()) config.server.listen = listen;
  gameverse::logging::setup_host_logging(
      log_level.empty() ? config.host.log_level : log_level,
      *gameverse::logging::parse_log_format(log_format.empty() ? config.host.log_format : log_format));

  // Signals are taken by sigwait on the main thread; every thread started later inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<gameverse::platform::Store> store;
  try {
    store = open_store(config);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  std::unique_ptr<gameverse::platform::CacheBackend> cache;
  std::unique_ptr<gameverse::platform::PubSub> pubsub;
  try {
    cache = config.cache.backend == "redis"
                ? gameverse::platform::open_redis_cache(config.redis.url, config.redis.ca_file.string())
                : gameverse::platform::open_memory_cache();
    pubsub = config.pubsub.backend == "redis"
                 ? gameverse::platform::open_redis_pubsub(config.redis.url, config.redis.ca_file.string())
                 : gameverse::platform::open_memory_pubsub();
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  spdlog::info("cache: {}; pub/sub: {}{}", cache->name(), pubsub->name(),
               config.cache.backend == "redis" || config.pubsub.backend == "redis"
                   ? " at " + gameverse::platform::redacted_redis_url(config.redis.url)
                   : "");
  gameverse::platform::TimerService timers;
  gameverse::platform::MetricsRegistry metrics;
  gameverse::platform::WorkPool blocking(blocking_limits(config.blocking), &metrics);
  spdlog::info("blocking work: {} threads, {} per plugin, {} queued per plugin", blocking.limits().threads,
               blocking.limits().per_owner_threads, blocking.limits().per_owner_queue);
  gameverse::platform::Platform platform{.store = store.get(),
                                         .timers = &timers,
                                         .metrics = &metrics,
                                         .cache = cache.get(),
                                         .pubsub = pubsub.get(),
                                         .blocking = &blocking,
                                         .max_value_bytes = static_cast<size_t>(config.store.max_value_bytes),
                                         .routes = {}};
  // Log lines queue from here on, so the logging plugin gets the host's start-up too.
  std::shared_ptr<gameverse::platform::LogShipper> log_shipper;
  if (config.host.ship_logs) {
    char host_name[256] = {};
    gethostname(host_name, sizeof host_name - 1);
    log_shipper = std::make_shared<gameverse::platform::LogShipper>(
        gameverse::platform::LogShippingOptions{
            .queue_lines = static_cast<size_t>(config.host.ship_queue_lines), .host_name = host_name},
        platform);
    spdlog::default_logger()->sinks().push_back(log_shipper->sink());
  }
  // Calls to services other hosts serve ([cluster], [[remote]], the registry).
  std::unique_ptr<gameverse::platform::RemoteCalls> remote;
  if (config.cluster.enabled()) {
    gameverse::platform::RemoteOptions options;
    options.secret = config.cluster.secret;
    // The CAs and this host's client certificate, checked now: a bad file is named at start, not
    // found out by the first forwarded call.
    try {
      if (!config.cluster.ca_file.empty())
        options.ca_pem = gameverse::rpc::read_ca_file(config.cluster.ca_file);
    } catch (const gameverse::rpc::TlsFileError& e) {
      spdlog::critical("[cluster] ca_file: {}", e.what());
      return 1;
    }
    try {
      if (!config.cluster.cert_file.empty()) {
        auto pair = gameverse::rpc::read_key_pair(config.cluster.cert_file, config.cluster.key_file);
        options.cert_pem = std::move(pair.cert_pem);
        options.key_pem = std::move(pair.key_pem);
      }
    } catch (const gameverse::rpc::TlsFileError& e) {
      spdlog::critical("[cluster] {}: {}", e.key_file() ? "key_file" : "cert_file", e.what());
      return 1;
    }
    options.max_pending_calls = static_cast<size_t>(config.cluster.max_pending_calls);
    options.max_channels = static_cast<size_t>(config.cluster.max_channels);
    options.eject_base = std::chrono::milliseconds(config.cluster.eject_ms);
    options.call_timeout = std::chrono::milliseconds(config.cluster.call_timeout_ms);
    if (options.ca_pem.empty()) {
      spdlog::warn(
          "[cluster] has no ca_file: calls between hosts travel in plaintext, their bodies and callers "
          "visible to "
          "anyone on the network between them (each call is signed, the secret itself never travels); set "
          "ca_file and serve TLS ([server.tls]) on every host");
    }
    for (const auto& entry : config.remotes) options.static_services[entry.service] = entry.addresses;
    remote = std::make_unique<gameverse::platform::RemoteCalls>(std::move(options));
    platform.remote = remote.get();
  }
  gameverse::plugin::PluginManager plugins(
      {config.host.staging_dir, std::chrono::milliseconds(config.server.drain_timeout_ms), &platform});
  platform.routes = [&plugins] { return plugins.routes(); };
  gameverse::http::count_plugin_events(plugins, metrics);
  const auto outcomes = plugins.load_all(config);
  const size_t refused = static_cast<size_t>(
      std::count_if(outcomes.begin(), outcomes.end(), [](const auto& o) { return !o.ok(); }));
  if (check_only) {
    plugins.unload_all();
    std::cout << (refused == 0 ? "config and plugins are valid\n" : "");
    return refused == 0 ? 0 : 1;
  }

  // Health Watch and reflection, built in; before admin, which must come last (plugin/builtin.hpp).
  for (const auto& builtin :
       {gameverse::rpc::serve_health_watch(plugins, static_cast<size_t>(config.server.health_watchers)),
        gameverse::rpc::serve_reflection(plugins)}) {
    if (!builtin.ok()) spdlog::error("{} did not start: {}", builtin.plugin, builtin.message);
  }
  if (config.admin.enabled) {
    const auto admin = gameverse::admin::serve_admin(
        plugins, {!config.admin.token.empty(), std::filesystem::absolute(config_path).parent_path(),
                  config.host.plugin_dir, config.admin.allow_loopback, remote.get()});
    if (!admin.ok()) spdlog::error("the admin service did not start: {}", admin.message);
  }

  std::vector<std::string> unary_methods;
  {
    // Held for the loop (see the registry's below), and only for it: a route holds its generation.
    const auto routes = plugins.routes();
    for (const auto& [method, route] : *routes) {
      if (route.kind == GV_CALL_UNARY) unary_methods.push_back(method);
    }
  }
  gameverse::rpc::Server server(
      config.server, [&plugins] { return plugins.routes(); }, std::move(unary_methods));
  // The gate verifies access tokens with the keys the auth plugin publishes: fetched now, and
  // again whenever a plugin (re)starts serving, in case it is the one that publishes them.
  gameverse::rpc::Gate gate(platform);
  gate.set_operator_token(config.admin.token);
  if (gate.refresh_keys()) spdlog::info("gate: {} token verification key(s)", gate.key_count());
  plugins.subscribe([&gate](const gameverse::plugin::Event& event) {
    if (event.kind == gameverse::plugin::Event::Kind::kServing) gate.refresh_keys_soon();
  });
  server.set_gate(&gate);
  server.set_cluster_secret(config.cluster.secret);
  server.set_cluster_peers({config.cluster.require_peer_certificate, config.cluster.peer_names});
  gameverse::rpc::CallMetrics call_metrics;
  if (config.metrics.per_method) server.set_call_metrics(&call_metrics);
  int port = 0;
  try {
    port = server.start();
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    plugins.unload_all();
    return 1;
  }
  spdlog::info("serving {} methods of {} plugins on {} (port {}, {}){}", plugins.routes()->size(),
               outcomes.size() - refused, config.server.listen, port,
               !config.server.tls.enabled()            ? "plaintext"
               : config.server.tls.require_client_cert ? "TLS, client certificates required"
                                                       : "TLS",
               refused == 0 ? "" : fmt::format("; {} plugins refused", refused));
  // This host in the registry, as the other hosts reach it.
  // Shared: plugin events reach it weakly, and the manager emits them until it is gone.
  std::shared_ptr<gameverse::platform::ServiceRegistry> registry;
  if (remote) {
    std::string advertise = config.cluster.advertise;
    if (advertise.empty()) {
      const std::string host = config.server.listen.substr(0, config.server.listen.rfind(':'));
      if (host == "0.0.0.0" || host == "[::]" || host.empty() || port == 0) {
        spdlog::critical(
            "[cluster] advertise is needed: [server] listen = \"{}\" does not say how other hosts "
            "reach this one",
            config.server.listen);
        server.shutdown(std::chrono::milliseconds(0));
        plugins.unload_all();
        return 1;
      }
      advertise = host + ":" + std::to_string(port);
    }
    remote->set_self_address(advertise);
    if (config.cluster.registry) {
      try {
        registry = std::make_shared<gameverse::platform::ServiceRegistry>(
            gameverse::platform::parse_redis_url(config.redis.url),
            gameverse::platform::RegistryOptions{.cluster = config.cluster.name,
                                                 .address = advertise,
                                                 .secret = config.cluster.secret,
                                                 .lease = std::chrono::milliseconds(config.cluster.lease_ms)},
            *remote, [&plugins] {
              std::set<std::string> services;
              // Held for the loop: a range-for over *routes() would keep only the table, which a
              // load or unload on another thread may free meanwhile.
              const auto routes = plugins.routes();
              for (const auto& [method, route] : *routes) {
                if (route.plugin->name().starts_with("gameverse-")) continue;  // every host serves its own
                services.emplace(gameverse::platform::service_of(method));
              }
              return services;
            });
      } catch (const std::exception& e) {
        spdlog::critical("service registry: {}", e.what());
        server.shutdown(std::chrono::milliseconds(0));
        plugins.unload_all();
        return 1;
      }
      plugins.subscribe([weak = std::weak_ptr(registry)](const gameverse::plugin::Event& event) {
        if (event.kind != gameverse::plugin::Event::Kind::kServing &&
            event.kind != gameverse::plugin::Event::Kind::kUnloaded) {
          return;
        }
        if (auto live = weak.lock()) live->refresh_soon();
      });
    }
    spdlog::info("cluster '{}': this host is {}; {} service(s) in [[remote]]{}", config.cluster.name,
                 advertise, config.remotes.size(), registry ? "; announcing in the registry" : "");
  }
  std::atomic<bool> stopping{false};
  std::unique_ptr<gameverse::http::Gateway> gateway;
  std::unique_ptr<gameverse::http::HttpServer> http;
  if (config.http.enabled()) {
    if (config.http.gateway && config.server.tls.require_client_cert) {
      spdlog::warn(
          "[http] gateway = true serves plugin methods in plaintext, without the client certificates "
          "[server.tls] require_client_cert asks for on the gRPC port");
    }
    if (config.http.gateway) {
      gateway = std::make_unique<gameverse::http::Gateway>(
          [&plugins] { return plugins.routes(); }, server.in_process_channel(),
          gameverse::http::GatewayOptions{
              std::chrono::milliseconds(config.http.gateway_timeout_ms), config.http.cors_origins,
              server.forwarding_key(),
              static_cast<size_t>(std::max<int64_t>(1, config.http.max_connections / 2)),
              static_cast<size_t>(config.http.max_streams)},
          gameverse::http::DirectCalls{&platform, &gate,
                                       config.metrics.per_method ? &call_metrics : nullptr});
    }
    http = make_http_port(config,
                          {.metrics = &metrics,
                           .call_metrics = config.metrics.per_method ? &call_metrics : nullptr,
                           .plugins = &plugins,
                           .stopping = &stopping,
                           .unreachable_dependencies = {}},
                          *store, *cache, *pubsub, gateway.get());
    try {
      const int http_port = http->start();
      spdlog::info("HTTP (/metrics, /healthz, /readyz{}) on {} (port {})",
                   gateway ? ", the JSON and gRPC-Web gateway" : "", config.http.listen, http_port);
      if (!http_port_file.empty()) write_port_file(http_port_file, http_port);
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      server.shutdown(std::chrono::milliseconds(0));
      plugins.unload_all();
      return 1;
    }
  }
  if (log_shipper) log_shipper->start();
  if (!port_file.empty()) write_port_file(port_file, port);

  // Changes to the config or a plugin file reload what changed, as SIGHUP does.
  std::unique_ptr<gameverse::plugin::FileWatcher> watcher;
  auto watched = [&] {
    auto files = plugins.watched_files();
    files.emplace_back(config_path);
    return files;
  };
  if (config.host.watch) {
    watcher = std::make_unique<gameverse::plugin::FileWatcher>(
        std::chrono::milliseconds(config.host.watch_debounce_ms), watched, [&] {
          spdlog::info("files changed on disk: reloading");
          reload_from_disk(config_path, file_config, plugins, remote.get());
        });
  }

  // From here the main thread only waits for signals and runs SIGHUP reloads: background work.
  gameverse::platform::lower_this_thread_priority();
  for (;;) {
    int signal = 0;
    sigwait(&signals, &signal);
    if (signal == SIGHUP) {
      spdlog::info("SIGHUP received: reloading {} and changed plugin files", config_path);
      reload_from_disk(config_path, file_config, plugins, remote.get());
      if (watcher) watcher->refresh();
      continue;
    }
    spdlog::info("{} received: draining calls for up to {} ms", signal == SIGINT ? "SIGINT" : "SIGTERM",
                 config.server.drain_timeout_ms);
    break;
  }
  watcher.reset();
  registry.reset();  // withdrawn: the other hosts stop sending calls here
  stopping = true;
  plugins.notify_stopping();
  const auto drain_deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config.server.drain_timeout_ms);
  if (gateway && !gateway->stop_and_wait(drain_deadline)) {
    spdlog::warn("HTTP calls still ran at the drain deadline; they end as cancelled");
  }
  server.shutdown(std::chrono::duration_cast<std::chrono::milliseconds>(std::max(
      drain_deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero())));
  if (http) http->stop();
  if (log_shipper) log_shipper->stop();  // what is queued goes while the logging plugin still serves
  if (remote) remote->stop();            // calls still out end as cancelled while their plugins are loaded
  plugins.unload_all();
  spdlog::info("stopped");
  return 0;
}
