// A method's access policy at the host's gate: open to anyone, to any signed-in caller, or to
// callers with a role. A method whose plugin declares nothing is "authenticated", never public.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gameverse::config {

// The host's operator (the caller with the [admin] token): reserved, never taken from an access
// token, and let through by every policy, since the operator can load code into the host anyway.
inline constexpr std::string_view kOperatorRole = "operator";

// Why a policy refuses a caller; the message names the method and what it needs.
struct AccessRefusal {
  enum class Kind { kUnauthenticated, kPermissionDenied };
  Kind kind;
  std::string message;
};

struct AccessPolicy {
  enum class Kind { kPublic, kAuthenticated, kRole };
  Kind kind = Kind::kAuthenticated;
  std::string role;  // for kRole

  // "public", "authenticated" or "role:<name>" (name: a-z, 0-9, '_', '-'); nullopt otherwise.
  static std::optional<AccessPolicy> parse(std::string_view text) {
    if (text == "public") return AccessPolicy{Kind::kPublic, {}};
    if (text == "authenticated") return AccessPolicy{Kind::kAuthenticated, {}};
    if (text.rfind("role:", 0) != 0 || text.size() == 5) return std::nullopt;
    for (char c : text.substr(5)) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return std::nullopt;
    }
    return AccessPolicy{Kind::kRole, std::string(text.substr(5))};
  }

  // Whether the policy lets a caller call `method`: the one evaluation for calls from the network
  // (the gate) and calls between plugins. `roles`: the signed-in caller's; null: anonymous. An
  // anonymous caller's refusal says "method M needs a signed-in caller", for the caller of this
  // function to add how to become one.
  std::optional<AccessRefusal> refusal(std::string_view method, const std::vector<std::string>* roles) const {
    if (kind == Kind::kPublic) return std::nullopt;
    if (roles != nullptr && std::find(roles->begin(), roles->end(), kOperatorRole) != roles->end()) {
      return std::nullopt;
    }
    if (roles == nullptr) {
      return AccessRefusal{AccessRefusal::Kind::kUnauthenticated,
                           "method " + std::string(method) + " needs a signed-in caller"};
    }
    if (kind == Kind::kRole && std::find(roles->begin(), roles->end(), role) == roles->end()) {
      std::string held;
      for (const auto& r : *roles) held += (held.empty() ? "" : ", ") + r;
      return AccessRefusal{AccessRefusal::Kind::kPermissionDenied,
                           "method " + std::string(method) + " needs the role '" + role +
                               "'; the caller has: " + (held.empty() ? "none" : held)};
    }
    return std::nullopt;
  }

  std::string to_string() const {
    switch (kind) {
      case Kind::kPublic: return "public";
      case Kind::kAuthenticated: return "authenticated";
      case Kind::kRole: return "role:" + role;
    }
    return "authenticated";
  }
};

}  // namespace gameverse::config
