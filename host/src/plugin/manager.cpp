#include "plugin/manager.hpp"

#include "platform/remote_calls.hpp"
#include "platform/thread_priority.hpp"
#include "plugin/load_order.hpp"
#include "plugin/route_compatibility.hpp"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <set>
#include <sstream>

namespace gameverse::plugin {

namespace {

constexpr size_t kHistoryLength = 8;
// How long a generation's plugin gets to finish the calls the host aborted at the drain deadline.
constexpr auto kAbortGrace = std::chrono::seconds(5);

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError("cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The services ("package.Service") a generation serves, each once, in order.
std::vector<std::string> services_of(const Plugin& plugin) {
  std::set<std::string> services;
  for (const Method& method : plugin.methods()) {
    const auto slash = method.full_name.find('/', 1);
    services.insert(method.full_name.substr(1, slash - 1));
  }
  return {services.begin(), services.end()};
}

bool is_streaming(gv_call_kind kind) {
  return kind != GV_CALL_UNARY;
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

PluginManager::PluginManager(Options options) : options_(std::move(options)) {
  std::filesystem::create_directories(options_.staging_dir);
  reaper_ = std::thread([this] { reap(); });
}

PluginManager::~PluginManager() {
  unload_all();
  {
    std::lock_guard lock(reaper_mu_);
    stopping_ = true;
  }
  reaper_cv_.notify_all();
  reaper_.join();
  std::error_code ec;
  std::filesystem::remove_all(options_.staging_dir, ec);
}

GenerationRecord PluginManager::record_of(const Plugin& plugin) {
  GenerationRecord record;
  record.number = plugin.generation();
  record.version = plugin.version();
  record.file_hash = plugin.file_hash();
  record.state = plugin.state();
  record.loaded_at = plugin.loaded_at();
  record.live_calls = plugin.live_call_count();
  return record;
}

std::set<std::string> services_of(const RouteTable& routes) {
  std::set<std::string> services;
  for (const auto& [method, route] : routes) {
    const size_t end = method.find('/', 1);
    if (end != std::string::npos) services.insert(method.substr(1, end - 1));
  }
  return services;
}

const char* to_string(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::kServing: return "serving";
    case Event::Kind::kDraining: return "draining";
    case Event::Kind::kRetired: return "retired";
    case Event::Kind::kRefused: return "refused";
    case Event::Kind::kUnloaded: return "unloaded";
    case Event::Kind::kFailed: return "failed";
    case Event::Kind::kStopping: return "stopping";
  }
  return "unknown";
}

void PluginManager::emit(const std::string& plugin, uint64_t generation, Event::Kind kind,
                         const std::string& message) {
  Event event{std::chrono::system_clock::now(), plugin, generation, kind, message};
  switch (kind) {
    case Event::Kind::kStopping: break;  // not a plugin's event: only for subscribers
    case Event::Kind::kRefused:
      spdlog::error("refused {}", message);  // refusal messages name the plugin and its file
      break;
    case Event::Kind::kFailed:
      spdlog::error("plugin '{}' generation {} failed: {}", plugin, generation, message);
      break;
    default:
      spdlog::info("plugin '{}' generation {} {}{}{}", plugin, generation, to_string(kind),
                   message.empty() ? "" : ": ", message);
  }
  std::lock_guard lock(listeners_mu_);
  for (auto& [id, listener] : listeners_) listener(event);
}

int PluginManager::subscribe(std::function<void(const Event&)> listener) {
  std::lock_guard lock(listeners_mu_);
  listeners_.emplace(next_listener_, std::move(listener));
  return next_listener_++;
}

void PluginManager::unsubscribe(int id) {
  std::lock_guard lock(listeners_mu_);
  listeners_.erase(id);
}

PluginManager::PluginFile PluginManager::read_plugin_file(const config::PluginConfig& entry) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(entry.path, ec)) {
    throw LoadError("plugin '" + entry.name + "' (" + entry.path.string() + "): no such file");
  }
  PluginFile file{read_file(entry.path), ""};
  file.hash = sha256_hex(file.bytes);
  return file;
}

// Writes the file's bytes under a unique name and maps that copy: a linker rewriting the original
// in place can never touch a mapped library, and dlopen never hands back an older generation.
std::shared_ptr<Plugin> PluginManager::open_staged(const config::PluginConfig& entry, uint64_t generation,
                                                   const PluginFile& file) {
  const std::filesystem::path staged =
      options_.staging_dir /
      (entry.name + ".g" + std::to_string(generation) + "." + std::to_string(++staged_count_) + ".so");
  {
    std::ofstream out(staged, std::ios::binary);
    out.write(file.bytes.data(), static_cast<std::streamsize>(file.bytes.size()));
    if (!out) throw LoadError("cannot stage " + entry.path.string() + " in " + options_.staging_dir.string());
  }
  std::shared_ptr<Plugin> plugin;
  try {
    plugin = Plugin::open(entry, staged);
  } catch (...) {
    std::filesystem::remove(staged);
    throw;
  }
  std::filesystem::remove(staged);  // the mapping stays; nothing is left behind on disk
  plugin->set_generation(generation);
  plugin->set_file_hash(file.hash);
  plugin->set_platform(options_.platform);
  return plugin;
}

void PluginManager::check_conflicts(const Plugin& plugin, const Plugin* replacing) const {
  const auto table = routes();
  for (const Method& method : plugin.methods()) {
    for (std::string_view reserved : {"/grpc.", "/gameverse.host."}) {
      if (method.full_name.rfind(reserved, 0) == 0) {
        throw LoadError("plugin '" + plugin.name() + "': method " + method.full_name +
                        " is in a package the host reserves (" + std::string(reserved.substr(1)) + "*)");
      }
    }
    if (auto it = table->find(method.full_name); it != table->end() && it->second.plugin.get() != replacing) {
      throw LoadError("plugin '" + plugin.name() + "' (" + plugin.source_path().string() + "): method " +
                      method.full_name + " is already served by plugin '" + it->second.plugin->name() +
                      "'; a method has one owner");
    }
  }
}

std::vector<std::string> PluginManager::dependants_of(const Plugin& plugin) const {
  const std::vector<std::string> services = services_of(plugin);
  std::vector<std::string> dependants;
  for (const auto& [name, slot] : slots_) {
    if (!slot.current || slot.current.get() == &plugin) continue;
    for (const std::string& dependency : slot.current->dependencies()) {
      if (std::find(services.begin(), services.end(), dependency) != services.end())
        dependants.push_back("'" + name + "' depends on " + dependency);
    }
  }
  return dependants;
}

namespace {
// The [plugin.access] table as text, to tell whether it changed.
std::string access_text(const config::PluginConfig& entry) {
  std::string text;
  for (const auto& [method, policy] : entry.access) text += method + "=" + policy.to_string() + ";";
  return text;
}
}  // namespace

void PluginManager::publish_routes(const Plugin* removed, const std::shared_ptr<Plugin>& added) {
  auto table = std::make_shared<RouteTable>(*routes());
  if (removed != nullptr)
    std::erase_if(*table, [removed](const auto& entry) { return entry.second.plugin.get() == removed; });
  if (added) {
    for (const Method& method : added->methods()) {
      (*table)[method.full_name] = Route{added, method.index, method.kind, method.access};
    }
  }
  std::atomic_store(&routes_, std::shared_ptr<const RouteTable>(std::move(table)));
}

void PluginManager::start_serving(Slot& slot, const std::shared_ptr<Plugin>& next,
                                  const std::shared_ptr<Plugin>& old) {
  next->init(old ? old->save_state() : std::string());
  if (old) next->take_over_subscriptions(*old);
  next->set_state(GenerationState::kServing);
  publish_routes(old.get(), next);
  if (old) old->set_state(GenerationState::kDraining);
  {
    std::lock_guard lock(state_mu_);
    slot.current = next;
    slot.last_error.clear();
  }
  emit(next->name(), next->generation(), Event::Kind::kServing,
       next->version() + " from " + next->source_path().string() + " (ABI " +
           std::to_string(GV_ABI_VERSION_MAJOR) + "." + std::to_string(next->abi_minor()) + ", " +
           std::to_string(next->methods().size()) + " methods)" +
           (old ? ", replaces generation " + std::to_string(old->generation()) : ""));
}

void PluginManager::refuse(Slot& slot, const std::string& message, Outcome& outcome) {
  outcome.kind = Outcome::Kind::kRefused;
  outcome.message = message;
  {
    std::lock_guard lock(state_mu_);
    slot.last_error = message;
  }
  emit(slot.entry.name, slot.current ? slot.current->generation() : 0, Event::Kind::kRefused, message);
}

std::vector<Outcome> PluginManager::load_all(const config::Config& config) {
  std::lock_guard ops(ops_mu_);
  std::vector<Outcome> outcomes;
  // Open every enabled plugin first: its methods and dependencies decide the order.
  std::map<std::string, std::shared_ptr<Plugin>> opened;
  std::vector<std::string> names;
  for (const config::PluginConfig& entry : config.plugins) {
    {
      std::lock_guard lock(state_mu_);
      Slot& slot = slots_[entry.name];
      slot.entry = entry;
      if (std::find(order_.begin(), order_.end(), entry.name) == order_.end()) order_.push_back(entry.name);
    }
    if (!entry.enabled) {
      spdlog::info("plugin '{}' is disabled in the config", entry.name);
      continue;
    }
    Outcome outcome{Outcome::Kind::kDone, entry.name, "", 0};
    try {
      opened[entry.name] = open_staged(entry, ++slots_[entry.name].last_generation, read_plugin_file(entry));
      names.push_back(entry.name);
    } catch (const std::exception& e) {
      refuse(slots_[entry.name], e.what(), outcome);
      outcomes.push_back(outcome);
    }
  }

  // Dependency order: a plugin comes after the plugins serving the services it calls.
  std::vector<PluginServices> loading;
  for (const std::string& name : names) {
    const Plugin& plugin = *opened[name];
    loading.push_back({name, services_of(plugin), plugin.dependencies()});
  }
  std::vector<PluginServices> serving;
  for (const auto& [name, slot] : slots_) {
    if (slot.current) serving.push_back({name, services_of(*slot.current), {}});
  }
  const LoadOrder ordered = load_order(loading, serving);

  for (const std::string& name : names) {
    if (auto it = ordered.refused.find(name); it != ordered.refused.end()) {
      Outcome outcome{Outcome::Kind::kDone, name, "", 0};
      refuse(slots_[name], "plugin '" + name + "': " + it->second, outcome);
      outcomes.push_back(outcome);
    }
  }
  for (const std::string& name : ordered.order) {
    Outcome outcome{Outcome::Kind::kDone, name, "", 0};
    Slot& slot = slots_[name];
    std::shared_ptr<Plugin> plugin = opened[name];
    try {
      for (const std::string& service : plugin->dependencies()) {
        const std::string& owner = ordered.provider.at(service);
        if (owner != name && !slots_[owner].current) {
          throw LoadError("plugin '" + name + "': depends on " + service + " of plugin '" + owner +
                          "', which was refused");
        }
      }
      check_conflicts(*plugin, nullptr);
      start_serving(slot, plugin, nullptr);
      outcome.generation = plugin->generation();
    } catch (const std::exception& e) {
      refuse(slot, e.what(), outcome);
    }
    outcomes.push_back(outcome);
  }
  return outcomes;
}

Outcome PluginManager::load(const config::PluginConfig& entry) {
  std::lock_guard ops(ops_mu_);
  return load_locked(entry);
}

Outcome PluginManager::load_locked(const config::PluginConfig& entry) {
  Outcome outcome{Outcome::Kind::kDone, entry.name, "", 0};
  Slot* slot = nullptr;
  {
    std::lock_guard lock(state_mu_);
    auto [it, inserted] = slots_.try_emplace(entry.name);
    if (!inserted && it->second.current) {
      outcome.kind = Outcome::Kind::kRefused;
      outcome.message = "plugin '" + entry.name + "' is already loaded (generation " +
                        std::to_string(it->second.current->generation()) + "); reload it instead";
      return outcome;
    }
    it->second.entry = entry;
    if (inserted) order_.push_back(entry.name);
    slot = &it->second;
  }
  try {
    std::shared_ptr<Plugin> plugin = open_staged(entry, ++slot->last_generation, read_plugin_file(entry));
    check_conflicts(*plugin, nullptr);
    for (const std::string& service : plugin->dependencies()) {
      if (std::none_of(routes()->begin(), routes()->end(), [&](const auto& route) {
            return route.first.compare(1, service.size() + 1, service + "/") == 0;
          })) {
        throw LoadError("plugin '" + entry.name + "': depends on " + service +
                        ", which no loaded plugin serves");
      }
    }
    start_serving(*slot, plugin, nullptr);
    outcome.generation = plugin->generation();
  } catch (const std::exception& e) {
    refuse(*slot, e.what(), outcome);
  }
  return outcome;
}

Outcome PluginManager::reload(const std::string& name, bool force) {
  std::lock_guard ops(ops_mu_);
  config::PluginConfig entry;
  {
    std::lock_guard lock(state_mu_);
    auto it = slots_.find(name);
    if (it == slots_.end())
      return {Outcome::Kind::kNotFound, name, "no plugin named '" + name + "' is configured or loaded", 0};
    entry = it->second.entry;
  }
  return reload_locked(name, entry, force, false);
}

Outcome PluginManager::reload_locked(const std::string& name, const config::PluginConfig& entry, bool force,
                                     bool entry_changed) {
  Slot& slot = slots_.at(name);
  if (!entry.enabled)
    return {Outcome::Kind::kRefused, name, "plugin '" + name + "' is disabled in the config", 0};
  if (!slot.current) return load_locked(entry);
  if (slot.current->builtin())
    return {Outcome::Kind::kRefused, name, "plugin '" + name + "' is built into the host", 0};
  const std::shared_ptr<Plugin> old = slot.current;
  Outcome outcome{Outcome::Kind::kDone, name, "", old->generation()};
  std::shared_ptr<Plugin> next;
  try {
    const PluginFile file = read_plugin_file(entry);  // read once: for the hash and for staging
    if (!force && !entry_changed && file.hash == old->file_hash()) {
      outcome.kind = Outcome::Kind::kUnchanged;
      return outcome;
    }
    next = open_staged(entry, ++slot.last_generation, file);
    if (!force) {
      if (std::string why = incompatible_routes(old->methods(), next->methods()); !why.empty()) {
        throw LoadError("plugin '" + name + "' generation " + std::to_string(next->generation()) + ": " +
                        why + " (reload with force to accept)");
      }
    }
    check_conflicts(*next, old.get());
    start_serving(slot, next, old);  // the swap: new calls go to the new generation from here on
  } catch (const std::exception& e) {
    if (next) next->set_state(GenerationState::kFailed);
    refuse(slot, e.what(), outcome);
    std::lock_guard lock(state_mu_);
    if (next) {
      GenerationRecord record = record_of(*next);
      record.error = e.what();
      slot.history.push_front(record);
      if (slot.history.size() > kHistoryLength) slot.history.pop_back();
    }
    return outcome;
  }

  {
    std::lock_guard lock(state_mu_);
    slot.entry = entry;
  }
  outcome.generation = next->generation();
  outcome.message = "generation " + std::to_string(next->generation()) + " serving";

  // Live streams continue in the new generation where both generations can move them.
  size_t moving = 0;
  old->for_each_live_call([&](LiveCall& call) {
    if (!is_streaming(call.kind())) return;
    const Method* before = old->find_method(call.method_name());
    const Method* after = next->find_method(call.method_name());
    if (before != nullptr && after != nullptr && before->movable && after->movable &&
        after->kind == before->kind) {
      call.request_move(next, after->index);
      ++moving;
    }
  });
  emit(name, old->generation(), Event::Kind::kDraining,
       std::to_string(old->live_call_count()) + " calls in flight, " + std::to_string(moving) +
           " streams moving");
  retire_later(old);
  return outcome;
}

Outcome PluginManager::unload(const std::string& name, bool force) {
  std::lock_guard ops(ops_mu_);
  return unload_locked(name, force, false);
}

Outcome PluginManager::unload_locked(const std::string& name, bool force, bool forget) {
  Outcome outcome{Outcome::Kind::kDone, name, "", 0};
  auto it = slots_.find(name);
  if (it == slots_.end() || !it->second.current) {
    if (forget && it != slots_.end()) {
      std::lock_guard lock(state_mu_);
      slots_.erase(it);
      std::erase(order_, name);
      return outcome;
    }
    return {Outcome::Kind::kNotFound, name, "plugin '" + name + "' is not loaded", 0};
  }
  Slot& slot = it->second;
  if (slot.current->builtin() && !force)
    return {Outcome::Kind::kRefused, name, "plugin '" + name + "' is built into the host", 0};
  const std::vector<std::string> dependants = dependants_of(*slot.current);
  if (!dependants.empty() && !force) {
    std::string list;
    for (const auto& d : dependants) list += (list.empty() ? "" : "; ") + d;
    refuse(slot, "unloading plugin '" + name + "' is refused: " + list + " (unload those first, or force)",
           outcome);
    return outcome;
  }
  std::shared_ptr<Plugin> old = slot.current;
  publish_routes(old.get(), nullptr);
  old->set_state(GenerationState::kDraining);
  {
    std::lock_guard lock(state_mu_);
    slot.current.reset();
    if (forget) {
      slots_.erase(it);
      std::erase(order_, name);
    }
  }
  emit(name, old->generation(), Event::Kind::kUnloaded,
       std::to_string(old->live_call_count()) + " calls in flight drain");
  retire_later(std::move(old));
  return outcome;
}

std::vector<Outcome> PluginManager::apply_config(const config::Config& config) {
  std::lock_guard ops(ops_mu_);
  std::vector<Outcome> outcomes;
  std::set<std::string> wanted;
  for (const auto& entry : config.plugins) wanted.insert(entry.name);
  // Removed plugins first, in reverse load order, so dependants go before what they depend on.
  std::vector<std::string> order;
  {
    std::lock_guard lock(state_mu_);
    order = order_;
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const Slot& slot = slots_.at(*it);
    if (wanted.contains(*it) || (slot.current && slot.current->builtin())) continue;
    outcomes.push_back(unload_locked(*it, false, true));
  }
  for (const config::PluginConfig& entry : config.plugins) {
    auto it = slots_.find(entry.name);
    if (it == slots_.end()) {
      if (entry.enabled) {
        outcomes.push_back(load_locked(entry));
      } else {
        std::lock_guard lock(state_mu_);
        slots_[entry.name].entry = entry;
        order_.push_back(entry.name);
      }
      continue;
    }
    const config::PluginConfig& before = it->second.entry;
    const bool changed = before.path != entry.path || before.enabled != entry.enabled ||
                         before.settings != entry.settings || access_text(before) != access_text(entry);
    if (!entry.enabled) {
      if (it->second.current) outcomes.push_back(unload_locked(entry.name, false, false));
      std::lock_guard lock(state_mu_);
      it->second.entry = entry;
      continue;
    }
    if (!it->second.current) {
      outcomes.push_back(load_locked(entry));
      continue;
    }
    Outcome outcome = reload_locked(entry.name, entry, false, changed);
    if (!changed && outcome.kind == Outcome::Kind::kUnchanged) {
      std::lock_guard lock(state_mu_);
      it->second.entry = entry;  // positions in the file may have moved
      continue;
    }
    outcomes.push_back(outcome);
  }
  return outcomes;
}

Outcome PluginManager::add_builtin(std::shared_ptr<Plugin> plugin, const config::PluginConfig& entry) {
  std::lock_guard ops(ops_mu_);
  Outcome outcome{Outcome::Kind::kDone, entry.name, "", 1};
  {
    std::lock_guard lock(state_mu_);
    Slot& slot = slots_[entry.name];
    slot.entry = entry;
    order_.push_back(entry.name);
  }
  try {
    plugin->set_generation(++slots_[entry.name].last_generation);
    plugin->set_platform(options_.platform);
    start_serving(slots_[entry.name], plugin, nullptr);
  } catch (const std::exception& e) {
    refuse(slots_[entry.name], e.what(), outcome);
  }
  return outcome;
}

std::optional<config::PluginConfig> PluginManager::entry(const std::string& name) const {
  std::lock_guard lock(state_mu_);
  auto it = slots_.find(name);
  if (it == slots_.end()) return std::nullopt;
  return it->second.entry;
}

void PluginManager::notify_stopping() {
  emit("", 0, Event::Kind::kStopping, "the host is shutting down");
}

std::vector<Outcome> PluginManager::reload_changed() {
  std::vector<std::string> names;
  {
    std::lock_guard lock(state_mu_);
    for (const std::string& name : order_) {
      const Slot& slot = slots_.at(name);
      if (slot.current && !slot.current->builtin()) names.push_back(name);
    }
  }
  std::vector<Outcome> outcomes;
  for (const std::string& name : names) {
    Outcome outcome = reload(name);
    if (outcome.kind != Outcome::Kind::kUnchanged) outcomes.push_back(outcome);
  }
  return outcomes;
}

void PluginManager::retire_later(std::shared_ptr<Plugin> plugin) {
  {
    std::lock_guard lock(state_mu_);
    if (auto it = slots_.find(plugin->name()); it != slots_.end()) {
      std::erase_if(it->second.draining, [](const auto& weak) { return weak.expired(); });
      it->second.draining.push_back(plugin);
    }
  }
  {
    std::lock_guard lock(reaper_mu_);
    retiring_.push_back({std::move(plugin), std::chrono::steady_clock::now() + options_.drain_timeout});
  }
  reaper_cv_.notify_all();
}

void PluginManager::reap() {
  platform::lower_this_thread_priority();
  std::unique_lock lock(reaper_mu_);
  for (;;) {
    reaper_cv_.wait(lock, [this] { return stopping_ || !retiring_.empty(); });
    if (retiring_.empty()) return;
    Retiring next = std::move(retiring_.front());
    retiring_.pop_front();
    ++reaping_;
    lock.unlock();
    retire_now(std::move(next.plugin), next.deadline);
    lock.lock();
    --reaping_;
    reaper_cv_.notify_all();
  }
}

void PluginManager::retire_now(std::shared_ptr<Plugin> plugin,
                               std::chrono::steady_clock::time_point deadline) {
  const std::string name = plugin->name();
  const uint64_t generation = plugin->generation();
  if (!plugin->wait_idle(deadline)) {
    const std::string message = "generation " + std::to_string(generation) + " of plugin '" + name +
                                "' was replaced and its drain of " +
                                std::to_string(options_.drain_timeout.count()) + " ms ran out";
    // Calls it forwarded to other hosts end with it: a handler waiting on one can then finish.
    if (options_.platform != nullptr && options_.platform->remote != nullptr)
      options_.platform->remote->cancel_owned(plugin->self(), std::chrono::steady_clock::now() + kAbortGrace);
    size_t aborted = 0;
    plugin->for_each_live_call([&](LiveCall& call) {
      call.request_abort(message);
      ++aborted;
    });
    emit(name, generation, Event::Kind::kDraining,
         std::to_string(aborted) + " calls cancelled with UNAVAILABLE at the drain deadline");
    if (!plugin->wait_idle(std::chrono::steady_clock::now() + kAbortGrace)) {
      emit(name, generation, Event::Kind::kFailed,
           std::to_string(plugin->live_call_count()) +
               " calls were never finished by the plugin; the generation stays mapped");
      std::lock_guard lock(reaper_mu_);
      stuck_.push_back(std::move(plugin));
      return;
    }
  }
  // The last call has unregistered; its own reference goes a moment later on its thread.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (plugin.use_count() > 1 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const std::string mapped = plugin->path().string();
  plugin->set_state(GenerationState::kRetired);
  GenerationRecord record = record_of(*plugin);
  {
    std::lock_guard lock(state_mu_);
    if (auto it = slots_.find(name); it != slots_.end()) {
      it->second.history.push_front(record);
      if (it->second.history.size() > kHistoryLength) it->second.history.pop_back();
    }
  }
  const long references = plugin.use_count();
  plugin.reset();  // on_shutdown, then dlclose
  const bool still_mapped = references == 1 && read_file("/proc/self/maps").find(mapped) != std::string::npos;
  emit(name, generation, Event::Kind::kRetired,
       references > 1 ? "still referenced; unmapped when the last reference goes"
                      : (still_mapped ? "still mapped after dlclose" : "unmapped"));
}

void PluginManager::unload_all() {
  {
    std::lock_guard ops(ops_mu_);
    std::vector<std::string> order;
    {
      std::lock_guard lock(state_mu_);
      order = order_;
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      auto slot = slots_.find(*it);
      if (slot != slots_.end() && slot->second.current) unload_locked(*it, true, false);
    }
  }
  // Not under ops_mu_: a retiring plugin may be finishing a request that needs it.
  wait_retired();
}

void PluginManager::wait_retired() {
  std::unique_lock lock(reaper_mu_);
  reaper_cv_.wait(lock, [this] { return retiring_.empty() && reaping_ == 0; });
}

std::vector<PluginStatus> PluginManager::status() const {
  std::vector<PluginStatus> out;
  std::vector<std::string> order;
  {
    std::lock_guard lock(state_mu_);
    order = order_;
  }
  for (const std::string& name : order) {
    if (auto status = this->status(name)) out.push_back(std::move(*status));
  }
  return out;
}

std::optional<PluginStatus> PluginManager::status(const std::string& name) const {
  std::lock_guard lock(state_mu_);
  auto it = slots_.find(name);
  if (it == slots_.end()) return std::nullopt;
  const Slot& slot = it->second;
  PluginStatus status;
  status.name = name;
  status.path = slot.entry.path;
  status.enabled = slot.entry.enabled;
  status.loaded = slot.current != nullptr;
  status.last_error = slot.last_error;
  if (slot.current) {
    const Plugin& plugin = *slot.current;
    status.abi_minor = plugin.abi_minor();
    status.description = plugin.description();
    for (const Method& method : plugin.methods()) status.methods.push_back(method.full_name);
    status.dependencies = plugin.dependencies();
    status.generations.push_back(record_of(plugin));
  }
  for (auto it = slot.draining.rbegin(); it != slot.draining.rend(); ++it) {
    if (auto plugin = it->lock(); plugin && plugin->state() == GenerationState::kDraining) {
      status.generations.push_back(record_of(*plugin));
    }
  }
  for (const GenerationRecord& record : slot.history) status.generations.push_back(record);
  return status;
}

std::vector<std::filesystem::path> PluginManager::watched_files() const {
  std::lock_guard lock(state_mu_);
  std::vector<std::filesystem::path> files;
  for (const auto& [name, slot] : slots_) {
    if (slot.entry.enabled) files.push_back(slot.entry.path);
  }
  return files;
}

}  // namespace gameverse::plugin
