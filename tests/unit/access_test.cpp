#include "config/access.hpp"

#include <gtest/gtest.h>

namespace gameverse::config {
namespace {

const std::vector<std::string> kPlayer{"player"};
const std::vector<std::string> kNoRoles{};

AccessPolicy policy(std::string_view text) {
  return *AccessPolicy::parse(text);
}

TEST(AccessPolicy, PublicLetsEveryoneThrough) {
  EXPECT_FALSE(policy("public").refusal("/p.S/M", nullptr));
  EXPECT_FALSE(policy("public").refusal("/p.S/M", &kPlayer));
}

TEST(AccessPolicy, AuthenticatedNeedsASignedInCaller) {
  const auto refusal = policy("authenticated").refusal("/p.S/M", nullptr);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->kind, AccessRefusal::Kind::kUnauthenticated);
  EXPECT_EQ(refusal->message, "method /p.S/M needs a signed-in caller");
  EXPECT_FALSE(policy("authenticated").refusal("/p.S/M", &kNoRoles));
}

TEST(AccessPolicy, RoleNeedsTheRole) {
  EXPECT_EQ(policy("role:moderator").refusal("/p.S/M", nullptr)->kind, AccessRefusal::Kind::kUnauthenticated);
  const auto refusal = policy("role:moderator").refusal("/p.S/M", &kPlayer);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->kind, AccessRefusal::Kind::kPermissionDenied);
  EXPECT_EQ(refusal->message, "method /p.S/M needs the role 'moderator'; the caller has: player");
  EXPECT_EQ(policy("role:moderator").refusal("/p.S/M", &kNoRoles)->message,
            "method /p.S/M needs the role 'moderator'; the caller has: none");
  const std::vector<std::string> both{"player", "moderator"};
  EXPECT_FALSE(policy("role:moderator").refusal("/p.S/M", &both));
}

// The host's operator (the [admin] token) can load code into the host: no policy stops it.
TEST(AccessPolicy, TheOperatorPassesEveryPolicy) {
  const std::vector<std::string> host_operator{std::string(kOperatorRole)};
  for (const char* text : {"public", "authenticated", "role:moderator", "role:admin"}) {
    EXPECT_FALSE(policy(text).refusal("/p.S/M", &host_operator)) << text;
  }
}

}  // namespace
}  // namespace gameverse::config
