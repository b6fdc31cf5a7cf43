#include "domain/client_address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "domain/model.hpp"

namespace gameverse::auth {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// gRPC writes an IPv6 peer as a URI does, brackets escaped: "%5B::1%5D:5000" → "[::1]:5000".
std::string unescape_brackets(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && text.size() - i >= 3) {
      const std::string_view code = text.substr(i + 1, 2);
      if (code == "5B" || code == "5b") {
        out += '[';
        i += 2;
        continue;
      }
      if (code == "5D" || code == "5d") {
        out += ']';
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

// A bare address, no brackets, no port.
std::optional<Network> parse_bare(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buffer[INET6_ADDRSTRLEN];
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  Network n;
  if (inet_pton(AF_INET, buffer, n.bytes.data()) == 1) {
    n.prefix_bits = 32;
    return n;
  }
  if (inet_pton(AF_INET6, buffer, n.bytes.data()) == 1) {
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(n.bytes.data(), kMapped, sizeof kMapped) == 0) {  // ::ffff:1.2.3.4 is 1.2.3.4
      std::memmove(n.bytes.data(), n.bytes.data() + 12, 4);
      std::fill(n.bytes.begin() + 4, n.bytes.end(), 0);
      n.prefix_bits = 32;
      return n;
    }
    n.ipv6 = true;
    n.prefix_bits = 128;
    return n;
  }
  return std::nullopt;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool Network::contains(const Network& address) const {
  if (address.ipv6 != ipv6) return false;
  const int full = prefix_bits / 8;
  if (std::memcmp(bytes.data(), address.bytes.data(), static_cast<size_t>(full)) != 0) return false;
  const int rest = prefix_bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes[static_cast<size_t>(full)] & mask) == (address.bytes[static_cast<size_t>(full)] & mask);
}

std::optional<Network> parse_address(std::string_view text) {
  text = trim(text);
  if (!text.empty() && text.front() == '[') {  // [v6] or [v6]:port
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view after = text.substr(close + 1);
    if (!after.empty() && !(after.front() == ':' && all_digits(after.substr(1)))) return std::nullopt;
    return text.substr(1, close - 1).find(':') == std::string_view::npos
               ? std::nullopt
               : parse_bare(text.substr(1, close - 1));
  }
  if (std::optional<Network> n = parse_bare(text)) return n;
  const size_t colon = text.find(':');  // v4:port
  if (colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos &&
      all_digits(text.substr(colon + 1))) {
    std::optional<Network> n = parse_bare(text.substr(0, colon));
    return n && !n->ipv6 ? n : std::nullopt;
  }
  return std::nullopt;
}

std::vector<Network> parse_networks(std::string_view list, std::string_view setting) {
  std::vector<Network> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view entry = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (entry.empty()) continue;
    auto invalid = [&](const std::string& why) {
      return AuthError(AuthError::Kind::kInvalidArgument,
                       std::string(setting) + ": '" + std::string(entry) + "' " + why);
    };
    const size_t slash = entry.find('/');
    std::optional<Network> n = parse_bare(entry.substr(0, slash));
    if (!n) throw invalid("is not an IPv4 or IPv6 address or network (e.g. 10.0.0.0/8, fd00::/8)");
    if (slash != std::string_view::npos) {
      const std::string_view bits = entry.substr(slash + 1);
      const int max_bits = n->ipv6 ? 128 : 32;
      int prefix = -1;
      const auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
      if (!all_digits(bits) || ec != std::errc() || end != bits.data() + bits.size() || prefix > max_bits) {
        throw invalid("has a prefix length outside 0 to " + std::to_string(max_bits));
      }
      n->prefix_bits = prefix;
    }
    out.push_back(*n);
  }
  return out;
}

std::string address_key(const Network& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (!address.ipv6) {
    inet_ntop(AF_INET, address.bytes.data(), text, sizeof text);
    return text;
  }
  std::array<uint8_t, 16> block{};
  std::copy_n(address.bytes.begin(), 8, block.begin());
  inet_ntop(AF_INET6, block.data(), text, sizeof text);
  return std::string(text) + "/64";
}

std::string client_address(std::string_view peer, const std::vector<std::string_view>& forwarded_for,
                           const std::vector<Network>& trusted_proxies) {
  const size_t scheme = peer.find(':');
  std::optional<Network> hop;
  if (scheme != std::string_view::npos &&
      (peer.substr(0, scheme) == "ipv4" || peer.substr(0, scheme) == "ipv6")) {
    hop = parse_address(unescape_brackets(peer.substr(scheme + 1)));
  }
  if (!hop)
    return peer.empty() ? "unknown" : std::string(peer);  // "unix:…", "inproc:<plugin>": one client each
  auto trusted = [&](const Network& a) {
    return std::any_of(trusted_proxies.begin(), trusted_proxies.end(),
                       [&](const Network& proxy) { return proxy.contains(a); });
  };
  // Hops from the nearest to the farthest: the values of every x-forwarded-for, right to left.
  for (auto value = forwarded_for.rbegin(); value != forwarded_for.rend() && trusted(*hop); ++value) {
    std::string_view rest = *value;
    while (!rest.empty() && trusted(*hop)) {
      const size_t comma = rest.rfind(',');
      const std::string_view entry = comma == std::string_view::npos ? rest : rest.substr(comma + 1);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
      if (trim(entry).empty()) continue;
      std::optional<Network> forwarded = parse_address(entry);
      if (!forwarded) return address_key(*hop);
      hop = forwarded;
    }
  }
  return address_key(*hop);
}

}  // namespace gameverse::auth
