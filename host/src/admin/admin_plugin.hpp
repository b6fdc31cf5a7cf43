// gameverse.host.v1.PluginAdmin: the admin service, a plugin built into the host and written
// against the same SDK as any other, so that it is routed, drained and observed like them.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plugin/manager.hpp"

namespace gameverse::platform {
class RemoteCalls;
}

namespace gameverse::admin {

struct AdminOptions {
  bool token_configured = false;     // an [admin] token exists: the gate makes its bearer the operator
  std::filesystem::path config_dir;  // ValidateConfig resolves relative paths against it
  std::filesystem::path plugin_dir;  // LoadPlugin loads files from inside it only
  bool allow_loopback = false;       // loopback callers need no token
  const platform::RemoteCalls* remote = nullptr;  // ListRemotes reports it; null: no [cluster]
};

inline constexpr const char* kAdminPluginName = "gameverse-admin";

// Whether a peer ("ipv4:127.0.0.1:5000") is this machine.
bool is_loopback(std::string_view peer);

// Why a caller may not use the admin service ("" when it may). The operator may: the gate made
// the caller with the [admin] token the operator principal. A loopback peer may only with
// allow_loopback, since behind a proxy on the same machine every client is loopback. A game
// role, admin included, never lets anyone in.
std::string access_refusal(std::string_view peer, bool is_operator, bool token_configured,
                           bool allow_loopback);

// The file a LoadPlugin request names, resolved (symlinks too) inside `plugin_dir`: a relative
// path is relative to it, an absolute one must lie in it. Returns the resolved path, or sets
// `why` to the reason it is refused: a path that leads outside, by '..', a symlink or itself.
std::filesystem::path confine_to_plugin_dir(const std::filesystem::path& plugin_dir,
                                            const std::string& requested, std::string& why);

// Starts serving the admin service through `manager`. Call once, after the configured plugins
// are loaded. Returns the outcome of adding it.
plugin::Outcome serve_admin(plugin::PluginManager& manager, AdminOptions options);

}  // namespace gameverse::admin
