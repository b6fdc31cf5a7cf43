// A method's access policy at the host's gate: open to anyone, to any signed-in caller, or to
// callers with a role. A method whose plugin declares nothing is "authenticated", never public.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gameverse::config {

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
