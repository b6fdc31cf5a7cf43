// Checks a handler makes beyond the host's gate: a caller's roles, and the plugins a service trusts
// to act with their own trust (the gate's policy does not apply to those calls, so the handler is
// where a service decides).
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "gameverse/sdk/call.hpp"

namespace gameverse::sdk {

// The entries of a comma-separated config value ("shop, world-state"), trimmed, blanks left out.
inline std::vector<std::string> split_list(std::string_view comma_separated) {
  std::vector<std::string> out;
  while (!comma_separated.empty()) {
    const size_t comma = comma_separated.find(',');
    std::string_view entry = comma_separated.substr(0, comma);
    comma_separated =
        comma == std::string_view::npos ? std::string_view() : comma_separated.substr(comma + 1);
    const size_t first = entry.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;
    entry = entry.substr(first, entry.find_last_not_of(" \t") - first + 1);
    if (std::find(out.begin(), out.end(), entry) == out.end()) out.emplace_back(entry);
  }
  return out;
}

// The role the host's [admin] token gives the operator, whom every access policy lets through.
inline constexpr std::string_view kOperatorRole = "operator";

inline bool has_role(const Principal& principal, std::string_view role) {
  return std::find(principal.roles.begin(), principal.roles.end(), role) != principal.roles.end();
}

// What the gate's policy sdk::role(role) lets through, checked again in a handler: a caller with
// the role, or the operator.
inline bool meets_role(const Principal& principal, std::string_view role) {
  return has_role(principal, role) || has_role(principal, kOperatorRole);
}

// The plugins a service lets act with their own trust, named in its config (split_list).
class TrustedPlugins {
 public:
  explicit TrustedPlugins(std::string_view comma_separated) : names_(split_list(comma_separated)) {}

  // The plugin that made this call with its own trust when the list names it; empty for a call
  // from the network, for one a plugin made for its caller, and for a plugin not listed.
  std::string_view trusted_caller(const CallContext& context) const {
    const std::string_view plugin = context.plugin_with_own_trust();
    return contains(plugin) ? plugin : std::string_view();
  }
  bool contains(std::string_view plugin) const {
    return !plugin.empty() && std::find(names_.begin(), names_.end(), plugin) != names_.end();
  }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> names_;
};

}  // namespace gameverse::sdk
