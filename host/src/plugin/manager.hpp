// The plugins of a running host: loading in dependency order, the route table, and hot reload —
// stage, load, negotiate, check routes, hand state over, swap, move live streams, drain, retire.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "plugin/plugin.hpp"

namespace gameverse::plugin {

struct Route {
  std::shared_ptr<Plugin> plugin;  // each call holds its generation for as long as it runs
  uint32_t method_index;
  gv_call_kind kind;
  config::AccessPolicy access;  // checked by the gate before the call reaches the plugin
};

using RouteTable = std::unordered_map<std::string, Route>;

// The services the table routes to ("package.Service" of each "/package.Service/Method").
std::set<std::string> services_of(const RouteTable& routes);

// One step in a plugin's life, for the log, the admin service and gvctl.
struct Event {
  enum class Kind {
    kServing,   // a generation serves (a load, a reload, a built-in plugin)
    kDraining,  // a replaced generation waits for its calls, or its drain ran out
    kRetired,   // a generation was unmapped
    kRefused,   // a load, reload or unload was refused; the serving generation is unchanged
    kUnloaded,  // a plugin stopped serving
    kFailed,    // a generation's calls never finished: it stays mapped
    kStopping,  // the host is shutting down (not a plugin's event)
  };
  std::chrono::system_clock::time_point time;
  std::string plugin;
  uint64_t generation = 0;
  Kind kind = Kind::kServing;
  std::string message;
};

// The kind as the admin service's PluginEvent.kind carries it: "serving", "draining", ...
const char* to_string(Event::Kind kind);

struct GenerationRecord {
  uint64_t number = 0;
  std::string version;
  std::string file_hash;  // SHA-256 of the file that was loaded
  GenerationState state = GenerationState::kLoading;
  std::string error;
  std::chrono::system_clock::time_point loaded_at;
  size_t live_calls = 0;
};

struct PluginStatus {
  std::string name;
  std::filesystem::path path;
  bool enabled = true;
  bool loaded = false;
  uint32_t abi_minor = 0;
  std::string description;
  std::vector<std::string> methods;
  std::vector<std::string> dependencies;
  std::string last_error;
  std::vector<GenerationRecord> generations;  // newest first: the serving one, then older ones
};

// What a load, reload or unload came to.
struct Outcome {
  enum class Kind {
    kDone,       // the change was made
    kUnchanged,  // a reload found the file unchanged: nothing to do
    kNotFound,   // no plugin by that name is configured, or it is not loaded
    kRefused,    // refused; the message says why and what serves is unchanged
  };
  Kind kind = Kind::kDone;
  std::string plugin;
  std::string message;
  uint64_t generation = 0;  // the generation serving afterwards

  bool ok() const { return kind == Kind::kDone || kind == Kind::kUnchanged; }
};

class PluginManager {
 public:
  struct Options {
    std::filesystem::path staging_dir;  // where plugin files are copied before they are mapped
    std::chrono::milliseconds drain_timeout{5000};
    const platform::Platform* platform = nullptr;  // store, timers, metrics, calls; null: none
  };

  explicit PluginManager(Options options);
  ~PluginManager();
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  // Loads every enabled plugin of the config, in dependency order. A plugin that fails is refused
  // with its message and the others load. Returns one outcome per enabled plugin.
  std::vector<Outcome> load_all(const config::Config& config);

  // Loads the plugin's file again if it changed (always with `force`), and swaps it in. Any
  // failure before the swap leaves the serving generation as it is. `force` also accepts routes
  // whose message types changed incompatibly.
  Outcome reload(const std::string& name, bool force = false);

  // Loads a plugin that is not loaded: a new entry, or one configured but refused or unloaded.
  Outcome load(const config::PluginConfig& entry);

  // Unloads a plugin; refused while another loaded plugin depends on it, unless `force`.
  Outcome unload(const std::string& name, bool force = false);

  // Brings the plugins in line with a new config: added ones load, removed ones unload, changed
  // ones reload with their new entry, and unchanged ones reload if their file changed.
  std::vector<Outcome> apply_config(const config::Config& config);

  // Reloads every loaded plugin whose file changed on disk.
  std::vector<Outcome> reload_changed();

  // Serves a plugin compiled into the host; it cannot be reloaded or unloaded by request.
  Outcome add_builtin(std::shared_ptr<Plugin> plugin, const config::PluginConfig& entry);

  // The config entry of a plugin, when it has one.
  std::optional<config::PluginConfig> entry(const std::string& name) const;

  // Tells subscribers the host is about to stop (Event::Kind::kStopping), so that long-lived
  // streams of theirs can end before the drain.
  void notify_stopping();

  std::shared_ptr<const RouteTable> routes() const { return std::atomic_load(&routes_); }
  std::vector<PluginStatus> status() const;
  std::optional<PluginStatus> status(const std::string& name) const;
  std::vector<std::filesystem::path> watched_files() const;

  // Events go to every subscriber, on the thread that caused them; keep callbacks short.
  int subscribe(std::function<void(const Event&)> listener);
  void unsubscribe(int id);

  // Unloads everything, dependants first, waiting for each generation to drain.
  void unload_all();

  // Waits until every replaced or unloaded generation has drained and retired.
  void wait_retired();

 private:
  struct Slot {
    config::PluginConfig entry;
    std::shared_ptr<Plugin> current;
    uint64_t last_generation = 0;
    std::string last_error;
    std::vector<std::weak_ptr<Plugin>> draining;  // replaced or unloaded, not yet retired
    std::deque<GenerationRecord> history;         // retired or failed generations, newest first
  };
  struct PluginFile {
    std::string bytes;
    std::string hash;  // SHA-256, hex
  };
  struct Retiring {
    std::shared_ptr<Plugin> plugin;
    std::chrono::steady_clock::time_point deadline;
  };

  static PluginFile read_plugin_file(const config::PluginConfig& entry);
  std::shared_ptr<Plugin> open_staged(const config::PluginConfig& entry, uint64_t generation,
                                      const PluginFile& file);
  Outcome load_locked(const config::PluginConfig& entry);
  Outcome reload_locked(const std::string& name, const config::PluginConfig& entry, bool force,
                        bool entry_changed);
  Outcome unload_locked(const std::string& name, bool force, bool forget);
  void check_conflicts(const Plugin& plugin, const Plugin* replacing) const;
  std::vector<std::string> dependants_of(const Plugin& plugin) const;
  void publish_routes(const Plugin* removed, const std::shared_ptr<Plugin>& added);
  // The one way a generation starts: init (with the state of `old`, which it replaces, if any),
  // then it serves, its routes are published, the slot holds it and subscribers hear of it.
  // Throws what init throws, before anything changed.
  void start_serving(Slot& slot, const std::shared_ptr<Plugin>& next, const std::shared_ptr<Plugin>& old);
  void retire_later(std::shared_ptr<Plugin> plugin);
  void reap();
  void retire_now(std::shared_ptr<Plugin> plugin, std::chrono::steady_clock::time_point deadline);
  void refuse(Slot& slot, const std::string& message, Outcome& outcome);
  void emit(const std::string& plugin, uint64_t generation, Event::Kind kind, const std::string& message);
  static GenerationRecord record_of(const Plugin& plugin);

  Options options_;
  std::mutex ops_mu_;            // one change at a time
  mutable std::mutex state_mu_;  // slots_ and order_, for readers
  std::map<std::string, Slot> slots_;
  std::vector<std::string> order_;  // load order
  std::shared_ptr<const RouteTable> routes_ = std::make_shared<RouteTable>();
  uint64_t staged_count_ = 0;

  std::mutex listeners_mu_;
  std::map<int, std::function<void(const Event&)>> listeners_;
  int next_listener_ = 1;

  std::mutex reaper_mu_;
  std::condition_variable reaper_cv_;
  std::deque<Retiring> retiring_;
  std::vector<std::shared_ptr<Plugin>> stuck_;  // calls never finished: never unmapped
  bool stopping_ = false;
  size_t reaping_ = 0;
  std::thread reaper_;
};

// SHA-256 of bytes, in lower-case hex.
std::string sha256_hex(std::string_view bytes);

}  // namespace gameverse::plugin
