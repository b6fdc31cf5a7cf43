// gvctl: manages the plugins of a running GameVerse host through its admin service, and the
// roles of its accounts through the auth plugin, as the host's operator.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "scaffold.hpp"

namespace {

namespace pb = gameverse::host::v1;

// Exit codes: what a script can tell apart.
enum ExitCode : int {
  kOk = 0,
  kRefused = 1,      // the host answered no: a refused reload, an invalid config, an unknown plugin
  kUsage = 2,        // the command line is wrong
  kUnreachable = 3,  // no host answered at the address
};

struct Options {
  std::string addr;
  std::string token;
  bool json = false;
  int timeout_ms = 30000;
  std::string tls_ca;    // PEM file: talk TLS, trusting these CAs
  std::string tls_cert;  // PEM files of a client certificate, for hosts that require one
  std::string tls_key;
  std::string tls_server_name;  // the name the host's certificate must carry, when --addr is not it
};

std::string read_pem(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw CLI::ValidationError("cannot read " + file);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::shared_ptr<grpc::ChannelCredentials> credentials(const Options& options) {
  if (options.tls_ca.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = read_pem(options.tls_ca);
  if (!options.tls_cert.empty()) {
    ssl.pem_cert_chain = read_pem(options.tls_cert);
    ssl.pem_private_key = read_pem(options.tls_key);
  }
  return grpc::SslCredentials(ssl);
}

const char* env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

grpc::ChannelArguments channel_arguments(const Options& options) {
  grpc::ChannelArguments arguments;
  if (!options.tls_server_name.empty()) arguments.SetSslTargetNameOverride(options.tls_server_name);
  return arguments;
}

class Client {
 public:
  explicit Client(const Options& options)
      : options_(options),
        channel_(grpc::CreateCustomChannel(options.addr, credentials(options), channel_arguments(options))),
        stub_(pb::PluginAdmin::NewStub(channel_)) {}

  std::unique_ptr<grpc::ClientContext> context(bool streaming = false) const {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!streaming) {
      context->set_deadline(std::chrono::system_clock::now() +
                            std::chrono::milliseconds(options_.timeout_ms));
    }
    if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
    return context;
  }

  // Prints what went wrong and what to do, and returns the exit code.
  int fail(const grpc::Status& status) const {
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        std::cerr << "gvctl: no GameVerse host answered at " << options_.addr << " ("
                  << status.error_message() << "); is it running? Point --addr or GAMEVERSE_ADDR at it.\n";
        return kUnreachable;
      case grpc::StatusCode::PERMISSION_DENIED:
        std::cerr << "gvctl: " << status.error_message()
                  << "\n  pass the host's [admin] token with --token or GAMEVERSE_ADMIN_TOKEN.\n";
        return kRefused;
      case grpc::StatusCode::UNIMPLEMENTED:
        std::cerr << "gvctl: the host at " << options_.addr
                  << " does not serve the admin service (is [admin] enabled = false?)\n";
        return kRefused;
      default: std::cerr << "gvctl: " << status.error_message() << "\n"; return kRefused;
    }
  }

  pb::PluginAdmin::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  const Options& options() const { return options_; }

 private:
  const Options& options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::PluginAdmin::Stub> stub_;
};

std::string to_json(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string local_time(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&seconds, &tm);
  std::ostringstream out;
  out << std::put_time(&tm, "%Y-%m-%d %H:%M:%S");
  return out.str();
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      std::cout << row[i];
      if (i + 1 < row.size()) std::cout << std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << '\n';
  }
}

std::string state_of(const pb::PluginInfo& plugin) {
  if (!plugin.enabled()) return "disabled";
  if (!plugin.loaded()) return plugin.last_error().empty() ? "unloaded" : "refused";
  return plugin.generations(0).state();
}

int list(Client& client) {
  pb::ListPluginsResponse response;
  auto context = client.context();
  grpc::Status status = client.stub().ListPlugins(context.get(), pb::ListPluginsRequest(), &response);
  if (!status.ok()) return client.fail(status);
  if (client.options().json) {
    std::cout << to_json(response);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows{{"NAME", "STATE", "GEN", "VERSION", "METHODS", "CALLS", "PATH"}};
  for (const auto& plugin : response.plugins()) {
    const bool loaded = plugin.loaded() && plugin.generations_size() > 0;
    const auto& current = loaded ? plugin.generations(0) : pb::GenerationInfo::default_instance();
    rows.push_back({plugin.name(), state_of(plugin), loaded ? std::to_string(current.number()) : "-",
                    loaded ? current.version() : "-", std::to_string(plugin.methods_size()),
                    loaded ? std::to_string(current.live_calls()) : "-", plugin.path()});
  }
  print_table(rows);
  for (const auto& plugin : response.plugins()) {
    if (!plugin.last_error().empty())
      std::cout << "\n" << plugin.name() << ": " << plugin.last_error() << "\n";
  }
  return kOk;
}

int status(Client& client, const std::string& name) {
  pb::GetPluginRequest request;
  request.set_name(name);
  pb::PluginInfo plugin;
  auto context = client.context();
  grpc::Status status = client.stub().GetPlugin(context.get(), request, &plugin);
  if (!status.ok()) return client.fail(status);
  if (client.options().json) {
    std::cout << to_json(plugin);
    return kOk;
  }
  std::cout << "plugin:       " << plugin.name() << " (" << state_of(plugin) << ")\n"
            << "path:         " << plugin.path() << "\n";
  if (!plugin.description().empty()) std::cout << "description:  " << plugin.description() << "\n";
  if (plugin.loaded()) std::cout << "ABI:          1." << plugin.abi_minor() << "\n";
  for (const auto& method : plugin.methods()) std::cout << "method:       " << method << "\n";
  for (const auto& dependency : plugin.dependencies()) std::cout << "depends on:   " << dependency << "\n";
  if (!plugin.last_error().empty()) std::cout << "last error:   " << plugin.last_error() << "\n";
  if (plugin.generations_size() > 0) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows{
        {"GEN", "STATE", "VERSION", "LOADED", "CALLS", "SHA-256", "ERROR"}};
    for (const auto& g : plugin.generations()) {
      rows.push_back({std::to_string(g.number()), g.state(), g.version(), local_time(g.loaded_at_unix_ms()),
                      std::to_string(g.live_calls()), g.file_sha256().substr(0, 12), g.error()});
    }
    print_table(rows);
  }
  return kOk;
}

int report(Client& client, const grpc::Status& status, const pb::OperationResult& result) {
  if (!status.ok()) return client.fail(status);
  if (client.options().json) {
    std::cout << to_json(result);
  } else {
    std::cout << result.message();
    if (result.generation() != 0) std::cout << " (generation " << result.generation() << ")";
    std::cout << "\n";
  }
  return kOk;
}

int validate(Client& client, const std::string& file) {
  std::ifstream in(file);
  if (!in) {
    std::cerr << "gvctl: cannot read " << file << "\n";
    return kUsage;
  }
  std::ostringstream text;
  text << in.rdbuf();
  pb::ValidateConfigRequest request;
  request.set_config_toml(text.str());
  request.set_source_name(std::filesystem::absolute(file).string());
  pb::ValidateConfigResponse response;
  auto context = client.context();
  grpc::Status status = client.stub().ValidateConfig(context.get(), request, &response);
  if (!status.ok()) return client.fail(status);
  if (client.options().json) {
    std::cout << to_json(response);
  } else if (response.valid()) {
    std::cout << file << ": valid\n";
  } else {
    for (const auto& problem : response.problems()) {
      std::cout << problem.file();
      if (problem.line() > 0) std::cout << ":" << problem.line() << ":" << problem.column();
      std::cout << ": " << (problem.key().empty() ? "" : problem.key() + ": ") << problem.message() << "\n";
    }
  }
  return response.valid() ? kOk : kRefused;
}

int watch(Client& client) {
  auto context = client.context(true);
  auto reader = client.stub().WatchEvents(context.get(), pb::WatchEventsRequest());
  pb::PluginEvent event;
  while (reader->Read(&event)) {
    if (client.options().json) {
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(event, &json);
      std::cout << json << std::endl;
    } else {
      std::cout << local_time(event.time_unix_ms()) << "  " << event.plugin() << "  gen "
                << event.generation() << "  " << event.kind()
                << (event.message().empty() ? "" : "  " + event.message()) << std::endl;
    }
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? kOk : client.fail(status);
}

// Where each service the host calls on other hosts resolves now: one line per address, with where
// it came from ([[remote]] or the registry) and how it answers.
int remotes(Client& client) {
  pb::ListRemotesResponse response;
  auto context = client.context();
  const grpc::Status status = client.stub().ListRemotes(context.get(), pb::ListRemotesRequest(), &response);
  if (!status.ok()) return client.fail(status);
  if (client.options().json) {
    std::cout << to_json(response);
    return kOk;
  }
  if (!response.enabled()) {
    std::cout << "this host calls no other hosts (no [cluster] in its config)\n";
    return kOk;
  }
  std::cout << "this host: " << response.self_address()
            << "; forwarded calls in flight: " << response.pending_calls() << "\n";
  if (response.services().empty()) std::cout << "no service resolves to another host\n";
  for (const auto& service : response.services()) {
    std::cout << service.service() << "\n";
    for (const auto& e : service.endpoints()) {
      std::cout << "  " << e.address() << "  " << e.source() << "  " << e.state();
      if (e.state() == "ejected") std::cout << " (" << e.ejected_for_ms() << " ms more)";
      if (e.source() == "registry") std::cout << "  lease " << e.lease_left_ms() << " ms";
      std::cout << "  calls " << e.calls() << "  failed " << e.failures() << "  in flight " << e.outstanding()
                << "\n";
    }
  }
  return kOk;
}

// grpc.health.v1.Health/Check, as a container's HEALTHCHECK or a probe runs it: exit 0 when the
// host (the empty service) or the named service is SERVING, 1 when it answers anything else.
// Needs no token: health is open to every caller.
int health(Client& client, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(client.channel());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto context = client.context();
  const grpc::Status status = stub->Check(context.get(), request, &response);
  const std::string what = service.empty() ? "host" : service;
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    std::cerr << "gvctl: " << what << ": not served here\n";
    return kRefused;
  }
  if (!status.ok()) return client.fail(status);
  const std::string state = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (client.options().json) {
    std::cout << to_json(response);
  } else {
    std::cout << what << ": " << state << "\n";
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kOk : kRefused;
}

// GrantRole or RevokeRole on the auth plugin, as the operator: `account` is a username, or with
// `by_id` an account id. Never one and then the other: anyone can register a username that
// spells another account's id.
int set_role(Client& client, const std::string& account, bool by_id, const std::string& role, bool grant) {
  if (client.options().token.empty()) {
    std::cerr
        << "gvctl: " << (grant ? "grant-role" : "revoke-role")
        << " acts as the host's operator: pass its [admin] token with --token or GAMEVERSE_ADMIN_TOKEN\n";
    return kUsage;
  }
  auto auth = gameverse::auth::v1::Auth::NewStub(client.channel());
  gameverse::auth::v1::RoleRequest request;
  (by_id ? request.mutable_account_id() : request.mutable_username())->assign(account);
  request.set_role(role);
  auto context = client.context();
  gameverse::auth::v1::Account reply;
  const grpc::Status status = grant ? auth->GrantRole(context.get(), request, &reply)
                                    : auth->RevokeRole(context.get(), request, &reply);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    std::cerr << "gvctl: no account has the " << (by_id ? "id" : "username") << " '" << account << "'"
              << (by_id ? "" : " (give an account id with --id)") << "\n";
    return kRefused;
  }
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    std::cerr << "gvctl: the host at " << client.options().addr
              << " does not serve gameverse.auth.v1.Auth: is the auth plugin loaded?\n";
    return kRefused;
  }
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    std::cerr << "gvctl: " << status.error_message()
              << "\n  the host did not take the token as its [admin] token: check --token or "
                 "GAMEVERSE_ADMIN_TOKEN.\n";
    return kRefused;
  }
  if (!status.ok()) return client.fail(status);
  if (client.options().json) {
    std::cout << to_json(reply);
    return kOk;
  }
  std::string roles;
  for (const auto& r : reply.roles()) roles += (roles.empty() ? "" : ", ") + r;
  std::cout << "account " << reply.id() << (reply.username().empty() ? "" : " (" + reply.username() + ")")
            << ": roles " << (roles.empty() ? "none" : roles) << "\n";
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gvctl: manage the plugins of a running GameVerse host"};
  app.require_subcommand(1);
  // Options a subcommand does not know fall through to the app's: `gvctl list --json` and
  // `gvctl status echo --addr host:port` work as well as with the options before the subcommand.
  // Set before the subcommands are added: they inherit it.
  app.fallthrough();
  Options options;
  options.addr = env_or("GAMEVERSE_ADDR", "127.0.0.1:50051");
  options.token = env_or("GAMEVERSE_ADMIN_TOKEN", "");
  app.add_option("--addr", options.addr, "The host, host:port (env GAMEVERSE_ADDR)")->capture_default_str();
  app.add_option("--token", options.token, "The host's [admin] token (env GAMEVERSE_ADMIN_TOKEN)");
  app.add_flag("--json", options.json, "Print JSON instead of tables");
  app.add_option("--timeout-ms", options.timeout_ms, "Deadline of each request")->capture_default_str();
  options.tls_ca = env_or("GAMEVERSE_TLS_CA", "");
  options.tls_server_name = env_or("GAMEVERSE_TLS_SERVER_NAME", "");
  app.add_option("--tls-ca", options.tls_ca,
                 "Talk TLS to the host, trusting the CAs in this PEM file (env GAMEVERSE_TLS_CA)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-server-name", options.tls_server_name,
                 "The name the host's certificate must carry, when --addr is another one, e.g. 127.0.0.1 in "
                 "a probe (env GAMEVERSE_TLS_SERVER_NAME)")
      ->needs("--tls-ca");
  auto* cert = app.add_option("--tls-cert", options.tls_cert, "Client certificate (PEM), for mTLS")
                   ->check(CLI::ExistingFile)
                   ->needs("--tls-ca");
  app.add_option("--tls-key", options.tls_key, "Client certificate's private key (PEM)")
      ->check(CLI::ExistingFile)
      ->needs(cert);
  cert->needs("--tls-key");

  std::string name;
  std::string path;
  std::string config_toml;
  std::string config_file;
  std::string directory = ".";
  bool force = false;

  auto* list_cmd = app.add_subcommand("list", "List the plugins and their state");
  auto* status_cmd = app.add_subcommand("status", "Show one plugin: methods, generations, last error");
  status_cmd->add_option("name", name, "Plugin name")->required();
  auto* load_cmd = app.add_subcommand("load", "Load a plugin that is not loaded");
  load_cmd->add_option("name", name, "Plugin name")->required();
  load_cmd->add_option("--path", path, "The .so (default: the path in the host's config)");
  load_cmd->add_option("--config", config_toml,
                       "The plugin's config table as TOML, e.g. 'greeting = \"Hi\"'");
  auto* unload_cmd = app.add_subcommand("unload", "Unload a plugin; calls in flight finish first");
  unload_cmd->add_option("name", name, "Plugin name")->required();
  unload_cmd->add_flag("--force", force, "Unload even though other plugins depend on it");
  auto* reload_cmd = app.add_subcommand("reload", "Reload a plugin from its file without dropping calls");
  reload_cmd->add_option("name", name, "Plugin name")->required();
  reload_cmd->add_flag("--force", force, "Reload an unchanged file; accept incompatible message types");
  auto* validate_cmd = app.add_subcommand("validate", "Check a config file as the host would load it");
  validate_cmd->add_option("config", config_file, "The TOML file")->required();
  auto* watch_cmd = app.add_subcommand("watch", "Print plugin lifecycle events as they happen");
  std::string service;
  auto* health_cmd = app.add_subcommand(
      "health", "Check the host's gRPC health (exit 0 when SERVING): a container HEALTHCHECK or a probe");
  health_cmd->add_option("service", service,
                         "A service name, e.g. gameverse.echo.v1.Echo (default: the host)");
  std::string account;
  std::string role;
  auto* remotes_cmd = app.add_subcommand(
      "remotes", "Show where each service served by other hosts resolves ([[remote]] and the registry)");
  auto* grant_cmd =
      app.add_subcommand("grant-role", "Give an account a role (as the operator: needs --token)");
  auto* revoke_cmd = app.add_subcommand("revoke-role", "Take a role from an account (as the operator)");
  bool by_id = false;
  for (auto* command : {grant_cmd, revoke_cmd}) {
    command->add_option("account", account, "The account's username (its id with --id)")->required();
    command->add_option("role", role, "player, moderator or admin")->required();
    command->add_flag("--id", by_id, "The account is given by its id, not its username");
  }
  auto* new_cmd = app.add_subcommand("new", "Create a plugin project that builds against an installed SDK");
  new_cmd->add_option("name", name, "Plugin name: lower-case words of letters and digits joined by '-'")
      ->required();
  new_cmd->add_option("--dir", directory, "Where to create it")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kOk : kUsage;
  }

  if (new_cmd->parsed()) {
    try {
      const auto root = gameverse::gvctl::scaffold(name, directory);
      std::cout << "created " << root.string() << "\n"
                << "  cmake -S " << root.string() << " -B " << (root / "build").string()
                << " -DCMAKE_PREFIX_PATH=<GameVerse install prefix>\n"
                << "  cmake --build " << (root / "build").string() << "\n"
                << "  ctest --test-dir " << (root / "build").string() << "\n"
                << "  gvctl load " << name << " --path " << (root / "build" / (name + ".so")).string()
                << "\n";
      return kOk;
    } catch (const std::exception& e) {
      std::cerr << "gvctl: " << e.what() << "\n";
      return kRefused;
    }
  }

  std::unique_ptr<Client> made;
  try {
    made = std::make_unique<Client>(options);
  } catch (const std::exception& e) {  // a TLS file from the environment that cannot be read
    std::cerr << "gvctl: " << e.what() << "\n";
    return kUsage;
  }
  Client& client = *made;
  if (list_cmd->parsed()) return list(client);
  if (status_cmd->parsed()) return status(client, name);
  if (validate_cmd->parsed()) return validate(client, config_file);
  if (watch_cmd->parsed()) return watch(client);
  if (health_cmd->parsed()) return health(client, service);
  if (remotes_cmd->parsed()) return remotes(client);
  if (grant_cmd->parsed() || revoke_cmd->parsed())
    return set_role(client, account, by_id, role, grant_cmd->parsed());
  pb::OperationResult result;
  auto context = client.context();
  if (load_cmd->parsed()) {
    pb::LoadPluginRequest request;
    request.set_name(name);
    request.set_path(path.empty() ? "" : std::filesystem::absolute(path).string());
    request.set_config_toml(config_toml);
    return report(client, client.stub().LoadPlugin(context.get(), request, &result), result);
  }
  if (unload_cmd->parsed()) {
    pb::UnloadPluginRequest request;
    request.set_name(name);
    request.set_force(force);
    return report(client, client.stub().UnloadPlugin(context.get(), request, &result), result);
  }
  pb::ReloadPluginRequest request;
  request.set_name(name);
  request.set_force(force);
  return report(client, client.stub().ReloadPlugin(context.get(), request, &result), result);
}
