// The loaded plugins and the route table from "/package.Service/Method" to the plugin serving it.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "plugin/plugin.hpp"

namespace gameverse::plugin {

struct Route {
  std::shared_ptr<Plugin> plugin;  // each call holds a reference for as long as it runs
  uint32_t method_index;
  gv_call_kind kind;
};

using RouteTable = std::unordered_map<std::string, Route>;

class PluginSet {
 public:
  struct Failure {
    std::string plugin;
    std::string message;
  };

  // Loads every enabled plugin in config order. A plugin that fails is refused with its message
  // and the others load; a method claimed by two plugins refuses the second, naming both.
  std::vector<Failure> load_all(const config::Config& config);

  // The current routes; callers keep the snapshot for the duration of a lookup.
  std::shared_ptr<const RouteTable> routes() const { return std::atomic_load(&routes_); }

  std::vector<std::shared_ptr<Plugin>> plugins() const;

  // Drops the routes and destroys every plugin (its on_shutdown runs once its last call is gone).
  void unload_all();

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Plugin>> plugins_;
  std::shared_ptr<const RouteTable> routes_ = std::make_shared<RouteTable>();
};

}  // namespace gameverse::plugin
