#include "plugin/plugin_set.hpp"

#include <spdlog/spdlog.h>

namespace gameverse::plugin {

std::vector<PluginSet::Failure> PluginSet::load_all(const config::Config& config) {
  std::vector<Failure> failures;
  auto table = std::make_shared<RouteTable>(*routes());
  std::lock_guard lock(mu_);
  for (const config::PluginConfig& entry : config.plugins) {
    if (!entry.enabled) {
      spdlog::info("plugin '{}' is disabled in the config", entry.name);
      continue;
    }
    try {
      std::shared_ptr<Plugin> plugin = Plugin::open(entry);
      for (const Method& method : plugin->methods()) {
        for (std::string_view reserved : {"/grpc.", "/gameverse.host."}) {
          if (method.full_name.rfind(reserved, 0) == 0) {
            throw LoadError("plugin '" + entry.name + "' (" + entry.path.string() + "): method " +
                            method.full_name + " is in a package the host reserves (" +
                            std::string(reserved.substr(1)) + "*)");
          }
        }
        if (auto it = table->find(method.full_name); it != table->end()) {
          throw LoadError("plugin '" + entry.name + "' (" + entry.path.string() + "): method " +
                          method.full_name + " is already served by plugin '" + it->second.plugin->name() +
                          "'; a method has one owner");
        }
      }
      plugin->init();
      for (const Method& method : plugin->methods()) {
        table->emplace(method.full_name, Route{plugin, method.index, method.kind});
      }
      spdlog::info("loaded plugin '{}' {} from {} (ABI {}.{}, {} methods)", plugin->name(), plugin->version(),
                   plugin->path().string(), GV_ABI_VERSION_MAJOR, plugin->abi_minor(),
                   plugin->methods().size());
      plugins_.push_back(std::move(plugin));
    } catch (const std::exception& e) {
      spdlog::error("refused {}", e.what());
      failures.push_back({entry.name, e.what()});
    }
  }
  std::atomic_store(&routes_, std::shared_ptr<const RouteTable>(std::move(table)));
  return failures;
}

std::vector<std::shared_ptr<Plugin>> PluginSet::plugins() const {
  std::lock_guard lock(mu_);
  return plugins_;
}

void PluginSet::unload_all() {
  std::atomic_store(&routes_, std::make_shared<const RouteTable>());
  std::vector<std::shared_ptr<Plugin>> plugins;
  {
    std::lock_guard lock(mu_);
    plugins.swap(plugins_);
  }
  // Unload in reverse load order, so a plugin outlives those loaded after it.
  while (!plugins.empty()) {
    const std::string name = plugins.back()->name();
    if (plugins.back().use_count() > 1) {
      spdlog::warn("plugin '{}' still has {} references at unload", name, plugins.back().use_count() - 1);
    }
    plugins.pop_back();
    spdlog::info("unloaded plugin '{}'", name);
  }
}

}  // namespace gameverse::plugin
