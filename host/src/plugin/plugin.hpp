// One loaded plugin generation: the mapped library, its negotiated descriptor, its private
// descriptor pool, its checked config and its instance.
#pragma once

#include <gameverse/abi.h>
#include <google/protobuf/descriptor.h>
#include <spdlog/logger.h>

#include <boost/dll/shared_library.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "config/config.hpp"

// The host's record of a plugin generation, handed to the plugin as its `self`.
struct gv_host_plugin {
  using Value = std::variant<std::string, int64_t, double, bool>;
  std::string name;
  std::shared_ptr<spdlog::logger> logger;
  std::map<std::string, Value, std::less<>> config;
};

namespace gameverse::plugin {

struct Method {
  std::string full_name;  // "/package.Service/Method"
  gv_call_kind kind;
  uint32_t index;                                        // position in the descriptor's method table
  const google::protobuf::MethodDescriptor* descriptor;  // in the plugin's private pool
};

class Plugin {
 public:
  // Maps the library, negotiates the ABI, builds the descriptor pool, checks the methods and the
  // config table. Nothing of the plugin runs but its entry function. Throws LoadError.
  static std::unique_ptr<Plugin> open(const config::PluginConfig& entry);

  // Creates the plugin's instance with the state of a previous generation. Throws LoadError.
  void init(std::string_view previous_state = {});

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
  const google::protobuf::DescriptorPool& pool() const { return *pool_; }
  void* instance() const { return instance_; }
  gv_host_plugin* self() { return &self_; }

 private:
  Plugin() = default;
  void build_pool();
  void check_methods();
  void check_config(const config::PluginConfig& entry);

  boost::dll::shared_library library_;  // first member: unmapped last
  std::filesystem::path path_;
  std::string version_;
  const gv_plugin_descriptor* descriptor_ = nullptr;
  gv_host_api api_{};
  gv_host_plugin self_;
  std::unique_ptr<google::protobuf::DescriptorPool> pool_;
  std::vector<Method> methods_;
  std::vector<std::string> dependencies_;
  void* instance_ = nullptr;
};

// Why a plugin was refused; what() is the complete message, naming the plugin and its file.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The function table handed to plugins at ABI minor `minor`.
gv_host_api host_api(uint32_t minor);

}  // namespace gameverse::plugin
