// The client address that rate limits and failed-login counters are kept per: the transport peer,
// or, when the peer is a trusted proxy, the address that proxy forwarded (x-forwarded-for).
// IPv6 addresses count per /64, the block one subscriber usually gets, so that an attacker with
// one connection cannot pose as 2^64 clients.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gameverse::auth {

// An IPv4 or IPv6 network, e.g. "10.0.0.0/8", "fd00::/8"; a plain address is a /32 or /128.
struct Network {
  std::array<uint8_t, 16> bytes{};  // IPv4 in the first four
  bool ipv6 = false;
  int prefix_bits = 0;
  bool contains(const Network& address) const;
};

// "1.2.3.4", "::1", "[::1]", "1.2.3.4:5678", "[::1]:5678"; nullopt when it is none of them.
std::optional<Network> parse_address(std::string_view text);
// The networks of a comma-separated list of addresses and CIDRs; kInvalidArgument naming the
// entry that is neither.
std::vector<Network> parse_networks(std::string_view list, std::string_view setting);

// The key an address is counted under: IPv4 as "203.0.113.7", IPv6 as "2001:db8:1:2::/64" (an
// IPv4-mapped IPv6 address counts as its IPv4 address).
std::string address_key(const Network& address);

// The client address of a call: `peer` is gRPC's ("ipv4:1.2.3.4:5678", "ipv6:[::1]:5678",
// "unix:/path"); `forwarded_for` are the values of x-forwarded-for, which count only when the
// peer is in `trusted_proxies`: then the client is the rightmost forwarded address that is not
// itself a trusted proxy (what the nearest untrusted hop appended can be believed, what is to its
// left is the client's to invent). A forwarded entry that is not an address counts as the proxy
// that forwarded it.
std::string client_address(std::string_view peer, const std::vector<std::string_view>& forwarded_for,
                           const std::vector<Network>& trusted_proxies);

}  // namespace gameverse::auth
