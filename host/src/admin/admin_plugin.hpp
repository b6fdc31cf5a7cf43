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
  bool allow_loopback = true;        // loopback callers need no token
};

inline constexpr const char* kAdminPluginName = "gameverse-admin";

// Whether a peer ("ipv4:127.0.0.1:5000") is this machine.
bool is_loopback(std::string_view peer);

// Why a caller may not use the admin service ("" when it may): loopback may (unless
// allow_loopback is off); others only with `authorization: Bearer <token>` and a token
// configured, compared in constant time. (Callers with the admin role are let in before this.)
std::string access_refusal(std::string_view peer, const std::vector<std::string_view>& authorization,
                           const std::string& token, bool allow_loopback = true);

// Starts serving the admin service through `manager`. Call once, after the configured plugins
// are loaded. Returns the outcome of adding it.
plugin::Outcome serve_admin(plugin::PluginManager& manager, AdminOptions options);

}  // namespace gameverse::admin
