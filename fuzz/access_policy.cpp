// The access-policy parser: what parses prints back as itself, and any role list is judged.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "config/access.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // The policy text, then (after the first newline) the caller's roles, one a line.
  const size_t newline = input.find('\n');
  const std::string_view text = input.substr(0, newline);
  const auto policy = gameverse::config::AccessPolicy::parse(text);
  if (!policy) return 0;
  if (policy->to_string() != text) std::abort();
  std::vector<std::string> roles;
  for (std::string_view rest = newline == std::string_view::npos ? "" : input.substr(newline + 1);
       !rest.empty();) {
    const size_t end = rest.find('\n');
    roles.emplace_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? "" : rest.substr(end + 1);
  }
  const auto refusal = policy->refusal("/fuzz.v1.Fuzz/Call", &roles);
  // The operator (the host's [admin] token) passes every policy.
  const bool has_role =
      std::find(roles.begin(), roles.end(), policy->role) != roles.end() ||
      std::find(roles.begin(), roles.end(), gameverse::config::kOperatorRole) != roles.end();
  if (refusal.has_value() != (policy->kind == gameverse::config::AccessPolicy::Kind::kRole && !has_role)) {
    std::abort();
  }
  const auto anonymous = policy->refusal("/fuzz.v1.Fuzz/Call", nullptr);
  if (anonymous.has_value() != (policy->kind != gameverse::config::AccessPolicy::Kind::kPublic)) std::abort();
  return 0;
}
