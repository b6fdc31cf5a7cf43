#include "platform/cluster_auth.hpp"

#include <sodium.h>

#include <algorithm>
#include <charconv>

namespace gameverse::platform {

static_assert(kClusterReplayWindow % 64 == 0, "the window is kept in whole 64-bit words");

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

CallSequence::CallSequence() {
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  boot_id_ = hex(bytes, sizeof bytes);
}

std::string CallSequence::next() {
  return boot_id_ + "." + std::to_string(counter_.fetch_add(1, std::memory_order_relaxed) + 1);
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

std::string ReplayGuard::admit(std::string_view host, std::string_view nonce, int64_t now_ms) {
  const size_t dot = nonce.find('.');
  uint64_t counter = 0;
  const std::string_view boot_id = nonce.substr(0, dot == std::string_view::npos ? 0 : dot);
  const std::string_view digits = dot == std::string_view::npos ? std::string_view() : nonce.substr(dot + 1);
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), counter);
  if (boot_id.size() != 32 || boot_id.find_first_not_of("0123456789abcdef") != std::string_view::npos ||
      digits.empty() || error != std::errc() || end != digits.data() + digits.size() || counter == 0) {
    return std::string(kClusterNonceKey) + " is not <boot id: 32 hex digits>.<counter from 1>";
  }
  std::string key;
  key.reserve(host.size() + 1 + boot_id.size());
  key.append(host).append(" ").append(boot_id);
  std::lock_guard lock(mu_);
  auto it = senders_.find(key);
  if (it == senders_.end()) {
    if (senders_.size() >= max_senders_) {
      // Only a sender silent for longer than any of its calls stays acceptable can go.
      std::erase_if(senders_, [&](const auto& entry) {
        return entry.second.last_seen_ms < now_ms - 2 * kClusterClockSkewMs;
      });
      if (senders_.size() >= max_senders_) {
        return "too many hosts (" + std::to_string(max_senders_) + " senders, boot ids counted apart) sent " +
               "calls within " + std::to_string(2 * kClusterClockSkewMs) + " ms";
      }
    }
    it = senders_.emplace(std::move(key), Sender{}).first;
    it->second.seen.assign(kClusterReplayWindow / 64, 0);
  }
  Sender& sender = it->second;
  sender.last_seen_ms = std::max(sender.last_seen_ms, now_ms);
  auto bit = [&](uint64_t n) -> std::pair<uint64_t&, uint64_t> {
    const uint64_t slot = n % kClusterReplayWindow;
    return {sender.seen[slot / 64], uint64_t{1} << (slot % 64)};
  };
  if (counter > sender.highest) {
    // The slots of the counters the window moves past are free again.
    if (counter - sender.highest >= kClusterReplayWindow) {
      std::fill(sender.seen.begin(), sender.seen.end(), 0);
    } else {
      // Bit by bit up to a word's edge, then whole words: a sender that mostly calls other hosts
      // jumps far ahead here.
      uint64_t n = sender.highest + 1;
      for (; n < counter && n % 64 != 0; ++n) {
        auto [word, mask] = bit(n);
        word &= ~mask;
      }
      for (; n + 64 <= counter; n += 64) sender.seen[(n % kClusterReplayWindow) / 64] = 0;
      for (; n < counter; ++n) {
        auto [word, mask] = bit(n);
        word &= ~mask;
      }
    }
    sender.highest = counter;
    auto [word, mask] = bit(counter);
    word |= mask;
    return {};
  }
  if (sender.highest - counter >= kClusterReplayWindow) {
    return "call " + std::to_string(counter) + " of this host is older than its last " +
           std::to_string(kClusterReplayWindow) + " (it has sent " + std::to_string(sender.highest) + ")";
  }
  auto [word, mask] = bit(counter);
  if ((word & mask) != 0) return "this signed call was sent before";
  word |= mask;
  return {};
}

size_t ReplayGuard::senders() const {
  std::lock_guard lock(mu_);
  return senders_.size();
}

}  // namespace gameverse::platform
