// The order plugins start in: each after the plugins serving the services it depends on.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace gameverse::plugin {

// What ordering needs of a plugin: the services ("package.Service") it serves and depends on.
struct PluginServices {
  std::string name;
  std::vector<std::string> services;
  std::vector<std::string> dependencies;
};

struct LoadOrder {
  std::vector<std::string> order;               // the plugins that can start, in the order to start them
  std::map<std::string, std::string> refused;   // plugin -> why not: a missing service or a cycle
  std::map<std::string, std::string> provider;  // service -> the plugin serving it
};

// Orders `loading` (taken in the given order where dependencies allow) so that every plugin comes
// after the plugins serving its dependencies. Services of `serving` plugins count as provided. A
// plugin depending on a service nobody serves, or on a cycle, is refused with the plugins that
// reach it first; one that reaches it later is ordered, and its start finds the provider refused.
// When two plugins serve one service, the first by name is its provider.
LoadOrder load_order(const std::vector<PluginServices>& loading, const std::vector<PluginServices>& serving);

}  // namespace gameverse::plugin
