// The MACs hosts of a cluster sign calls and registry entries with, and the replay guard.
#include "platform/cluster_auth.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <set>
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
  call.nonce = "00112233445566778899aabbccddeeff.1";
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

const std::string kBoot = "00112233445566778899aabbccddeeff";
const int64_t kNow = 1'700'000'000'000;

std::string nonce(uint64_t counter, const std::string& boot = kBoot) {
  return boot + "." + std::to_string(counter);
}

TEST(ClusterAuth, ASenderNumbersItsCallsUnderABootIdOfItsOwn) {
  CallSequence a, b;
  EXPECT_EQ(a.boot_id().size(), 32u);
  EXPECT_EQ(a.boot_id().find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a.boot_id(), b.boot_id()) << "two processes would share their counters";
  EXPECT_EQ(a.next(), a.boot_id() + ".1");
  EXPECT_EQ(a.next(), a.boot_id() + ".2");
  EXPECT_EQ(b.next(), b.boot_id() + ".1");
  ReplayGuard guard;
  EXPECT_EQ(guard.admit("h:1", a.next(), kNow), "");
}

TEST(ClusterAuth, CountersAreAcceptedOnceInOrderOrNot) {
  ReplayGuard guard;
  for (uint64_t n = 1; n <= 100; ++n) EXPECT_EQ(guard.admit("h:1", nonce(n), kNow), "") << n;
  EXPECT_EQ(guard.admit("h:1", nonce(100), kNow), "this signed call was sent before");
  EXPECT_EQ(guard.admit("h:1", nonce(1), kNow), "this signed call was sent before");
  // Calls overtake each other: a gap is filled later, once.
  EXPECT_EQ(guard.admit("h:1", nonce(200), kNow), "");
  EXPECT_EQ(guard.admit("h:1", nonce(150), kNow), "");
  EXPECT_EQ(guard.admit("h:1", nonce(150), kNow), "this signed call was sent before");
  EXPECT_EQ(guard.admit("h:1", nonce(101), kNow), "");
  // The same counter under another boot id (the host restarted) or from another host is another call.
  EXPECT_EQ(guard.admit("h:1", nonce(100, "ffeeddccbbaa99887766554433221100"), kNow), "");
  EXPECT_EQ(guard.admit("h:2", nonce(100), kNow), "");
  EXPECT_EQ(guard.senders(), 3u);
}

TEST(ClusterAuth, ACounterBelowTheWindowIsRefusedAndTheWindowSlides) {
  ReplayGuard guard;
  EXPECT_EQ(guard.admit("h:1", nonce(5), kNow), "");
  const uint64_t top = 5 + kClusterReplayWindow + 10;
  EXPECT_EQ(guard.admit("h:1", nonce(top), kNow), "");
  // 5 and everything up to top - window are below it now, seen or not.
  EXPECT_EQ(guard.admit("h:1", nonce(5), kNow),
            "call 5 of this host is older than its last 65536 (it has sent " + std::to_string(top) + ")");
  EXPECT_NE(guard.admit("h:1", nonce(top - kClusterReplayWindow), kNow), "");
  // The lowest counter still inside is accepted once: its slot was freed when the window moved.
  EXPECT_EQ(guard.admit("h:1", nonce(top - kClusterReplayWindow + 1), kNow), "");
  EXPECT_EQ(guard.admit("h:1", nonce(top - kClusterReplayWindow + 1), kNow),
            "this signed call was sent before");
  // A step of less than the window frees exactly the slots it passes.
  EXPECT_EQ(guard.admit("h:1", nonce(top + 3), kNow), "");
  EXPECT_EQ(guard.admit("h:1", nonce(top + 1), kNow), "");
  EXPECT_EQ(guard.admit("h:1", nonce(top + 2), kNow), "");
  EXPECT_EQ(guard.admit("h:1", nonce(top), kNow), "this signed call was sent before");
  EXPECT_NE(guard.admit("h:1", nonce(top + 3 - kClusterReplayWindow), kNow), "");
  // Far more calls than the old cap of 262,144 a minute, from one sender within one second.
  for (uint64_t n = top + 4; n < top + 4 + 300'000; ++n)
    ASSERT_EQ(guard.admit("h:1", nonce(n), kNow), "") << n;
}

// The window against the plain rule it stands for — a counter is accepted when it is new and above
// highest - window — over random steps forward (small, around a word, past the window) and back.
TEST(ClusterAuth, TheWindowAgreesWithASetOfEveryCounterSeen) {
  ReplayGuard guard;
  std::set<uint64_t> seen;
  uint64_t highest = 0;
  std::mt19937_64 random(20261130);
  const uint64_t steps[] = {1,
                            2,
                            63,
                            64,
                            65,
                            127,
                            129,
                            1000,
                            kClusterReplayWindow - 1,
                            kClusterReplayWindow,
                            kClusterReplayWindow + 1};
  for (int i = 0; i < 200'000; ++i) {
    uint64_t counter = 0;
    if (highest == 0 || random() % 3 != 0) {
      counter = highest + steps[random() % std::size(steps)];
    } else {
      counter = std::max<uint64_t>(
          1, highest - std::min<uint64_t>(highest - 1, random() % (kClusterReplayWindow + 70)));
    }
    const bool expected =
        !seen.contains(counter) && (counter > highest || highest - counter < kClusterReplayWindow);
    ASSERT_EQ(guard.admit("h:1", nonce(counter), kNow).empty(), expected)
        << "counter " << counter << " after highest " << highest << ", step " << i;
    if (expected) seen.insert(counter);
    highest = std::max(highest, counter);
  }
}

TEST(ClusterAuth, ANonceThatIsNoBootIdAndCounterIsRefusedNamingTheKey) {
  ReplayGuard guard;
  for (const std::string& bad :
       {std::string("00112233445566778899aabbccddeeff"), nonce(0), kBoot + ".", kBoot + ".x", kBoot + ".1x",
        kBoot + ".-1", std::string("0011.1"), std::string("00112233445566778899AABBCCDDEEFF.1"),
        "." + std::to_string(1), kBoot + ".99999999999999999999999"}) {
    EXPECT_EQ(guard.admit("h:1", bad, kNow),
              "gameverse-cluster-nonce is not <boot id: 32 hex digits>.<counter from 1>")
        << bad;
  }
  EXPECT_EQ(guard.senders(), 0u) << "a malformed nonce made room for a sender";
}

TEST(ClusterAuth, SendersAreBoundedAndForgottenOnlyOnceTheirCallsAreTooOld) {
  ReplayGuard guard(3);
  EXPECT_EQ(guard.admit("h:1", nonce(1), kNow), "");
  EXPECT_EQ(guard.admit("h:2", nonce(1), kNow), "");
  EXPECT_EQ(guard.admit("h:3", nonce(1), kNow + 1000), "");
  // Full of senders seen within twice the clock window: a new one is refused, the known go on.
  const std::string full = guard.admit("h:4", nonce(1), kNow + 2 * kClusterClockSkewMs);
  EXPECT_EQ(full, "too many hosts (3 senders, boot ids counted apart) sent calls within 60000 ms");
  EXPECT_EQ(guard.admit("h:1", nonce(2), kNow + 2 * kClusterClockSkewMs), "");
  EXPECT_EQ(guard.admit("h:1", nonce(1), kNow + 2 * kClusterClockSkewMs), "this signed call was sent before");
  // h:2 is silent for longer than twice the window: any call it signed is refused for its time now,
  // so it can go, and h:4 takes its place. h:1 (seen later) and h:3 stay.
  const int64_t later = kNow + 2 * kClusterClockSkewMs + 1;
  EXPECT_EQ(guard.admit("h:4", nonce(1), later), "");
  EXPECT_EQ(guard.senders(), 3u);
  EXPECT_EQ(guard.admit("h:1", nonce(2), later), "this signed call was sent before");
  EXPECT_EQ(guard.admit("h:3", nonce(1), later), "this signed call was sent before");
  // Many senders at once, none evicted while live.
  ReplayGuard many(1000);
  for (int host = 0; host < 1000; ++host)
    for (uint64_t n = 1; n <= 3; ++n) ASSERT_EQ(many.admit("h:" + std::to_string(host), nonce(n), kNow), "");
  for (int host = 0; host < 1000; ++host)
    EXPECT_EQ(many.admit("h:" + std::to_string(host), nonce(2), kNow + 10),
              "this signed call was sent before");
  EXPECT_NE(many.admit("h:1000", nonce(1), kNow + 2 * kClusterClockSkewMs), "");
  EXPECT_EQ(many.admit("h:1000", nonce(1), kNow + 2 * kClusterClockSkewMs + 11), "");
  EXPECT_EQ(many.senders(), 1u);
}

}  // namespace
}  // namespace gameverse::platform
