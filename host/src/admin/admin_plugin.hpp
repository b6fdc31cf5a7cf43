// gameverse.host.v1.PluginAdmin: the admin service, a plugin built into the host and written
// against the same SDK as any other, so that it is routed, drained and observed like them.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plugin/manager.hpp"

namespace gameverse::admin {

struct AdminOptions {
  std::string token;                 // when set, callers beyond loopback present it as a bearer token
  std::filesystem::path config_dir;  // relative paths in requests resolve against it
};

inline constexpr const char* kAdminPluginName = "gameverse-admin";

// Whether a peer ("ipv4:127.0.0.1:5000") is this machine.
bool is_loopback(std::string_view peer);

// Why a caller may not use the admin service ("" when it may): loopback always may; others only
// with `authorization: Bearer <token>` and a token configured. Compared in constant time.
std::string access_refusal(std::string_view peer, const std::vector<std::string_view>& authorization,
                           const std::string& token);

// Starts serving the admin service through `manager`. Call once, after the configured plugins
// are loaded. Returns the outcome of adding it.
plugin::Outcome serve_admin(plugin::PluginManager& manager, AdminOptions options);

}  // namespace gameverse::admin
