// Access tokens (gameverse/tokens.hpp): claims that a validly signed token carries but that are
// out of range are refused as malformed, never computed with (a finding of the token fuzzer:
// "exp" * 1000 overflowed for seconds beyond INT64_MAX / 1000).
#include <gtest/gtest.h>
#include <gameverse/tokens.hpp>

#include <string>
#include <vector>

namespace gameverse::testing {
namespace {

class TokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens::ensure_sodium();
    unsigned char seed[crypto_sign_SEEDBYTES] = {7};
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(pk, sk, seed);
    secret_.assign(reinterpret_cast<const char*>(sk), sizeof sk);
    keys_ = {{"k1", std::string(reinterpret_cast<const char*>(pk), sizeof pk)}};
  }

  // A token with this payload, signed with the trusted key: only its claims can be wrong.
  std::string signed_token(const std::string& payload) const {
    const std::string input =
        tokens::base64url(R"({"alg":"EdDSA","typ":"JWT","kid":"k1"})") + "." + tokens::base64url(payload);
    unsigned char signature[crypto_sign_BYTES];
    crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(input.data()),
                         input.size(), reinterpret_cast<const unsigned char*>(secret_.data()));
    return input + "." +
           tokens::base64url(std::string_view(reinterpret_cast<const char*>(signature), sizeof signature));
  }

  tokens::TokenError::Kind refusal(const std::string& payload) const {
    try {
      tokens::verify(signed_token(payload), keys_, kNowUnixMs);
    } catch (const tokens::TokenError& e) {
      return e.kind;
    }
    ADD_FAILURE() << "accepted: " << payload;
    return tokens::TokenError::Kind::kMalformed;
  }

  static constexpr int64_t kNowUnixMs = 1'750'000'000'000;
  std::string secret_;
  std::vector<tokens::VerifyKey> keys_;
};

TEST_F(TokensTest, TimesBeyondWhatMillisecondsHoldAreMalformed) {
  using Kind = tokens::TokenError::Kind;
  // Before the range check these wrapped around (or, as unsigned, became -1 s) and read "expired".
  EXPECT_EQ(refusal(R"({"sub":"u","exp":9223372036854775807})"), Kind::kMalformed);
  EXPECT_EQ(refusal(R"({"sub":"u","exp":18446744073709551615})"), Kind::kMalformed);
  EXPECT_EQ(refusal(R"({"sub":"u","exp":-9223372036854775807})"), Kind::kMalformed);
  EXPECT_EQ(refusal(R"({"sub":"u","exp":1760000000,"iat":9223372036854775807})"), Kind::kMalformed);
  EXPECT_EQ(refusal(R"({"sub":"u","exp":1700000000})"), Kind::kExpired);
}

TEST_F(TokensTest, TheLatestRepresentableExpiryIsAccepted) {
  const tokens::Claims claims = tokens::verify(
      signed_token(R"({"sub":"u","exp":9223372036854775,"iat":1750000000})"), keys_, kNowUnixMs);
  EXPECT_EQ(claims.subject, "u");
  EXPECT_EQ(claims.expires_unix_ms, 9223372036854775000);
  EXPECT_EQ(claims.issued_unix_ms, 1750000000000);
}

}  // namespace
}  // namespace gameverse::testing
