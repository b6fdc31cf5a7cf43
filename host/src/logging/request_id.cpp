#include "logging/request_id.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <random>

namespace gameverse::logging {

namespace {

constexpr bool sane_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == ':' || c == '@' || c == '/' || c == '+' || c == '=' || c == '-';
}

// xoshiro256** (Blackman and Vigna): fast, 256 bits of state, statistics good enough for ids that
// must not collide by chance. Not for secrets: a request id is no credential. Zero-initialized
// per thread (no constructor, no guard on each use) and seeded on the thread's first id.
struct Xoshiro256 {
  uint64_t state[4];
  bool seeded;

  void seed() {
    std::random_device device;
    for (uint64_t& word : state) word = (static_cast<uint64_t>(device()) << 32) ^ device();
    if ((state[0] | state[1] | state[2] | state[3]) == 0) state[0] = 1;  // the one state it must not have
    seeded = true;
  }

  uint64_t next() {
    const uint64_t result = rotl(state[1] * 5, 7) * 9;
    const uint64_t t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
  }

  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
};

constinit thread_local Xoshiro256 generator{};

// "00" .. "ff": two hex digits per byte.
constexpr std::array<char, 512> kHexPairs = [] {
  std::array<char, 512> pairs{};
  constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < 256; ++i) {
    pairs[2 * i] = kDigits[i >> 4];
    pairs[2 * i + 1] = kDigits[i & 0xf];
  }
  return pairs;
}();

}  // namespace

bool is_sane_request_id(std::string_view value) {
  if (value.empty() || value.size() > kMaxRequestIdBytes) return false;
  for (const char c : value) {
    if (!sane_char(c)) return false;
  }
  return true;
}

bool is_request_id_key(const char* key) {
  return std::strncmp(key, kRequestIdKey.data(), kRequestIdKey.size() + 1) == 0;
}

GeneratedRequestId GeneratedRequestId::make() {
  if (!generator.seeded) [[unlikely]]
    generator.seed();
  GeneratedRequestId id;
  char* out = id.chars_.data();
  for (int word = 0; word < 2; ++word) {
    uint64_t bits = generator.next();
    for (int byte = 0; byte < 8; ++byte, bits >>= 8, out += 2)
      std::memcpy(out, &kHexPairs[2 * (bits & 0xff)], 2);
  }
  return id;
}

}  // namespace gameverse::logging
