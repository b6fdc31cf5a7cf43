#include "platform/cluster_auth.hpp"

#include <sodium.h>

namespace gameverse::platform {

namespace {

void add_field(crypto_auth_hmacsha256_state& state, std::string_view field) {
  const std::string length = std::to_string(field.size()) + ":";
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(length.data()), length.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(field.data()), field.size());
}

std::string hex(const unsigned char* data, size_t size) {
  std::string out(size * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), data, size);
  out.pop_back();
  return out;
}

template <typename AddFields>
std::string hmac(std::string_view secret, std::string_view domain, AddFields add) {
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  add_field(state, domain);  // a call's MAC can never pass for a registry entry's
  add(state);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_final(&state, mac);
  return hex(mac, sizeof mac);
}

}  // namespace

std::string call_mac(std::string_view secret, const SignedCall& call) {
  return hmac(secret, "gameverse-call-v1", [&](crypto_auth_hmacsha256_state& state) {
    for (const std::string* field : {&call.method, &call.deadline, &call.origin, &call.user, &call.session})
      add_field(state, *field);
    add_field(state, std::to_string(call.roles.size()));
    for (const auto& role : call.roles) add_field(state, role);
    for (const std::string* field : {&call.peer, &call.request_id, &call.host, &call.time, &call.nonce})
      add_field(state, *field);
  });
}

bool same_mac(std::string_view a, std::string_view b) {
  return a.size() == b.size() && !a.empty() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string new_nonce() {
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  return hex(bytes, sizeof bytes);
}

std::string registry_member(std::string_view secret, std::string_view cluster, std::string_view service,
                            std::string_view address) {
  return std::string(address) + "#" +
         hmac(secret, "gameverse-registry-v1", [&](crypto_auth_hmacsha256_state& state) {
           add_field(state, cluster);
           add_field(state, service);
           add_field(state, address);
         });
}

std::optional<std::string> registry_address(std::string_view secret, std::string_view cluster,
                                            std::string_view service, std::string_view member) {
  const auto hash = member.rfind('#');
  if (hash == std::string_view::npos || hash == 0) return std::nullopt;
  const std::string_view address = member.substr(0, hash);
  const std::string expected = registry_member(secret, cluster, service, address);
  if (!same_mac(member, expected)) return std::nullopt;
  return std::string(address);
}

NonceCache::Result NonceCache::admit(const std::string& nonce, int64_t now_ms) {
  std::lock_guard lock(mu_);
  while (!order_.empty() && order_.front().first < now_ms) {
    seen_.erase(order_.front().second);
    order_.pop_front();
  }
  if (seen_.contains(nonce)) return Result::kReplayed;
  if (seen_.size() >= capacity_) return Result::kFull;
  seen_.insert(nonce);
  // A call signed up to the window ahead stays acceptable until the window after it.
  order_.emplace_back(now_ms + 2 * kClusterClockSkewMs, nonce);
  return Result::kFresh;
}

}  // namespace gameverse::platform
