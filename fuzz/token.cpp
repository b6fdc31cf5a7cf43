// Token verification (gameverse/tokens.hpp), as the gate runs it on every bearer token. The
// first byte picks the input: a token as a client sends it, or a header and a payload (split at
// the first NUL) signed with the trusted key, so the claims behind a good signature are fuzzed too.
#include <gameverse/tokens.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace tokens = gameverse::tokens;

struct Keys {
  Keys() {
    tokens::ensure_sodium();
    unsigned char seed[crypto_sign_SEEDBYTES] = {1, 2, 3};
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(pk, sk, seed);
    secret.assign(reinterpret_cast<const char*>(sk), sizeof sk);
    trusted = {{"k1", std::string(reinterpret_cast<const char*>(pk), sizeof pk)},
               {"", std::string(3, 'x')}};  // a key of the wrong size must refuse, not crash
  }
  std::string secret;
  std::vector<tokens::VerifyKey> trusted;
};

constexpr int64_t kNowUnixMs = 1'750'000'000'000;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Keys keys;
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string token;
  if (data[0] % 2 == 0) {
    token = input;
  } else {
    const size_t split = input.find('\0');
    const std::string_view header = input.substr(0, split);
    const std::string_view payload = split == std::string_view::npos ? "" : input.substr(split + 1);
    const std::string signed_part = tokens::base64url(header) + "." + tokens::base64url(payload);
    unsigned char signature[crypto_sign_BYTES];
    crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(signed_part.data()),
                         signed_part.size(), reinterpret_cast<const unsigned char*>(keys.secret.data()));
    token = signed_part + "." +
            tokens::base64url(std::string_view(reinterpret_cast<const char*>(signature), sizeof signature));
  }
  try {
    tokens::verify(token, keys.trusted, kNowUnixMs);
  } catch (const tokens::TokenError&) {
    // Refused with a reason: what should happen to almost every input.
  }
  return 0;
}
