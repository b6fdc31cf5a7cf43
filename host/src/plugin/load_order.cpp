#include "plugin/load_order.hpp"

#include <algorithm>
#include <functional>

namespace gameverse::plugin {

namespace {

// Sorted by name: the provider of a service served twice does not depend on config order.
std::vector<const PluginServices*> by_name(const std::vector<PluginServices>& plugins) {
  std::vector<const PluginServices*> sorted;
  for (const PluginServices& plugin : plugins) sorted.push_back(&plugin);
  std::stable_sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->name < b->name; });
  return sorted;
}

}  // namespace

LoadOrder load_order(const std::vector<PluginServices>& loading, const std::vector<PluginServices>& serving) {
  LoadOrder result;
  std::map<std::string, const PluginServices*> opened;
  for (const PluginServices* plugin : by_name(loading)) {
    opened.emplace(plugin->name, plugin);
    for (const std::string& service : plugin->services) result.provider.emplace(service, plugin->name);
  }
  for (const PluginServices* plugin : by_name(serving)) {
    for (const std::string& service : plugin->services) result.provider.emplace(service, plugin->name);
  }

  std::map<std::string, int> mark;  // 0 new, 1 on the path, 2 done
  std::function<bool(const std::string&, std::vector<std::string>&)> visit =
      [&](const std::string& name, std::vector<std::string>& path) {
        if (mark[name] == 2) return true;  // refused or ordered: the start says which
        if (mark[name] == 1) {
          std::string cycle;
          for (auto it = std::find(path.begin(), path.end(), name); it != path.end(); ++it)
            cycle += *it + " -> ";
          result.refused[name] = "dependency cycle: " + cycle + name;
          return false;
        }
        mark[name] = 1;
        path.push_back(name);
        bool ok = true;
        for (const std::string& service : opened.at(name)->dependencies) {
          auto it = result.provider.find(service);
          if (it == result.provider.end()) {
            result.refused[name] = "depends on " + service + ", which no configured plugin serves";
            ok = false;
            break;
          }
          if (it->second == name || !opened.contains(it->second)) continue;
          if (!visit(it->second, path)) {
            if (!result.refused.contains(name)) result.refused[name] = result.refused[it->second];
            ok = false;
            break;
          }
        }
        path.pop_back();
        mark[name] = 2;
        if (ok) result.order.push_back(name);
        return ok;
      };
  for (const PluginServices& plugin : loading) {
    std::vector<std::string> path;
    visit(plugin.name, path);
  }
  return result;
}

}  // namespace gameverse::plugin
