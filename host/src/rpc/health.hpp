// grpc.health.v1.Health, the standard health checking protocol.
//
// Check is answered by the host on its generic path: "" is the host itself, SERVING until it
// begins to shut down; a service name is SERVING while a loaded plugin serves it, else NOT_FOUND.
//
// Watch is a plugin built into the host: it sends the status at once and then every change.
// "" is SERVING until shutdown; a service is SERVING while a plugin serves it, NOT_SERVING after
// it stopped (unloaded, or refused on reload of a plugin that no longer serves it), and
// SERVICE_UNKNOWN when nothing has served it since the host started. At shutdown every watcher
// gets NOT_SERVING and its stream ends, before the host drains its calls.
#pragma once

#include <grpcpp/support/status.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "plugin/manager.hpp"

namespace gameverse::rpc {

grpc::Status health_check(const plugin::RouteTable& routes, bool host_serving, std::string_view request,
                          std::string& reply);

inline constexpr const char* kHealthPluginName = "gameverse-health";

// Starts serving Watch through `manager`, to at most `max_watchers` open streams at once (more
// are refused with RESOURCE_EXHAUSTED). Call once. Returns the outcome of adding it.
plugin::Outcome serve_health_watch(plugin::PluginManager& manager, size_t max_watchers);

}  // namespace gameverse::rpc
