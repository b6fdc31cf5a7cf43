// gRPC server reflection (grpc.reflection.v1 and v1alpha), a plugin built into the host. It
// answers from the descriptor pools of the plugin generations serving at the time of each request:
// every routed service is listed (the host's own health, reflection and admin services too), and
// files, symbols and extensions are found in the pool of the plugin that serves them. A file
// answer carries the file's transitive imports that the stream has not had yet.
#pragma once

#include "plugin/manager.hpp"

namespace gameverse::rpc {

inline constexpr const char* kReflectionPluginName = "gameverse-reflection";

// Starts serving reflection through `manager`. Call once. Returns the outcome of adding it.
plugin::Outcome serve_reflection(plugin::PluginManager& manager);

}  // namespace gameverse::rpc
