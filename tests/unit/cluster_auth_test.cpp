// The MACs hosts of a cluster sign calls and registry entries with, and the replay cache.
#include "platform/cluster_auth.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace gameverse::platform {
namespace {

const std::string kSecret = std::string("\x01\x7f\x00", 3) + "0123456789abcdef0123456789abcdef";

SignedCall sample() {
  SignedCall call;
  call.method = "/gameverse.echo.v1.Echo/WhoAmI";
  call.deadline = "none";
  call.origin = "for-caller";
  call.user = "ada";
  call.session = "s";
  call.roles = {"player", "moderator"};
  call.peer = "inproc:probe";
  call.request_id = "r1";
  call.host = "10.0.0.5:50051";
  call.time = "1700000000000";
  call.nonce = "00112233445566778899aabbccddeeff";
  return call;
}

TEST(ClusterAuth, EveryFieldOfACallIsCovered) {
  const std::string mac = call_mac(kSecret, sample());
  EXPECT_EQ(mac.size(), 64u);
  EXPECT_EQ(mac.find_first_not_of("0123456789abcdef"), std::string::npos) << "only hex goes on the wire";
  EXPECT_TRUE(same_mac(mac, call_mac(kSecret, sample())));
  EXPECT_FALSE(same_mac(mac, call_mac(kSecret.substr(1), sample())));
  std::vector<std::function<void(SignedCall&)>> changes = {
      [](SignedCall& c) { c.method += "x"; }, [](SignedCall& c) { c.deadline = "1"; },
      [](SignedCall& c) { c.origin = "plugin"; }, [](SignedCall& c) { c.user = "eve"; },
      [](SignedCall& c) { c.session = "t"; }, [](SignedCall& c) { c.roles.push_back("operator"); },
      [](SignedCall& c) { c.roles = {"playermoderator"}; },
      [](SignedCall& c) { c.peer = "ipv4:127.0.0.1:1"; }, [](SignedCall& c) { c.request_id = "r2"; },
      [](SignedCall& c) { c.host = "10.0.0.6:50051"; }, [](SignedCall& c) { c.time = "1700000000001"; },
      [](SignedCall& c) { c.nonce[0] = '1'; },
      // Moving bytes from one field to the next changes the MAC too (fields are length-prefixed).
      [](SignedCall& c) {
        c.user = "ad";
        c.session = "as";
      }};
  for (size_t i = 0; i < changes.size(); ++i) {
    SignedCall changed = sample();
    changes[i](changed);
    EXPECT_FALSE(same_mac(mac, call_mac(kSecret, changed))) << "change " << i << " kept the MAC";
  }
  EXPECT_FALSE(same_mac("", ""));
}

TEST(ClusterAuth, RegistryMembersVerifyOnlyForTheirClusterServiceAndAddress) {
  const std::string member = registry_member(kSecret, "prod", "a.B", "10.0.0.5:50051");
  EXPECT_EQ(member.rfind("10.0.0.5:50051#", 0), 0u);
  EXPECT_EQ(registry_address(kSecret, "prod", "a.B", member), "10.0.0.5:50051");
  EXPECT_EQ(registry_address(kSecret, "test", "a.B", member), std::nullopt);
  EXPECT_EQ(registry_address(kSecret, "prod", "a.C", member), std::nullopt);
  EXPECT_EQ(registry_address("other-secret-other-secret-other-secret", "prod", "a.B", member), std::nullopt);
  EXPECT_EQ(registry_address(kSecret, "prod", "a.B", "10.0.0.6:50051" + member.substr(member.find('#'))),
            std::nullopt);
  for (const char* junk : {"", "#", "10.0.0.5:50051", "10.0.0.5:50051#", "#abcd", "x#y"})
    EXPECT_EQ(registry_address(kSecret, "prod", "a.B", junk), std::nullopt) << junk;
}

TEST(ClusterAuth, ANonceIsAcceptedOnceWhileItsWindowLastsAndTheCacheIsBounded) {
  NonceCache cache(2);
  const int64_t now = 1'700'000'000'000;
  EXPECT_EQ(cache.admit("a", now), NonceCache::Result::kFresh);
  EXPECT_EQ(cache.admit("a", now + 1), NonceCache::Result::kReplayed);
  EXPECT_EQ(cache.admit("b", now + 2), NonceCache::Result::kFresh);
  EXPECT_EQ(cache.admit("c", now + 3), NonceCache::Result::kFull);
  // Once the clock window has passed, a timestamp check refuses the old call, so its nonce goes.
  const int64_t later = now + 2 * kClusterClockSkewMs + 10;
  EXPECT_EQ(cache.admit("c", later), NonceCache::Result::kFresh);
  EXPECT_EQ(cache.admit("a", later), NonceCache::Result::kFresh);
  EXPECT_NE(new_nonce(), new_nonce());
  EXPECT_EQ(new_nonce().size(), 32u);
}

}  // namespace
}  // namespace gameverse::platform
