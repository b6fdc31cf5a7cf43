#include "admin/admin_plugin.hpp"

#include "rpc/forwarding.hpp"

#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <mutex>

#include "config/config.hpp"
#include "gameverse/host/v1/admin.pb.h"
#include "platform/remote_calls.hpp"
#include "plugin/builtin.hpp"

namespace gameverse::admin {

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::host::v1;

// What the admin plugin reaches in the host; set by serve_admin before the plugin starts.
struct Wiring {
  plugin::PluginManager* manager = nullptr;
  AdminOptions options;
};

Wiring& wiring() {
  static Wiring instance;
  return instance;
}

int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

void fill(const plugin::PluginStatus& status, pb::PluginInfo& info) {
  info.set_name(status.name);
  info.set_path(status.path.string());
  info.set_enabled(status.enabled);
  info.set_loaded(status.loaded);
  info.set_abi_minor(status.abi_minor);
  info.set_description(status.description);
  for (const auto& method : status.methods) info.add_methods(method);
  for (const auto& dependency : status.dependencies) info.add_dependencies(dependency);
  info.set_last_error(status.last_error);
  for (const auto& record : status.generations) {
    pb::GenerationInfo* generation = info.add_generations();
    generation->set_number(record.number);
    generation->set_version(record.version);
    generation->set_file_sha256(record.file_hash);
    generation->set_state(plugin::to_string(record.state));
    generation->set_error(record.error);
    generation->set_loaded_at_unix_ms(unix_ms(record.loaded_at));
    generation->set_live_calls(record.live_calls);
  }
}

sdk::Status refused(const plugin::Outcome& outcome) {
  return {outcome.kind == plugin::Outcome::Kind::kNotFound ? sdk::StatusCode::kNotFound
                                                           : sdk::StatusCode::kFailedPrecondition,
          outcome.message};
}

class AdminPlugin final : public sdk::Plugin {
 public:
  explicit AdminPlugin(sdk::InitContext&) : manager_(*wiring().manager), options_(wiring().options) {
    listener_ = manager_.subscribe([this](const plugin::Event& event) { on_event(event); });
  }

  ~AdminPlugin() override {
    manager_.unsubscribe(listener_);
    end_watches();
  }

  // Loading, reloading and validating map files and build descriptor pools: they run on the
  // host's pool for blocking work, never on the thread that delivered the call.
  static void describe(sdk::PluginBuilder<AdminPlugin>& b) {
    // Open at the gate: check_access decides, see there.
    b.service("gameverse.host.v1.PluginAdmin")
        .unary("ListPlugins", &AdminPlugin::list, sdk::kPublic)
        .unary("GetPlugin", &AdminPlugin::get, sdk::kPublic)
        .blocking("LoadPlugin", &AdminPlugin::load, sdk::kPublic)
        .blocking("UnloadPlugin", &AdminPlugin::unload, sdk::kPublic)
        .blocking("ReloadPlugin", &AdminPlugin::reload, sdk::kPublic)
        .blocking("ValidateConfig", &AdminPlugin::validate, sdk::kPublic)
        .server_stream("WatchEvents", &AdminPlugin::watch, sdk::kPublic)
        .unary("ListRemotes", &AdminPlugin::remotes, sdk::kPublic);
  }

  sdk::Status remotes(sdk::CallContext& context, const pb::ListRemotesRequest&,
                      pb::ListRemotesResponse& response) {
    check_access(context);
    const platform::RemoteCalls* remote = options_.remote;
    response.set_enabled(remote != nullptr);
    if (remote == nullptr) return sdk::Status::ok();
    response.set_self_address(remote->self_address());
    response.set_pending_calls(remote->pending());
    for (const auto& view : remote->snapshot()) {
      pb::RemoteService* service = response.add_services();
      service->set_service(view.service);
      for (const auto& e : view.endpoints) {
        pb::RemoteEndpoint* endpoint = service->add_endpoints();
        endpoint->set_address(e.address);
        endpoint->set_source(e.source);
        endpoint->set_state(e.state);
        endpoint->set_ejected_for_ms(e.ejected_for_ms);
        endpoint->set_lease_left_ms(e.lease_left_ms);
        endpoint->set_outstanding(e.outstanding);
        endpoint->set_calls(e.calls);
        endpoint->set_failures(e.failures);
      }
    }
    return sdk::Status::ok();
  }

  sdk::Status list(sdk::CallContext& context, const pb::ListPluginsRequest&,
                   pb::ListPluginsResponse& response) {
    check_access(context);
    for (const auto& status : manager_.status()) fill(status, *response.add_plugins());
    return sdk::Status::ok();
  }

  sdk::Status get(sdk::CallContext& context, const pb::GetPluginRequest& request, pb::PluginInfo& response) {
    check_access(context);
    auto status = manager_.status(request.name());
    if (!status) return {sdk::StatusCode::kNotFound, "no plugin named '" + request.name() + "'"};
    fill(*status, response);
    return sdk::Status::ok();
  }

  sdk::Status load(sdk::CallContext& context, const pb::LoadPluginRequest& request,
                   pb::OperationResult& response) {
    check_access(context);
    if (std::string why = config::plugin_name_refusal(request.name()); !why.empty()) {
      return {sdk::StatusCode::kInvalidArgument, "name: " + why};
    }
    config::PluginConfig entry;
    if (auto configured = manager_.entry(request.name())) {
      entry = *configured;
    } else if (request.path().empty()) {
      return {sdk::StatusCode::kNotFound, "no plugin named '" + request.name() +
                                              "' in the config; give the path of its .so in " +
                                              options_.plugin_dir.string()};
    }
    entry.name = request.name();
    entry.enabled = true;
    if (entry.source_file.empty()) entry.source_file = "load request";
    if (entry.key_prefix.empty()) entry.key_prefix = "plugin";
    if (!request.path().empty()) {
      std::string why;
      entry.path = confine_to_plugin_dir(options_.plugin_dir, request.path(), why);
      if (!why.empty()) return {sdk::StatusCode::kPermissionDenied, why};
    }
    if (!request.config_toml().empty()) {
      try {
        entry.settings =
            toml::parse(std::string_view(request.config_toml()), std::string_view("config_toml"));
      } catch (const toml::parse_error& e) {
        return {sdk::StatusCode::kInvalidArgument, "config_toml:" + std::to_string(e.source().begin.line) +
                                                       ":" + std::to_string(e.source().begin.column) + ": " +
                                                       std::string(e.description())};
      }
    }
    const plugin::Outcome outcome = manager_.load(entry);
    if (!outcome.ok()) return refused(outcome);
    response.set_message("plugin '" + request.name() + "' loaded");
    response.set_generation(outcome.generation);
    return sdk::Status::ok();
  }

  sdk::Status unload(sdk::CallContext& context, const pb::UnloadPluginRequest& request,
                     pb::OperationResult& response) {
    check_access(context);
    const plugin::Outcome outcome = manager_.unload(request.name(), request.force());
    if (!outcome.ok()) return refused(outcome);
    response.set_message("plugin '" + request.name() + "' unloaded");
    return sdk::Status::ok();
  }

  sdk::Status reload(sdk::CallContext& context, const pb::ReloadPluginRequest& request,
                     pb::OperationResult& response) {
    check_access(context);
    const plugin::Outcome outcome = manager_.reload(request.name(), request.force());
    if (!outcome.ok()) return refused(outcome);
    response.set_message(outcome.kind == plugin::Outcome::Kind::kUnchanged
                             ? "plugin '" + request.name() + "' is unchanged on disk"
                             : "plugin '" + request.name() + "' reloaded");
    response.set_generation(outcome.generation);
    return sdk::Status::ok();
  }

  sdk::Status validate(sdk::CallContext& context, const pb::ValidateConfigRequest& request,
                       pb::ValidateConfigResponse& response) {
    check_access(context);
    const std::string source = request.source_name().empty() ? "config" : request.source_name();
    const std::filesystem::path base = std::filesystem::path(source).has_parent_path()
                                           ? std::filesystem::path(source).parent_path()
                                           : options_.config_dir;
    config::LoadResult result = config::parse_config(request.config_toml(), source, base);
    for (const auto& error : result.errors) add_problem(response, error);
    if (result.config) {
      for (const auto& entry : result.config->plugins) {
        if (!entry.enabled) continue;
        // Mapping a file runs its code: only files LoadPlugin could load are opened.
        std::string outside;
        config::PluginConfig confined = entry;
        confined.path = confine_to_plugin_dir(options_.plugin_dir, entry.path.string(), outside);
        if (!outside.empty()) {
          add_problem(response, {entry.source_file, entry.where, entry.key_prefix + ".path",
                                 "not checked: " + outside});
          continue;
        }
        try {
          plugin::Plugin::open(confined);  // maps the file, runs only its entry, checks the table
        } catch (const std::exception& e) {
          add_problem(response, {entry.source_file, entry.where, entry.key_prefix, e.what()});
        }
      }
    }
    response.set_valid(response.problems_size() == 0);
    return sdk::Status::ok();
  }

  void watch(sdk::CallContext& context, const pb::WatchEventsRequest&,
             sdk::ServerStream<pb::PluginEvent> stream) {
    check_access(context);
    uint64_t id = 0;
    {
      std::lock_guard lock(watchers_mu_);
      id = next_watcher_++;
    }
    // Outside the lock: the callback runs at once when the client has already gone.
    stream.on_cancel([this, id] {
      std::lock_guard lock(watchers_mu_);
      watchers_.erase(id);
    });
    std::lock_guard lock(watchers_mu_);
    watchers_.emplace(id, std::move(stream));
  }

 private:
  static void add_problem(pb::ValidateConfigResponse& response, const config::ConfigError& error) {
    pb::ConfigProblem* problem = response.add_problems();
    problem->set_file(error.file);
    problem->set_line(error.where.line);
    problem->set_column(error.where.column);
    problem->set_key(error.key);
    problem->set_message(error.message);
  }

  // The gate lets every caller through to here, and makes the caller with the [admin] token the
  // operator.
  void check_access(sdk::CallContext& context) const {
    const sdk::Principal caller = context.principal();
    const bool is_operator =
        caller.user_id == config::kOperatorRole &&
        std::find(caller.roles.begin(), caller.roles.end(), config::kOperatorRole) != caller.roles.end();
    // Through the HTTP gateway a loopback address may stand for anyone: a proxy's client, or a
    // browser page's.
    const bool via_gateway = !context.metadata(rpc::kViaGatewayKey).empty();
    if (std::string why = access_refusal(context.peer(), is_operator, options_.token_configured,
                                         options_.allow_loopback && !via_gateway);
        !why.empty()) {
      throw sdk::Error(sdk::StatusCode::kPermissionDenied, why);
    }
  }

  void on_event(const plugin::Event& event) {
    if (event.kind == plugin::Event::Kind::kStopping) {
      end_watches();
      return;
    }
    pb::PluginEvent message;
    message.set_time_unix_ms(unix_ms(event.time));
    message.set_plugin(event.plugin);
    message.set_generation(event.generation);
    message.set_kind(plugin::to_string(event.kind));
    message.set_message(event.message);
    std::lock_guard lock(watchers_mu_);
    std::erase_if(watchers_, [&](auto& entry) { return !entry.second.write(message); });
  }

  void end_watches() {
    std::map<uint64_t, sdk::ServerStream<pb::PluginEvent>> ending;
    {
      std::lock_guard lock(watchers_mu_);
      ending.swap(watchers_);
    }
    for (auto& [id, stream] : ending) stream.finish();
  }

  plugin::PluginManager& manager_;
  AdminOptions options_;
  int listener_ = 0;
  std::mutex watchers_mu_;
  uint64_t next_watcher_ = 1;
  std::map<uint64_t, sdk::ServerStream<pb::PluginEvent>> watchers_;
};

}  // namespace

bool is_loopback(std::string_view peer) {
  // gRPC writes IPv6 peers with the brackets escaped: "ipv6:%5B::1%5D:5000".
  for (const char* prefix :
       {"ipv4:127.", "ipv6:[::1]", "ipv6:%5B::1%5D", "ipv6:[::ffff:127.", "ipv6:%5B::ffff:127.", "unix:"}) {
    if (peer.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

std::string access_refusal(std::string_view peer, bool is_operator, bool token_configured,
                           bool allow_loopback) {
  if (is_operator || (allow_loopback && is_loopback(peer))) return "";
  std::string why = "the admin service needs the operator's credential from " + std::string(peer) + ": ";
  why += token_configured
             ? "send 'authorization: Bearer <the [admin] token>'"
             : "set [admin] token in the host's config and send it as 'authorization: Bearer <token>'";
  if (is_loopback(peer)) why += " (loopback callers need it too unless [admin] allow_loopback = true)";
  return why + "; game roles, admin included, do not administer the host";
}

std::filesystem::path confine_to_plugin_dir(const std::filesystem::path& plugin_dir,
                                            const std::string& requested, std::string& why) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path root = fs::weakly_canonical(plugin_dir, error);
  if (error) {
    why = "the plugin directory " + plugin_dir.string() + " cannot be resolved: " + error.message();
    return {};
  }
  if (root.filename().empty()) root = root.parent_path();  // "/plugins/" → "/plugins"
  const fs::path asked(requested);
  // canonical, not weakly_canonical: the file exists, and every link on the way is followed
  // ("missing/../link/x.so" would otherwise be tidied lexically past a link that leads out).
  const fs::path resolved = fs::canonical(asked.is_absolute() ? asked : root / asked, error);
  if (error) {
    why = "path '" + requested + "' cannot be resolved: " + error.message();
    return {};
  }
  // Compared by whole components, after symlinks are resolved: "/plugins-old" is not in "/plugins".
  const auto [in_root, in_resolved] =
      std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
  if (in_root != root.end() || in_resolved == resolved.end()) {
    why = "path '" + requested + "' resolves to " + resolved.string() + ", outside the plugin directory " +
          root.string() + " ([host] plugin_dir): LoadPlugin loads only files in it; copy the plugin there";
    return {};
  }
  if (!fs::is_regular_file(resolved, error)) {
    why = "path '" + requested + "' resolves to " + resolved.string() + ", which is not a file";
    return {};
  }
  return resolved;
}

plugin::Outcome serve_admin(plugin::PluginManager& manager, AdminOptions options) {
  wiring() = {&manager, std::move(options)};
  return plugin::serve_builtin<AdminPlugin>(manager, kAdminPluginName,
                                            "gameverse.host.v1.PluginAdmin: manages the host's plugins",
                                            "admin", {pb::ListPluginsRequest::descriptor()->file()});
}

}  // namespace gameverse::admin
