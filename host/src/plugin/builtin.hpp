// Plugins compiled into the host (admin, health Watch, reflection), written against the same SDK
// as any other plugin, so that they are routed, gated, drained and observed like them.
#pragma once

#include <google/protobuf/descriptor.h>

#include <gameverse/sdk/plugin.hpp>

#include <initializer_list>
#include <string>

#include "plugin/manager.hpp"

namespace gameverse::plugin {

// A serialized FileDescriptorSet of `files` and everything they import, imports first, taken
// from the host's generated pool.
std::string descriptor_set_of(std::initializer_list<const google::protobuf::FileDescriptor*> files);

// Serves the SDK plugin class P, built into the host, under `name`. Its descriptor set holds
// `files` (the generated descriptors of its services). Returns the outcome of adding it.
//
// The SDK keeps the plugin's own record in a process-wide slot set by each plugin's init, and
// built-in plugins share the host's copy of it: the plugin that runs blocking work (admin) must be
// added last.
template <class P>
Outcome serve_builtin(PluginManager& manager, const char* name, const char* description,
                      const std::string& key_prefix,
                      std::initializer_list<const google::protobuf::FileDescriptor*> files) {
  static const std::string descriptor_set = descriptor_set_of(files);
  const gv_plugin_descriptor* descriptor = sdk::detail::entry<P>(
      nullptr, name, GAMEVERSE_VERSION, description,
      gv_bytes{reinterpret_cast<const uint8_t*>(descriptor_set.data()), descriptor_set.size()});
  config::PluginConfig entry;
  entry.name = name;
  entry.path = "(built in)";
  entry.source_file = "(built in)";
  entry.key_prefix = key_prefix;
  try {
    return manager.add_builtin(Plugin::open_builtin(descriptor, entry), entry);
  } catch (const std::exception& e) {
    return {Outcome::Kind::kRefused, name, e.what(), 0};
  }
}

}  // namespace gameverse::plugin
