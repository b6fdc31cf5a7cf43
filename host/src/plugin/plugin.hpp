// One loaded plugin generation: the mapped library, its negotiated descriptor, its private
// descriptor pool, its checked config and its instance.
#pragma once

#include <gameverse/abi.h>
#include <google/protobuf/descriptor.h>

#include <atomic>
#include <boost/dll/shared_library.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <variant>
#include <vector>

#include "config/config.hpp"
#include "logging/format.hpp"

#include "platform/platform.hpp"
#include "plugin/negotiation.hpp"

// The host's record of a plugin generation, handed to the plugin as its `self`.
struct gv_host_plugin {
  using Value = std::variant<std::string, int64_t, double, bool>;
  std::string name;
  std::shared_ptr<gameverse::logging::PluginLogger> logger;
  std::map<std::string, Value, std::less<>> config;
  const gameverse::platform::Platform* platform = nullptr;  // null: no platform services
  std::vector<std::string> collections;                     // declared in the descriptor
  // Timers and subscriptions flagged GV_RUN_BLOCKING: their id → their serial in the blocking pool.
  std::mutex blocking_mu;
  std::map<uint64_t, uint64_t> blocking_timers;
  std::map<uint64_t, uint64_t> blocking_subscriptions;
  // The ids of the store, cache and pub/sub operation metrics, registered on first use.
  std::once_flag operation_metrics_once;
  uint64_t operations_metric = 0;  // 0: not registered (no registry, or refused)
  uint64_t operation_seconds_metric = 0;
};

namespace gameverse::plugin {

struct Method {
  std::string full_name;  // "/package.Service/Method"
  gv_call_kind kind;
  uint32_t index;                                        // position in the descriptor's method table
  const google::protobuf::MethodDescriptor* descriptor;  // in the plugin's private pool
  bool movable;                                          // GV_METHOD_MOVABLE
  config::AccessPolicy access;                           // the plugin's, or the config's override
};

class Plugin;

// A call in flight as a generation sees it, so that hot reload can move or end it. Requests are
// carried out on the call's own thread; they are made under the generation's call-registry lock,
// which the call takes before it unregisters and goes away.
class LiveCall {
 public:
  // Continue this streaming call in `next` (method `method_index` there).
  virtual void request_move(std::shared_ptr<Plugin> next, uint32_t method_index) = 0;
  // End the call with UNAVAILABLE and `message`, and tell the plugin it was cancelled.
  virtual void request_abort(std::string message) = 0;
  virtual gv_call_kind kind() const = 0;
  virtual const std::string& method_name() const = 0;

 protected:
  ~LiveCall() = default;
};

enum class GenerationState { kLoading, kServing, kDraining, kRetired, kFailed };
const char* to_string(GenerationState state);

class Plugin {
 public:
  // Maps the library, negotiates the ABI, builds the descriptor pool, checks the methods and the
  // config table. Nothing of the plugin runs but its entry function. Throws LoadError.
  // `load_from`, when set, is the file to map instead of entry.path (a staged copy for hot
  // reload); messages still name entry.path.
  static std::unique_ptr<Plugin> open(const config::PluginConfig& entry,
                                      const std::filesystem::path& load_from = {});

  // A plugin compiled into the host (the admin service): the same checks, no library.
  static std::unique_ptr<Plugin> open_builtin(const gv_plugin_descriptor* descriptor,
                                              const config::PluginConfig& entry);
  bool builtin() const { return builtin_; }

  // Creates the plugin's instance with the state of a previous generation. Throws LoadError.
  void init(std::string_view previous_state = {});

  // What the instance hands to the next generation (gv_on_save_state). Throws LoadError.
  std::string save_state();

  // Generation bookkeeping, set by the manager.
  uint64_t generation() const { return generation_; }
  void set_generation(uint64_t generation) {
    generation_ = generation;
    self_.logger->set_generation(generation);
  }
  const std::string& file_hash() const { return file_hash_; }
  void set_file_hash(std::string hash) { file_hash_ = std::move(hash); }
  // The file as configured (path() is the staged copy that was mapped).
  const std::filesystem::path& source_path() const { return source_path_; }
  void set_source_path(std::filesystem::path path) { source_path_ = std::move(path); }
  GenerationState state() const { return state_; }
  std::chrono::system_clock::time_point loaded_at() const { return loaded_at_; }
  std::string description() const { return descriptor_->description ? descriptor_->description : ""; }
  // Serving starts the generation's subscriptions; draining stops them.
  void set_state(GenerationState state);
  // At the swap: the old generation's subscriptions stop and this one's start, at once.
  void take_over_subscriptions(Plugin& old);
  const Method* find_method(std::string_view full_name) const;

  // Calls in flight on this generation.
  void register_call(LiveCall* call);
  void unregister_call(LiveCall* call);
  size_t live_call_count() const;
  // Runs `f` on every live call under the registry lock (see LiveCall).
  void for_each_live_call(const std::function<void(LiveCall&)>& f);
  // Waits until no call is live or `deadline` passes; true when none is.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);

  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const std::string& name() const { return self_.name; }
  const std::string& version() const { return version_; }
  const std::filesystem::path& path() const { return path_; }
  uint32_t abi_minor() const { return api_.abi_minor; }
  const gv_plugin_descriptor& descriptor() const { return *descriptor_; }
  const std::vector<Method>& methods() const { return methods_; }
  const std::vector<std::string>& dependencies() const { return dependencies_; }
  const std::vector<std::string>& collections() const { return self_.collections; }
  void set_platform(const platform::Platform* platform) { self_.platform = platform; }
  const google::protobuf::DescriptorPool& pool() const { return *pool_; }
  // The same pool, for users that may outlive the generation (a transcoding answer in flight).
  std::shared_ptr<const google::protobuf::DescriptorPool> shared_pool() const { return pool_; }
  void* instance() const { return instance_; }
  gv_host_plugin* self() { return &self_; }

 private:
  Plugin() = default;
  void take_descriptor(const config::PluginConfig& entry, const std::string& who);
  void build_pool();
  void check_methods();
  void apply_access_overrides(const config::PluginConfig& entry);
  void check_config(const config::PluginConfig& entry);

  boost::dll::shared_library library_;  // first member: unmapped last
  std::filesystem::path path_;
  std::string version_;
  const gv_plugin_descriptor* descriptor_ = nullptr;
  Negotiated negotiated_{};
  gv_host_api api_{};
  gv_host_plugin self_;
  std::shared_ptr<google::protobuf::DescriptorPool> pool_;
  std::vector<Method> methods_;
  std::vector<std::string> dependencies_;
  void* instance_ = nullptr;

  bool builtin_ = false;
  bool init_called_ = false;
  uint64_t generation_ = 0;
  std::chrono::system_clock::time_point loaded_at_ = std::chrono::system_clock::now();
  std::string file_hash_;
  std::filesystem::path source_path_;
  std::atomic<GenerationState> state_{GenerationState::kLoading};

  mutable std::mutex calls_mu_;
  std::condition_variable calls_idle_;
  std::unordered_set<LiveCall*> live_calls_;
};

// Why a plugin was refused; what() is the complete message, naming the plugin and its file.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The function table handed to plugins at ABI minor `minor`.
gv_host_api host_api(uint32_t minor);

}  // namespace gameverse::plugin
