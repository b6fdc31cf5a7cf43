#include "plugin/plugin.hpp"

#include <google/protobuf/descriptor.pb.h>
#include <spdlog/spdlog.h>

#include <boost/dll/library_info.hpp>
#include <mutex>
#include <regex>
#include <set>

#include "platform/pubsub.hpp"
#include "platform/remote_calls.hpp"
#include "platform/timers.hpp"
#include "platform/work_pool.hpp"
#include "plugin/call.hpp"
#include "plugin/negotiation.hpp"

namespace gameverse::plugin {

namespace {

const char* kind_name(gv_call_kind kind) {
  switch (kind) {
    case GV_CALL_UNARY: return "unary";
    case GV_CALL_SERVER_STREAMING: return "server-streaming";
    case GV_CALL_CLIENT_STREAMING: return "client-streaming";
    case GV_CALL_BIDI_STREAMING: return "bidi-streaming";
    default: return "unknown";
  }
}

gv_call_kind kind_of(const google::protobuf::MethodDescriptor& m) {
  if (m.client_streaming()) return m.server_streaming() ? GV_CALL_BIDI_STREAMING : GV_CALL_CLIENT_STREAMING;
  return m.server_streaming() ? GV_CALL_SERVER_STREAMING : GV_CALL_UNARY;
}

const char* config_type_name(gv_config_type type) {
  switch (type) {
    case GV_CONFIG_STRING: return "a string";
    case GV_CONFIG_INT: return "an integer";
    case GV_CONFIG_DOUBLE: return "a float";
    case GV_CONFIG_BOOL: return "a boolean";
    default: return "an unknown type";
  }
}

// Converts a TOML value to the declared type, or returns nothing when the types differ.
std::optional<gv_host_plugin::Value> convert(const toml::node& node, gv_config_type type) {
  switch (type) {
    case GV_CONFIG_STRING:
      if (auto v = node.as_string()) return gv_host_plugin::Value(v->get());
      break;
    case GV_CONFIG_INT:
      if (auto v = node.as_integer()) return gv_host_plugin::Value(v->get());
      break;
    case GV_CONFIG_DOUBLE:
      if (auto v = node.as_floating_point()) return gv_host_plugin::Value(v->get());
      if (auto v = node.as_integer()) return gv_host_plugin::Value(static_cast<double>(v->get()));
      break;
    case GV_CONFIG_BOOL:
      if (auto v = node.as_boolean()) return gv_host_plugin::Value(v->get());
      break;
    default: break;
  }
  return std::nullopt;
}

// Where a [plugin.config] value stands: its own source when it was parsed in place, else what the
// config loader recorded (a copied table forgets it), else the plugin's entry.
config::SourcePosition value_position(const config::PluginConfig& entry, const std::string& key,
                                      const toml::node& node) {
  if (const config::SourcePosition own = config::position_of(node.source()); own.line != 0) return own;
  if (auto it = entry.settings_where.find(key); it != entry.settings_where.end()) return it->second;
  return entry.where;
}

std::string number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

std::string quoted_list(const char* const* values, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    out += (i == 0 ? "\"" : ", \"") + std::string(values[i] != nullptr ? values[i] : "") + "\"";
  }
  return out;
}

// What is wrong with `value` under the key's rules (ABI 1.2), or "" when nothing is.
std::string broken_rule(const gv_config_key_desc& k, const gv_host_plugin::Value& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) {
    if ((k.rules & GV_CONFIG_RULE_MIN) && *i < k.min_int)
      return "must be at least " + std::to_string(k.min_int) + ", not " + std::to_string(*i);
    if ((k.rules & GV_CONFIG_RULE_MAX) && *i > k.max_int)
      return "must be at most " + std::to_string(k.max_int) + ", not " + std::to_string(*i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    if ((k.rules & GV_CONFIG_RULE_MIN) && !(*d >= k.min_double))
      return "must be at least " + number(k.min_double) + ", not " + number(*d);
    if ((k.rules & GV_CONFIG_RULE_MAX) && !(*d <= k.max_double))
      return "must be at most " + number(k.max_double) + ", not " + number(*d);
  } else if (const auto* text = std::get_if<std::string>(&value)) {
    if ((k.rules & GV_CONFIG_RULE_NON_EMPTY) && text->empty()) return "must not be empty";
    if ((k.rules & GV_CONFIG_RULE_ONE_OF) && k.allowed_values != nullptr) {
      for (size_t i = 0; i < k.allowed_value_count; ++i) {
        if (k.allowed_values[i] != nullptr && *text == k.allowed_values[i]) return "";
      }
      return "must be one of " + quoted_list(k.allowed_values, k.allowed_value_count) + ", not \"" + *text +
             "\"";
    }
  }
  return "";
}

std::string location(const config::PluginConfig& entry, config::SourcePosition where) {
  return entry.source_file + ":" + std::to_string(where.line) + ":" + std::to_string(where.column);
}

class CollectingErrors final : public google::protobuf::DescriptorPool::ErrorCollector {
 public:
  void AddError(const std::string& filename, const std::string& element_name,
                const google::protobuf::Message*, ErrorLocation, const std::string& message) override {
    if (first.empty()) first = filename + ": " + element_name + ": " + message;
  }
  std::string first;
};

// glibc maps and unmaps libraries under its own lock, which ThreadSanitizer cannot see; taking
// this one too orders a library mapped at a reused address after the unmapping of the old one.
// How long a retiring generation's blocking work may still run before the host gives up on it.
constexpr auto kBlockingDrainLimit = std::chrono::seconds(30);

std::mutex& mapping_mutex() {
  static std::mutex mutex;
  return mutex;
}

}  // namespace

std::unique_ptr<Plugin> Plugin::open(const config::PluginConfig& entry,
                                     const std::filesystem::path& load_from) {
  const std::string who = "plugin '" + entry.name + "' (" + entry.path.string() + "): ";
  const std::filesystem::path& file = load_from.empty() ? entry.path : load_from;
  std::unique_ptr<Plugin> plugin(new Plugin());
  plugin->path_ = file;
  plugin->source_path_ = entry.path;
  plugin->self_.name = entry.name;

  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    throw LoadError(who + "no such file; build it or fix `path` at " + location(entry, entry.where));
  }
  std::lock_guard mapping(mapping_mutex());  // held through the entry call's static initialisers
  try {
    plugin->library_.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    throw LoadError(who + "cannot be loaded: " + e.what());
  }

  if (!plugin->library_.has(GV_PLUGIN_ENTRY_SYMBOL)) {
    std::string found;
    try {
      for (const std::string& symbol : boost::dll::library_info(file).symbols()) {
        if (uint32_t major = entry_symbol_major(symbol); major != 0) {
          throw LoadError(who + "was built for ABI major " + std::to_string(major) + " (exports " + symbol +
                          "), this host speaks ABI " + std::to_string(GV_ABI_VERSION_MAJOR) + "." +
                          std::to_string(GV_ABI_VERSION_MINOR) +
                          " (" GV_PLUGIN_ENTRY_SYMBOL "): rebuild it against this host's SDK");
        }
      }
    } catch (const LoadError&) {
      throw;
    } catch (const std::exception&) {
      // Unreadable symbol table: fall through to the plain message.
    }
    throw LoadError(who + "exports no " GV_PLUGIN_ENTRY_SYMBOL
                          " symbol: it is not a GameVerse plugin (build it with gameverse_add_plugin)");
  }

  auto entry_fn =
      plugin->library_.get<const gv_plugin_descriptor*(const gv_host_info*)>(GV_PLUGIN_ENTRY_SYMBOL);
  char entry_error[1024] = {};
  const gv_host_info info{sizeof(gv_host_info), GV_ABI_VERSION_MAJOR, GV_ABI_VERSION_MINOR, GAMEVERSE_VERSION,
                          gv_message_buffer{entry_error, sizeof entry_error}};
  plugin->descriptor_ = entry_fn(&info);
  if (plugin->descriptor_ == nullptr) {
    throw LoadError(who + "its entry function returned no descriptor: " +
                    (entry_error[0] != '\0' ? entry_error : "(it gave no reason)"));
  }
  plugin->take_descriptor(entry, who);
  return plugin;
}

std::unique_ptr<Plugin> Plugin::open_builtin(const gv_plugin_descriptor* descriptor,
                                             const config::PluginConfig& entry) {
  std::unique_ptr<Plugin> plugin(new Plugin());
  plugin->source_path_ = entry.path;
  plugin->self_.name = entry.name;
  plugin->descriptor_ = descriptor;
  plugin->builtin_ = true;
  plugin->take_descriptor(entry, "built-in plugin '" + entry.name + "': ");
  return plugin;
}

void Plugin::take_descriptor(const config::PluginConfig& entry, const std::string& who) {
  auto negotiated = negotiate(*descriptor_);
  if (auto* message = std::get_if<std::string>(&negotiated)) throw LoadError(who + *message);
  const gv_plugin_descriptor& d = *descriptor_;
  if (entry.name != d.name) {
    throw LoadError(who + "the file holds plugin '" + d.name + "', not '" + entry.name +
                    "': fix `name` or `path` at " + location(entry, entry.where));
  }
  version_ = d.version;
  negotiated_ = std::get<Negotiated>(negotiated);
  api_ = host_api(negotiated_.minor);
  for (size_t i = 0; i < d.dependency_count; ++i) {
    if (d.dependencies[i] != nullptr) dependencies_.emplace_back(d.dependencies[i]);
  }
  static const std::regex collection_name("^[a-z0-9_-]{1,64}$");
  for (size_t i = 0; i < d.collection_count && d.collections != nullptr; ++i) {
    if (d.collections[i] == nullptr || !std::regex_match(d.collections[i], collection_name)) {
      throw LoadError(who + "collection #" + std::to_string(i) + " '" +
                      (d.collections[i] ? d.collections[i] : "") +
                      "' is not a collection name (lower-case letters, digits, '_' and '-', at most 64)");
    }
    self_.collections.emplace_back(d.collections[i]);
  }
  try {
    build_pool();
    check_methods();
    apply_access_overrides(entry);
    check_config(entry);
  } catch (const LoadError& e) {
    throw LoadError(who + e.what());
  }
  self_.logger = std::make_shared<logging::PluginLogger>(*spdlog::default_logger(), entry.name);
}

void Plugin::build_pool() {
  const gv_bytes set_bytes = descriptor_->descriptor_set;
  google::protobuf::FileDescriptorSet set;
  if (set_bytes.size == 0 || set_bytes.data == nullptr) {
    throw LoadError("has no embedded descriptor set (gameverse_add_plugin embeds it from PROTOS)");
  }
  if (set_bytes.size > static_cast<size_t>(INT32_MAX) ||
      !set.ParseFromArray(set_bytes.data, static_cast<int>(set_bytes.size))) {
    throw LoadError("malformed descriptor set: " + std::to_string(set_bytes.size) +
                    " bytes that do not parse as google.protobuf.FileDescriptorSet");
  }
  pool_ = std::make_shared<google::protobuf::DescriptorPool>();
  for (const auto& file : set.file()) {
    CollectingErrors errors;
    if (pool_->BuildFileCollectingErrors(file, &errors) == nullptr) {
      throw LoadError("malformed descriptor set: " + errors.first);
    }
  }
}

void Plugin::check_methods() {
  static const std::regex method_name(R"(^/([A-Za-z_][A-Za-z0-9_.]*)/([A-Za-z_][A-Za-z0-9_]*)$)");
  for (uint32_t i = 0; i < descriptor_->method_count; ++i) {
    const auto m = table_entry<gv_method_desc>(descriptor_->methods, negotiated_.method_desc_size, i);
    if (m.full_name == nullptr) {
      throw LoadError("method #" + std::to_string(i) + " has a malformed entry");
    }
    std::cmatch parts;
    if (!std::regex_match(m.full_name, parts, method_name)) {
      throw LoadError("method '" + std::string(m.full_name) + "' is not of the form /package.Service/Method");
    }
    const auto* service = pool_->FindServiceByName(parts[1].str());
    if (service == nullptr) {
      throw LoadError("method " + std::string(m.full_name) + ": service " + parts[1].str() +
                      " is not in the plugin's descriptor set");
    }
    const auto* method = service->FindMethodByName(parts[2].str());
    if (method == nullptr) {
      throw LoadError("method " + std::string(m.full_name) + " is not in service " + parts[1].str());
    }
    if (kind_of(*method) != m.call_kind) {
      throw LoadError("method " + std::string(m.full_name) + " is declared " + kind_name(m.call_kind) +
                      " but its .proto makes it " + kind_name(kind_of(*method)));
    }
    for (const Method& earlier : methods_) {
      if (earlier.full_name == m.full_name) {
        throw LoadError("method " + std::string(m.full_name) + " is declared twice");
      }
    }
    config::AccessPolicy access;  // nothing declared: authenticated, never public
    const bool has_access_table = descriptor_->struct_size >= offsetof(gv_plugin_descriptor, method_access) +
                                                                  sizeof(descriptor_->method_access) &&
                                  descriptor_->method_access != nullptr;
    // 1.2 plugins declare it in the method's entry; 1.1 plugins in a table beside the methods.
    const char* declared_access = m.access;
    if (declared_access == nullptr && has_access_table) declared_access = descriptor_->method_access[i];
    if (declared_access != nullptr) {
      auto declared = config::AccessPolicy::parse(declared_access);
      if (!declared) {
        throw LoadError("method " + std::string(m.full_name) + " declares the access policy '" +
                        declared_access + "'; expected public, authenticated or role:<name>");
      }
      access = *declared;
    }
    methods_.push_back({m.full_name, m.call_kind, i, method, (m.flags & GV_METHOD_MOVABLE) != 0, access});
  }
}

void Plugin::apply_access_overrides(const config::PluginConfig& entry) {
  for (const auto& [name, policy] : entry.access) {
    auto it = std::find_if(methods_.begin(), methods_.end(),
                           [&name = name](const Method& m) { return m.full_name == name; });
    if (it == methods_.end()) {
      const auto where = entry.access_where.count(name) ? entry.access_where.at(name) : entry.where;
      throw LoadError("the access policy at " + location(entry, where) + " names " + name +
                      ", which this plugin does not serve");
    }
    it->access = policy;
  }
}

void Plugin::check_config(const config::PluginConfig& entry) {
  std::vector<std::string> errors;
  std::string declared;
  std::set<std::string, std::less<>> declared_keys;
  const auto key_at = [this](size_t i) {
    return table_entry<gv_config_key_desc>(descriptor_->config_keys, negotiated_.config_key_desc_size, i);
  };
  for (size_t i = 0; i < descriptor_->config_key_count; ++i) {
    const char* key = key_at(i).key;
    declared += (declared.empty() ? "" : ", ") + std::string(key ? key : "?");
    if (key != nullptr) declared_keys.emplace(key);
  }
  const std::string prefix = entry.key_prefix + ".config.";

  for (size_t i = 0; i < descriptor_->config_key_count; ++i) {
    const gv_config_key_desc k = key_at(i);
    if (k.struct_size < kConfigKeyDescSizeV1_0 || k.key == nullptr) {
      throw LoadError("config key #" + std::to_string(i) + " has a malformed entry");
    }
    if (const toml::node* node = entry.settings.get(k.key)) {
      const std::string where = location(entry, value_position(entry, k.key, *node)) + ": " + prefix + k.key;
      if (auto value = convert(*node, k.type)) {
        if (std::string broken = broken_rule(k, *value); !broken.empty()) {
          errors.push_back(where + ": " + broken);
        } else {
          self_.config.emplace(k.key, std::move(*value));
        }
      } else {
        errors.push_back(where + ": must be " + config_type_name(k.type));
      }
    } else if (k.required) {
      errors.push_back(location(entry, entry.where) + ": " + prefix + k.key + ": required by plugin '" +
                       entry.name + "' and not set" +
                       (k.description ? std::string(" (") + k.description + ")" : ""));
    } else {
      std::optional<gv_host_plugin::Value> value;
      if (k.default_value != nullptr) {
        try {
          toml::table parsed = toml::parse(std::string("v = ") + k.default_value);
          value = convert(*parsed.get("v"), k.type);
        } catch (const toml::parse_error&) {
        }
      }
      if (!value) {
        throw LoadError(std::string("config key '") + k.key + "' declares a default that is not " +
                        config_type_name(k.type) + ": " + (k.default_value ? k.default_value : "(none)"));
      }
      if (std::string broken = broken_rule(k, *value); !broken.empty()) {
        throw LoadError(std::string("config key '") + k.key +
                        "' declares a default that breaks its own rule: " + broken);
      }
      self_.config.emplace(k.key, std::move(*value));
    }
  }
  for (auto&& [key, node] : entry.settings) {
    if (!declared_keys.contains(key.str())) {
      errors.push_back(location(entry, config::position_of(key.source())) + ": " + prefix +
                       std::string(key.str()) + ": unknown key; plugin '" + entry.name +
                       "' declares: " + (declared.empty() ? "no keys" : declared));
    }
  }
  if (!errors.empty()) {
    std::string all = "config does not match the plugin's schema:";
    for (const auto& e : errors) all += "\n  " + e;
    throw LoadError(all);
  }
}

void Plugin::init(std::string_view previous_state) {
  char message[1024] = {};
  const gv_bytes state{reinterpret_cast<const uint8_t*>(previous_state.data()), previous_state.size()};
  void* instance = nullptr;
  init_called_ = true;  // from here on the plugin may have timers, subscriptions and work
  const gv_status_code code =
      descriptor_->on_init(&api_, &self_, state, &instance, gv_message_buffer{message, sizeof message});
  if (code != GV_STATUS_OK) {
    throw LoadError("plugin '" + name() + "' (" + path_.string() + "): init failed with status " +
                    std::to_string(code) + ": " + (message[0] ? message : "(no message)"));
  }
  instance_ = instance;
}

std::string Plugin::save_state() {
  if (descriptor_->on_save_state == nullptr || instance_ == nullptr) return {};
  ByteSink sink;
  char message[1024] = {};
  const gv_status_code code =
      descriptor_->on_save_state(instance_, &sink, gv_message_buffer{message, sizeof message});
  if (code != GV_STATUS_OK) {
    throw LoadError("plugin '" + name() + "' generation " + std::to_string(generation_) +
                    ": save_state failed with status " + std::to_string(code) + ": " +
                    (message[0] ? message : "(no message)"));
  }
  return std::move(sink.bytes);
}

const Method* Plugin::find_method(std::string_view full_name) const {
  for (const Method& method : methods_) {
    if (method.full_name == full_name) return &method;
  }
  return nullptr;
}

void Plugin::register_call(LiveCall* call) {
  std::lock_guard lock(calls_mu_);
  live_calls_.insert(call);
}

void Plugin::unregister_call(LiveCall* call) {
  std::lock_guard lock(calls_mu_);
  live_calls_.erase(call);
  if (live_calls_.empty()) calls_idle_.notify_all();
}

size_t Plugin::live_call_count() const {
  std::lock_guard lock(calls_mu_);
  return live_calls_.size();
}

void Plugin::for_each_live_call(const std::function<void(LiveCall&)>& f) {
  std::lock_guard lock(calls_mu_);
  for (LiveCall* call : live_calls_) f(*call);
}

bool Plugin::wait_idle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(calls_mu_);
  return calls_idle_.wait_until(lock, deadline, [this] { return live_calls_.empty(); });
}

const char* to_string(GenerationState state) {
  switch (state) {
    case GenerationState::kLoading: return "loading";
    case GenerationState::kServing: return "serving";
    case GenerationState::kDraining: return "draining";
    case GenerationState::kRetired: return "retired";
    case GenerationState::kFailed: return "failed";
  }
  return "unknown";
}

void Plugin::set_state(GenerationState state) {
  state_ = state;
  if (self_.platform == nullptr || self_.platform->pubsub == nullptr) return;
  if (state == GenerationState::kServing || state == GenerationState::kDraining)
    self_.platform->pubsub->set_active(&self_, state == GenerationState::kServing);
}

void Plugin::take_over_subscriptions(Plugin& old) {
  if (self_.platform != nullptr && self_.platform->pubsub != nullptr)
    self_.platform->pubsub->hand_over(&old.self_, &self_);
}

Plugin::~Plugin() {
  const platform::Platform* platform = self_.platform;
  platform::WorkPool* blocking = platform != nullptr ? platform->blocking : nullptr;
  bool work_left = false;
  // Calls it forwarded to other hosts end first: their done callbacks are this generation's code.
  if (platform != nullptr && platform->remote != nullptr &&
      !platform->remote->cancel_owned(&self_, std::chrono::steady_clock::now() + kBlockingDrainLimit)) {
    work_left = true;
    spdlog::error(
        "plugin '{}' generation {}: calls it forwarded to other hosts still run {} s after it retired; "
        "the generation stays in memory so that their callbacks never run in unmapped code",
        name(), generation_, std::chrono::duration_cast<std::chrono::seconds>(kBlockingDrainLimit).count());
  }
  if (init_called_ && platform != nullptr) {
    // The generation's timers, subscriptions and blocking work end first, so that none runs in a
    // plugin that is shutting down (also when its init failed half-way).
    if (platform->timers != nullptr) platform->timers->cancel_all(&self_);
    if (platform->pubsub != nullptr) platform->pubsub->cancel_all(&self_, true);
    // What was queued still runs (a subscription's last messages); calls are over by now, so
    // work for them is skipped.
    if (blocking != nullptr &&
        !blocking->drain(&self_, std::chrono::steady_clock::now() + kBlockingDrainLimit)) {
      work_left = true;
      spdlog::error(
          "plugin '{}' generation {}: blocking work still runs {} s after it retired; the generation stays "
          "in memory (not shut down, not unmapped) so that the work never runs in unmapped code",
          name(), generation_, std::chrono::duration_cast<std::chrono::seconds>(kBlockingDrainLimit).count());
    }
  }
  if (work_left) {
    // Leaked on purpose, like a generation whose calls never finish: unmapping would crash the host.
    new boost::dll::shared_library(std::move(library_));
    return;
  }
  if (instance_ != nullptr) descriptor_->on_shutdown(instance_);
  // Whatever the shutdown queued is dropped; nothing of this generation runs after this.
  if (init_called_ && blocking != nullptr) blocking->close(&self_);
  if (library_.is_loaded()) {
    std::lock_guard mapping(mapping_mutex());
    library_.unload();
  }
}

}  // namespace gameverse::plugin
