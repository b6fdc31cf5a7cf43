#include "config/config.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <unistd.h>

#include "logging/format.hpp"
#include "platform/cluster_auth.hpp"
#include "platform/redis.hpp"

namespace gameverse::config {

std::string ConfigError::to_string() const {
  std::ostringstream out;
  out << file;
  if (where.line > 0) out << ':' << where.line << ':' << where.column;
  out << ": ";
  if (!key.empty()) out << key << ": ";
  out << message;
  return out.str();
}

SourcePosition position_of(const toml::source_region& region) {
  return {region.begin.line, region.begin.column};
}

namespace {

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

// Walks one table, reporting each error with the file, the node's position and its dotted key.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, const std::string& file,
              std::vector<ConfigError>& errors)
      : table_(table), prefix_(std::move(prefix)), file_(file), errors_(errors) {}

  std::string key_path(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
  }

  void error_at(const toml::node& node, std::string_view key, std::string message) {
    errors_.push_back({file_, position_of(node.source()), key_path(key), std::move(message)});
  }

  // Reports every key not in `known`.
  void reject_unknown(std::initializer_list<std::string_view> known) {
    for (auto&& [key, node] : table_) {
      bool found = false;
      for (auto k : known) found = found || key.str() == k;
      if (!found) {
        std::string list;
        for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        errors_.push_back({file_, position_of(key.source()), key_path(key.str()),
                           "unknown key (expected one of: " + list + ")"});
      }
    }
  }

  void read_string(std::string_view key, std::string& out) {
    if (const toml::node* node = table_.get(key)) {
      if (auto v = node->as_string()) {
        out = v->get();
      } else {
        error_at(*node, key, "must be a string, not " + std::string(type_name(node->type())));
      }
    }
  }

  void read_bool(std::string_view key, bool& out) {
    if (const toml::node* node = table_.get(key)) {
      if (auto v = node->as_boolean()) {
        out = v->get();
      } else {
        error_at(*node, key, "must be a boolean, not " + std::string(type_name(node->type())));
      }
    }
  }

  void read_int(std::string_view key, int64_t& out, int64_t min, int64_t max) {
    if (const toml::node* node = table_.get(key)) {
      if (auto v = node->as_integer()) {
        if (v->get() < min || v->get() > max) {
          error_at(*node, key,
                   "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", not " +
                       std::to_string(v->get()));
        } else {
          out = v->get();
        }
      } else {
        error_at(*node, key, "must be an integer, not " + std::string(type_name(node->type())));
      }
    }
  }

  void read_string_list(std::string_view key, std::vector<std::string>& out) {
    const toml::node* node = table_.get(key);
    if (node == nullptr) return;
    const toml::array* array = node->as_array();
    if (array == nullptr) {
      error_at(*node, key, "must be an array of strings, not " + std::string(type_name(node->type())));
      return;
    }
    out.clear();
    for (const auto& item : *array) {
      if (const auto* value = item.as_string()) {
        out.push_back(value->get());
      } else {
        error_at(item, key, "must hold strings only, not " + std::string(type_name(item.type())));
      }
    }
  }

  const toml::table* sub_table(std::string_view key) {
    const toml::node* node = table_.get(key);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) {
      error_at(*node, key, "must be a table, not " + std::string(type_name(node->type())));
      return nullptr;
    }
    return node->as_table();
  }

 private:
  const toml::table& table_;
  std::string prefix_;
  const std::string& file_;
  std::vector<ConfigError>& errors_;
};

bool valid_listen_address(const std::string& address) {
  static const std::regex pattern(R"(^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+|unix:.+):?([0-9]{1,5})?$)");
  if (address.rfind("unix:", 0) == 0) return address.size() > 5;
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return false;
  const std::string port = address.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5) return false;
  return std::stoi(port) <= 65535 && std::regex_match(address, pattern);
}

// Values copied from an example instead of a secret: README's and production.toml's ("<...>"), and the
// usual ones. A token that contains one is refused.
std::string placeholder_in(const std::string& value) {
  std::string lower = value;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* word : {"replace", "example", "changeme", "change-me", "change_me", "placeholder",
                           "at-least", "your-", "secret-here", "xxxxxxxx", "openssl", "<"}) {
    if (lower.find(word) != std::string::npos) return word;
  }
  return "";
}

// `<key>_file`: the value kept in a file of its own, as Kubernetes and Docker mount secrets. The
// whole file less trailing white space; relative to the config's directory. Errors name the key and
// never echo the value. Returns the node that set the value (the key's or the file key's), if any.
const toml::node* read_secret(TableReader& reader, const toml::table& table, std::string_view key,
                              const std::filesystem::path& base_dir, std::string& out) {
  const std::string file_key = std::string(key) + "_file";
  const toml::node* file_node = table.get(file_key);
  if (file_node == nullptr) {
    reader.read_string(key, out);
    return table.get(key);
  }
  if (table.contains(key)) {
    reader.error_at(*file_node, file_key, "set " + std::string(key) + " or " + file_key + ", not both");
    return nullptr;
  }
  std::string name;
  reader.read_string(file_key, name);
  if (name.empty()) {
    if (file_node->is_string()) reader.error_at(*file_node, file_key, "must name a file");
    return nullptr;
  }
  const std::filesystem::path path = (base_dir / name).lexically_normal();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    reader.error_at(*file_node, file_key,
                    "cannot read " + path.string() + ": " + std::string(std::strerror(errno)));
    return nullptr;
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
  if (value.empty()) {
    reader.error_at(*file_node, file_key, path.string() + " is empty");
    return nullptr;
  }
  out = std::move(value);
  return file_node;
}

void read_tls(const toml::table& table, const std::string& file, const std::filesystem::path& base_dir,
              Config& config, std::vector<ConfigError>& errors) {
  TableReader reader(table, "server.tls", file, errors);
  reader.reject_unknown({"cert_file", "key_file", "client_ca_file", "require_client_cert"});
  TlsConfig& tls = config.server.tls;
  for (auto [key, path] : {std::pair{"cert_file", &tls.cert_file}, std::pair{"key_file", &tls.key_file},
                           std::pair{"client_ca_file", &tls.client_ca_file}}) {
    std::string value;
    reader.read_string(key, value);
    if (!value.empty()) *path = (base_dir / value).lexically_normal();
  }
  reader.read_bool("require_client_cert", tls.require_client_cert);
  const SourcePosition where = position_of(table.source());
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    errors.push_back({file, where, tls.cert_file.empty() ? "server.tls.cert_file" : "server.tls.key_file",
                      "TLS needs both cert_file and key_file"});
  }
  if (tls.require_client_cert && tls.client_ca_file.empty()) {
    errors.push_back({file, where, "server.tls.client_ca_file",
                      "required when require_client_cert = true: the CAs client certificates must chain to"});
  }
  if (!tls.client_ca_file.empty() && tls.cert_file.empty()) {
    errors.push_back(
        {file, where, "server.tls.cert_file", "client certificates need TLS: set cert_file and key_file"});
  }
}

void read_server(const toml::table& table, const std::string& file, const std::filesystem::path& base_dir,
                 Config& config, std::vector<ConfigError>& errors) {
  TableReader reader(table, "server", file, errors);
  reader.reject_unknown(
      {"listen", "max_message_bytes", "worker_threads", "drain_timeout_ms", "health_watchers", "tls"});
  if (const toml::table* tls = reader.sub_table("tls")) read_tls(*tls, file, base_dir, config, errors);
  reader.read_string("listen", config.server.listen);
  if (table.contains("listen") && table["listen"].is_string() &&
      !valid_listen_address(config.server.listen)) {
    reader.error_at(*table.get("listen"), "listen",
                    "'" + config.server.listen + "' is not an address with a port, like 127.0.0.1:50051");
  }
  reader.read_int("max_message_bytes", config.server.max_message_bytes, 1024, INT32_MAX);
  reader.read_int("worker_threads", config.server.worker_threads, 0, 256);
  reader.read_int("drain_timeout_ms", config.server.drain_timeout_ms, 0, 3'600'000);
  reader.read_int("health_watchers", config.server.health_watchers, 0, 1'000'000);
}

void read_http(const toml::table& table, const std::string& file, Config& config,
               std::vector<ConfigError>& errors) {
  TableReader reader(table, "http", file, errors);
  reader.reject_unknown({"listen", "max_connections", "max_header_bytes", "max_body_bytes",
                         "request_timeout_ms", "gateway", "gateway_timeout_ms", "max_streams", "cors_origins",
                         "threads"});
  HttpSection& http = config.http;
  reader.read_string("listen", http.listen);
  // An IP address or host name and a TCP port; no unix sockets here.
  if (table.contains("listen") && table["listen"].is_string() &&
      (http.listen.rfind("unix:", 0) == 0 || !valid_listen_address(http.listen))) {
    reader.error_at(*table.get("listen"), "listen",
                    "'" + http.listen + "' is not an address with a TCP port, like 127.0.0.1:8080");
  }
  reader.read_int("max_connections", http.max_connections, 1, 100'000);
  reader.read_int("max_header_bytes", http.max_header_bytes, 256, 1024 * 1024);
  reader.read_int("max_body_bytes", http.max_body_bytes, 0, 64 * 1024 * 1024);
  reader.read_int("request_timeout_ms", http.request_timeout_ms, 10, 3'600'000);
  reader.read_bool("gateway", http.gateway);
  reader.read_int("gateway_timeout_ms", http.gateway_timeout_ms, 10, 3'600'000);
  reader.read_int("max_streams", http.max_streams, 0, 100'000);
  reader.read_int("threads", http.threads, 1, 64);
  reader.read_string_list("cors_origins", http.cors_origins);
  // An origin is a scheme, a host and perhaps a port, exactly as browsers send it: no path, no
  // trailing slash, no wildcard inside ("*" alone allows every origin).
  static const std::regex origin(
      R"(^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-fA-F:.]+\](:[0-9]{1,5})?$)");
  if (const toml::array* origins = table["cors_origins"].as_array()) {
    for (const auto& node : *origins) {
      const auto* value = node.as_string();
      if (value == nullptr || value->get() == "*" || std::regex_match(value->get(), origin)) continue;
      reader.error_at(node, "cors_origins",
                      "'" + value->get() +
                          "' is not an origin like https://game.example or http://localhost:5173 (or \"*\")");
    }
  }
}

void read_host(const toml::table& table, const std::string& file, const std::filesystem::path& base_dir,
               Config& config, std::vector<ConfigError>& errors) {
  TableReader reader(table, "host", file, errors);
  reader.reject_unknown({"log_level", "log_format", "plugin_dir", "staging_dir", "data_dir", "watch",
                         "watch_debounce_ms", "ship_logs", "ship_queue_lines"});
  reader.read_string("log_level", config.host.log_level);
  static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "off"};
  if (table.contains("log_level") && table["log_level"].is_string() &&
      !levels.contains(config.host.log_level)) {
    reader.error_at(*table.get("log_level"), "log_level",
                    "'" + config.host.log_level + "' is not one of trace, debug, info, warn, error, off");
  }
  reader.read_string("log_format", config.host.log_format);
  if (table.contains("log_format") && table["log_format"].is_string() &&
      !logging::parse_log_format(config.host.log_format)) {
    reader.error_at(*table.get("log_format"), "log_format",
                    "'" + config.host.log_format + "' is not one of text, json");
  }
  std::string plugin_dir;
  reader.read_string("plugin_dir", plugin_dir);
  if (!plugin_dir.empty()) config.host.plugin_dir = (base_dir / plugin_dir).lexically_normal();
  std::string data_dir;
  reader.read_string("data_dir", data_dir);
  if (!data_dir.empty()) config.host.data_dir = (base_dir / data_dir).lexically_normal();
  std::string staging_dir;
  reader.read_string("staging_dir", staging_dir);
  if (!staging_dir.empty()) config.host.staging_dir = base_dir / staging_dir;
  reader.read_bool("watch", config.host.watch);
  reader.read_int("watch_debounce_ms", config.host.watch_debounce_ms, 0, 60'000);
  reader.read_bool("ship_logs", config.host.ship_logs);
  reader.read_int("ship_queue_lines", config.host.ship_queue_lines, 100, 10'000'000);
}

bool valid_service_name(const std::string& name) {
  static const std::regex pattern(R"(^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$)");
  return name.size() <= 200 && std::regex_match(name, pattern);
}

// A host:port another host can be reached at: a name or an address and a port that is not 0.
bool valid_remote_address(const std::string& address) {
  if (address.rfind("unix:", 0) == 0 || !valid_listen_address(address)) return false;
  const auto colon = address.rfind(':');
  return colon != std::string::npos && std::stoi(address.substr(colon + 1)) != 0;
}

// A name a host certificate is matched against: an IPv4 or IPv6 address, or a DNS name of
// letters, digits and '-' in dot-separated labels (no wildcard, no trailing dot).
bool valid_peer_name(const std::string& name) {
  if (name.empty() || name.size() > 253 || name.find('\0') != std::string::npos) return false;
  unsigned char address[16];
  if (inet_pton(AF_INET, name.c_str(), address) == 1 || inet_pton(AF_INET6, name.c_str(), address) == 1) {
    return true;
  }
  static const std::regex dns(
      R"(^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$)");
  return std::regex_match(name, dns);
}

// [cluster] cert_file, key_file, require_peer_certificate, peer_names: mutual TLS between hosts.
// The files themselves are checked at start (rpc/tls.hpp), as [server.tls]'s are.
void read_cluster_tls(const toml::table& table, TableReader& reader, const std::filesystem::path& base_dir,
                      Config& config) {
  ClusterSection& cluster = config.cluster;
  for (auto [key, path] :
       {std::pair{"cert_file", &cluster.cert_file}, std::pair{"key_file", &cluster.key_file}}) {
    std::string value;
    reader.read_string(key, value);
    if (!value.empty()) *path = (base_dir / value).lexically_normal();
  }
  if (cluster.cert_file.empty() != cluster.key_file.empty()) {
    const char* set = cluster.cert_file.empty() ? "key_file" : "cert_file";
    reader.error_at(*table.get(set), set, "a client certificate needs both cert_file and key_file");
  }
  if (!cluster.cert_file.empty() && cluster.ca_file.empty()) {
    reader.error_at(*table.get("cert_file"), "cert_file",
                    "a client certificate is for TLS between hosts: set cluster.ca_file too (the CAs "
                    "other hosts' server certificates chain to)");
  }
  reader.read_bool("require_peer_certificate", cluster.require_peer_certificate);
  if (cluster.require_peer_certificate && config.server.tls.client_ca_file.empty()) {
    reader.error_at(*table.get("require_peer_certificate"), "require_peer_certificate",
                    "needs server.tls.client_ca_file (and server.tls cert_file, key_file): the CAs the "
                    "certificates of other hosts are verified against");
  }
  reader.read_string_list("peer_names", cluster.peer_names);
  const toml::node* names = table.get("peer_names");
  if (names != nullptr && !cluster.require_peer_certificate) {
    reader.error_at(*names, "peer_names",
                    "names in other hosts' certificates are checked only with "
                    "cluster.require_peer_certificate = true");
  }
  const toml::array* list = names != nullptr ? names->as_array() : nullptr;
  if (cluster.require_peer_certificate && (names == nullptr || (list != nullptr && list->empty()))) {
    reader.error_at(names != nullptr ? *names : *table.get("require_peer_certificate"), "peer_names",
                    "required with require_peer_certificate = true: the DNS names or IP addresses other "
                    "hosts' client certificates carry, e.g. [\"host-a.internal\", \"10.0.0.5\"]; a "
                    "certificate from [server.tls] client_ca_file alone does not make a host, since that "
                    "CA may also sign players' client certificates");
  }
  // Only when every item is a string (else read_string_list said so), so that i is the item's index.
  if (list != nullptr && list->size() == cluster.peer_names.size()) {
    for (size_t i = 0; i < list->size(); ++i) {
      std::string& name = cluster.peer_names[i];
      if (!valid_peer_name(name)) {
        reader.error_at(*list->get(i), "peer_names[" + std::to_string(i) + "]",
                        "'" + name.substr(0, 253) +
                            "' is not a DNS name (letters, digits and '-' in dot-separated labels of 1 to "
                            "63, at most 253 in all; no wildcard) or an IP address");
      }
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    }
  }
}

void read_cluster(const toml::table& root, TableReader& top, const std::string& file,
                  const std::filesystem::path& base_dir, Config& config, std::vector<ConfigError>& errors) {
  ClusterSection& cluster = config.cluster;
  const toml::table* table = top.sub_table("cluster");
  if (table != nullptr) {
    TableReader reader(*table, "cluster", file, errors);
    reader.reject_unknown({"name", "secret", "secret_file", "advertise", "registry", "lease_ms",
                           "max_pending_calls", "max_channels", "eject_ms", "ca_file", "call_timeout_ms",
                           "cert_file", "key_file", "require_peer_certificate", "peer_names"});
    reader.read_string("name", cluster.name);
    if (table->contains("name") &&
        (cluster.name.empty() || cluster.name.size() > 64 ||
         cluster.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") != std::string::npos)) {
      reader.error_at(*table->get("name"), "name", "must be 1 to 64 lower-case letters, digits, '-' or '_'");
    }
    const toml::node* secret_node = read_secret(reader, *table, "secret", base_dir, cluster.secret);
    if (secret_node != nullptr && secret_node->is_string()) {
      // Never echoed: the value is a secret.
      const std::string_view key = secret_node == table->get("secret") ? "secret" : "secret_file";
      if (cluster.secret.size() < 32) {
        reader.error_at(*secret_node, key, "must be at least 32 characters");
      } else if (std::string word = placeholder_in(cluster.secret); !word.empty()) {
        reader.error_at(*secret_node, key,
                        "is a placeholder (it contains '" + word +
                            "'), not a secret: generate one, e.g. with `openssl rand -hex 32`");
      }
    }
    reader.read_string("advertise", cluster.advertise);
    if (!cluster.advertise.empty() && !valid_remote_address(cluster.advertise)) {
      reader.error_at(*table->get("advertise"), "advertise",
                      "'" + cluster.advertise + "' is not host:port with a port other hosts can reach");
    }
    reader.read_bool("registry", cluster.registry);
    if (cluster.registry && config.redis.url.empty()) {
      reader.error_at(*table->get("registry"), "registry", "needs [redis] url = \"redis://host:port\"");
    }
    reader.read_int("lease_ms", cluster.lease_ms, 1'000, 3'600'000);
    reader.read_int("max_pending_calls", cluster.max_pending_calls, 1, platform::kClusterMaxPendingCalls);
    reader.read_int("max_channels", cluster.max_channels, 1, 4096);
    reader.read_int("eject_ms", cluster.eject_ms, 10, 60'000);
    reader.read_int("call_timeout_ms", cluster.call_timeout_ms, 100, 3'600'000);
    std::string ca_file;
    reader.read_string("ca_file", ca_file);
    if (!ca_file.empty()) cluster.ca_file = (base_dir / ca_file).lexically_normal();
    read_cluster_tls(*table, reader, base_dir, config);
    if (!table->contains("secret") && !table->contains("secret_file") &&
        (cluster.registry || root.contains("remote"))) {
      errors.push_back({file, position_of(table->source()), "cluster.secret",
                        "required to call other hosts: set secret or secret_file (the same on every host)"});
    }
  }
  const toml::node* node = root.get("remote");
  if (node == nullptr) return;
  const toml::array* entries = node->as_array();
  if (entries == nullptr || !entries->is_array_of_tables()) {
    errors.push_back(
        {file, position_of(node->source()), "remote", "must be an array of tables, written [[remote]]"});
    return;
  }
  if (table == nullptr) {
    errors.push_back({file, position_of(node->source()), "cluster.secret",
                      "[[remote]] needs [cluster] secret or secret_file (the same on every host)"});
  }
  std::map<std::string, SourcePosition> seen;
  for (size_t i = 0; i < entries->size(); ++i) {
    const toml::table& entry = *(*entries)[i].as_table();
    const std::string prefix = "remote[" + std::to_string(i) + "]";
    TableReader reader(entry, prefix, file, errors);
    reader.reject_unknown({"service", "addresses"});
    RemoteService remote;
    remote.where = position_of(entry.source());
    reader.read_string("service", remote.service);
    if (!entry.contains("service")) {
      errors.push_back({file, remote.where, prefix + ".service",
                        "required: the full service name, e.g. "
                        "\"gameverse.echo.v1.Echo\""});
    } else if (!valid_service_name(remote.service)) {
      reader.error_at(*entry.get("service"), "service",
                      "'" + remote.service + "' is not a full service name (package.Service)");
    } else if (const auto [it, inserted] =
                   seen.emplace(remote.service, position_of(entry.get("service")->source()));
               !inserted) {
      reader.error_at(*entry.get("service"), "service",
                      "'" + remote.service + "' is listed already, at line " +
                          std::to_string(it->second.line) + "; put all its addresses in one entry");
    }
    reader.read_string_list("addresses", remote.addresses);
    if (!entry.contains("addresses") || (remote.addresses.empty() && entry.get("addresses")->is_array())) {
      errors.push_back(
          {file, entry.contains("addresses") ? position_of(entry.get("addresses")->source()) : remote.where,
           prefix + ".addresses", "needs at least one \"host:port\""});
    }
    if (const toml::array* list = entry.get("addresses") ? entry.get("addresses")->as_array() : nullptr) {
      for (size_t a = 0; a < list->size() && a < remote.addresses.size(); ++a) {
        if (!valid_remote_address(remote.addresses[a])) {
          reader.error_at(*list->get(a), "addresses",
                          "'" + remote.addresses[a] + "' is not host:port (a port other than 0)");
        }
      }
      if (remote.addresses.size() > 64) {
        reader.error_at(*entry.get("addresses"), "addresses", "at most 64 addresses per service");
      }
    }
    config.remotes.push_back(std::move(remote));
  }
}

void read_plugins(const toml::node& node, const std::string& file, const std::filesystem::path& base_dir,
                  Config& config, std::vector<ConfigError>& errors) {
  const toml::array* entries = node.as_array();
  if (entries == nullptr || !entries->is_array_of_tables()) {
    errors.push_back(
        {file, position_of(node.source()), "plugin", "must be an array of tables, written [[plugin]]"});
    return;
  }
  std::map<std::string, SourcePosition> seen;
  for (size_t i = 0; i < entries->size(); ++i) {
    const toml::table& table = *(*entries)[i].as_table();
    PluginConfig plugin;
    plugin.source_file = file;
    plugin.where = position_of(table.source());
    plugin.key_prefix = "plugin[" + std::to_string(i) + "]";
    TableReader reader(table, plugin.key_prefix, file, errors);
    reader.reject_unknown({"name", "path", "enabled", "config", "access"});

    reader.read_string("name", plugin.name);
    if (!table.contains("name")) {
      errors.push_back({file, plugin.where, plugin.key_prefix, "missing required key 'name'"});
      continue;
    }
    if (std::string why = plugin_name_refusal(plugin.name); !why.empty()) {
      reader.error_at(*table.get("name"), "name", why);
      continue;
    }
    if (auto [it, inserted] = seen.emplace(plugin.name, position_of(table.get("name")->source()));
        !inserted) {
      reader.error_at(
          *table.get("name"), "name",
          "plugin '" + plugin.name + "' is already configured at line " + std::to_string(it->second.line));
    }

    std::string path;
    reader.read_string("path", path);
    plugin.path = path.empty() ? config.host.plugin_dir / (plugin.name + ".so") : base_dir / path;
    plugin.path = plugin.path.lexically_normal();
    reader.read_bool("enabled", plugin.enabled);
    if (const toml::table* settings = reader.sub_table("config")) {
      plugin.settings = *settings;
      // A copied table forgets where its values stood; messages about them need it.
      for (auto&& [key, value] : *settings)
        plugin.settings_where[std::string(key.str())] = position_of(value.source());
    }
    if (const toml::table* access = reader.sub_table("access")) {
      TableReader access_reader(*access, plugin.key_prefix + ".access", file, errors);
      for (const auto& [method, value] : *access) {
        const std::string name(method.str());
        const auto* text = value.as_string();
        auto policy = text != nullptr ? AccessPolicy::parse(text->get()) : std::nullopt;
        if (!policy) {
          access_reader.error_at(value, name,
                                 "is not an access policy: \"public\", \"authenticated\" or \"role:<name>\"");
          continue;
        }
        plugin.access[name] = *policy;
        plugin.access_where[name] = position_of(value.source());
      }
    }
    config.plugins.push_back(std::move(plugin));
  }
}

}  // namespace

LoadResult parse_config(std::string_view text, const std::string& source_name,
                        const std::filesystem::path& base_dir) {
  LoadResult result;
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    result.errors.push_back(
        {source_name, position_of(e.source()), "", "TOML syntax error: " + std::string(e.description())});
    return result;
  }

  Config config;
  config.source_file = source_name;
  config.host.staging_dir =
      std::filesystem::temp_directory_path() / ("gameverse-staging-" + std::to_string(::getpid()));
  TableReader top(root, "", source_name, result.errors);
  top.reject_unknown({"server", "host", "store", "cache", "pubsub", "redis", "blocking", "admin", "http",
                      "metrics", "plugin", "cluster", "remote"});
  config.host.data_dir = (base_dir / "data").lexically_normal();
  config.host.plugin_dir = base_dir.lexically_normal();
  if (const toml::table* server = top.sub_table("server")) {
    read_server(*server, source_name, base_dir, config, result.errors);
  }
  if (const toml::table* host = top.sub_table("host")) {
    read_host(*host, source_name, base_dir, config, result.errors);
  }
  if (const toml::table* store = top.sub_table("store")) {
    TableReader reader(*store, "store", source_name, result.errors);
    reader.reject_unknown(
        {"backend", "postgresql_url", "pool_size", "max_value_bytes", "postgresql_url_file"});
    reader.read_string("backend", config.store.backend);
    if (config.store.backend != "sqlite" && config.store.backend != "postgresql" &&
        store->contains("backend")) {
      reader.error_at(*store->get("backend"), "backend",
                      "'" + config.store.backend + "' is not a store backend (sqlite or postgresql)");
    }
    read_secret(reader, *store, "postgresql_url", base_dir, config.store.postgresql_url);
    // (A postgresql_url_file that cannot be read is its own error.)
    if (config.store.backend == "postgresql" && config.store.postgresql_url.empty() &&
        !store->contains("postgresql_url_file")) {
      result.errors.push_back({source_name, position_of(store->source()), "store.postgresql_url",
                               "required when backend = \"postgresql\""});
    }
    reader.read_int("pool_size", config.store.pool_size, 1, 256);
    reader.read_int("max_value_bytes", config.store.max_value_bytes, 1, 64 * 1024 * 1024);
  }
  if (const toml::table* redis = top.sub_table("redis")) {
    TableReader reader(*redis, "redis", source_name, result.errors);
    reader.reject_unknown({"url", "ca_file", "url_file"});
    const toml::node* url_node = read_secret(reader, *redis, "url", base_dir, config.redis.url);
    std::string ca_file;
    reader.read_string("ca_file", ca_file);
    if (!ca_file.empty()) config.redis.ca_file = (base_dir / ca_file).lexically_normal();
    if (!ca_file.empty() && config.redis.url.rfind("rediss://", 0) != 0) {
      reader.error_at(*redis->get("ca_file"), "ca_file", "is for TLS: the url must start with rediss://");
    }
    if (url_node != nullptr && url_node->is_string()) {
      try {
        platform::parse_redis_url(config.redis.url);
      } catch (const platform::PlatformError& e) {
        reader.error_at(*url_node, url_node == redis->get("url") ? "url" : "url_file", e.what());  // masked
      }
    }
  }
  for (auto [section, name] : {std::pair{&config.cache, "cache"}, std::pair{&config.pubsub, "pubsub"}}) {
    const toml::table* table = top.sub_table(name);
    if (table == nullptr) continue;
    TableReader reader(*table, name, source_name, result.errors);
    reader.reject_unknown({"backend"});
    reader.read_string("backend", section->backend);
    if (!table->contains("backend")) continue;
    if (section->backend != "memory" && section->backend != "redis") {
      reader.error_at(*table->get("backend"), "backend",
                      "'" + section->backend + "' is not a " + name + " backend (memory or redis)");
    } else if (section->backend == "redis" && config.redis.url.empty()) {
      reader.error_at(*table->get("backend"), "backend",
                      "\"redis\" needs [redis] url = \"redis://host:port\"");
    }
  }
  if (const toml::table* blocking = top.sub_table("blocking")) {
    TableReader reader(*blocking, "blocking", source_name, result.errors);
    reader.reject_unknown({"threads", "threads_per_plugin", "queue_per_plugin", "queue_bytes_per_plugin"});
    reader.read_int("threads", config.blocking.threads, 0, 1024);
    reader.read_int("threads_per_plugin", config.blocking.threads_per_plugin, 0, 1024);
    reader.read_int("queue_per_plugin", config.blocking.queue_per_plugin, 1, 1'000'000);
    reader.read_int("queue_bytes_per_plugin", config.blocking.queue_bytes_per_plugin, 1024, INT64_MAX);
    if (config.blocking.threads > 0 && config.blocking.threads_per_plugin > config.blocking.threads) {
      reader.error_at(*blocking->get("threads_per_plugin"), "threads_per_plugin",
                      "cannot be more than threads (" + std::to_string(config.blocking.threads) + ")");
    }
  }
  if (const toml::table* admin = top.sub_table("admin")) {
    TableReader reader(*admin, "admin", source_name, result.errors);
    reader.reject_unknown({"enabled", "token", "allow_loopback", "token_file"});
    reader.read_bool("enabled", config.admin.enabled);
    reader.read_bool("allow_loopback", config.admin.allow_loopback);
    const toml::node* token_node = read_secret(reader, *admin, "token", base_dir, config.admin.token);
    if (token_node != nullptr && token_node->is_string()) {
      // Never echoed: the value is a secret.
      const std::string_view key = token_node == admin->get("token") ? "token" : "token_file";
      if (config.admin.token.size() < 16) {
        reader.error_at(*token_node, key, "must be at least 16 characters");
      } else if (std::string word = placeholder_in(config.admin.token); !word.empty()) {
        reader.error_at(*token_node, key,
                        "is a placeholder (it contains '" + word +
                            "'), not a secret: generate one, e.g. with `openssl rand -hex 32`");
      }
    }
  }
  if (const toml::table* http = top.sub_table("http")) read_http(*http, source_name, config, result.errors);
  if (const toml::table* metrics = top.sub_table("metrics")) {
    TableReader reader(*metrics, "metrics", source_name, result.errors);
    reader.reject_unknown({"per_method"});
    reader.read_bool("per_method", config.metrics.per_method);
  }
  if (const toml::node* plugins = root.get("plugin")) {
    read_plugins(*plugins, source_name, base_dir, config, result.errors);
  }
  read_cluster(root, top, source_name, base_dir, config, result.errors);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

std::string plugin_name_refusal(std::string_view name) {
  static const std::regex pattern("^[a-z0-9][a-z0-9-]{0,62}$");
  // The host's own lines, calls and built-in services go by "gameverse" and "gameverse-...".
  if (name == "gameverse" || name.starts_with("gameverse-")) {
    return "'" + std::string(name) + "' is the host's own name; a plugin needs another";
  }
  if (std::regex_match(name.begin(), name.end(), pattern)) return "";
  return "'" + std::string(name) + "' is not a plugin name (lower-case letters, digits and '-', at most 63)";
}

LoadResult load_config_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    LoadResult result;
    result.errors.push_back(
        {file.string(), {}, "", "cannot open the config file: " + std::string(std::strerror(errno))});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::filesystem::path base_dir = std::filesystem::absolute(file).parent_path();
  return parse_config(text.str(), file.string(), base_dir);
}

}  // namespace gameverse::config
