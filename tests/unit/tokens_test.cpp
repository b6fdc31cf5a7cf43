// gameverse/tokens.hpp: what tokens::verify accepts and refuses besides the signature (type,
// issuer, audience, times with the clock skew), and that its messages never carry the token's
// own header values unfiltered.
#include <gtest/gtest.h>
#include <gameverse/tokens.hpp>

namespace gameverse::tokens {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;

class TokenVerification : public ::testing::Test {
 protected:
  TokenVerification() {
    ensure_sodium();
    public_key_.resize(crypto_sign_PUBLICKEYBYTES);
    secret_key_.resize(crypto_sign_SECRETKEYBYTES);
    crypto_sign_keypair(reinterpret_cast<unsigned char*>(public_key_.data()),
                        reinterpret_cast<unsigned char*>(secret_key_.data()));
    keys_ = {{"k1", public_key_}};
  }
  Claims claims(int64_t issued = kNow) const { return {"ada", "s1", {"player"}, issued, issued + 900'000}; }
  // A token with the given header and payload, signed with the test's key.
  std::string signed_token(const nlohmann::json& header, const nlohmann::json& payload) const {
    const std::string input = base64url(header.dump()) + "." + base64url(payload.dump());
    unsigned char signature[crypto_sign_BYTES];
    crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(input.data()),
                         input.size(), reinterpret_cast<const unsigned char*>(secret_key_.data()));
    return input + "." +
           base64url(std::string_view(reinterpret_cast<const char*>(signature), sizeof signature));
  }
  nlohmann::json payload() const {
    return {{"iss", "gameverse"}, {"aud", "gameverse"}, {"sub", "ada"},
            {"iat", kNow / 1000}, {"nbf", kNow / 1000}, {"exp", kNow / 1000 + 900}};
  }
  static nlohmann::json header() { return {{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", "k1"}}; }
  // The message of the TokenError that verify throws, after checking its kind.
  std::string refusal(const std::string& token, TokenError::Kind kind, int64_t now = kNow,
                      const Validation& expected = {}) const {
    try {
      verify(token, keys_, now, expected);
    } catch (const TokenError& e) {
      EXPECT_EQ(static_cast<int>(e.kind), static_cast<int>(kind)) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "the token was accepted";
    return "";
  }

  std::string public_key_;
  std::string secret_key_;
  std::vector<VerifyKey> keys_;
};

TEST_F(TokenVerification, ATokenSignedHereVerifiesWithItsIssuerAndAudience) {
  const Validation mine{"studio", "game-1"};
  const Claims verified = verify(sign("k1", secret_key_, claims(), mine), keys_, kNow, mine);
  EXPECT_EQ(verified.subject, "ada");
  EXPECT_EQ(verified.session_id, "s1");
  // "typ": "at+jwt" (RFC 9068) is accepted too, and "aud" may be a list.
  nlohmann::json h = header();
  h["typ"] = "at+jwt";
  nlohmann::json p = payload();
  p["aud"] = nlohmann::json::array({"other", "gameverse"});
  EXPECT_EQ(verify(signed_token(h, p), keys_, kNow).subject, "ada");
}

TEST_F(TokenVerification, AnotherTypeIssuerOrAudienceIsRefused) {
  nlohmann::json h = header();
  h["typ"] = "JOSE";
  EXPECT_EQ(refusal(signed_token(h, payload()), TokenError::Kind::kWrongAudience),
            "token type (typ) is not JWT: not an access token");
  h.erase("typ");
  refusal(signed_token(h, payload()), TokenError::Kind::kWrongAudience);

  // Two deployments sharing a signing key: each refuses the other's tokens.
  const std::string theirs = sign("k1", secret_key_, claims(), {"other-studio", "gameverse"});
  EXPECT_EQ(refusal(theirs, TokenError::Kind::kWrongAudience),
            "token issuer (iss) is not 'gameverse': issued by another deployment");
  nlohmann::json p = payload();
  p.erase("iss");
  refusal(signed_token(header(), p), TokenError::Kind::kWrongAudience);

  EXPECT_EQ(refusal(sign("k1", secret_key_, claims(), {"gameverse", "another-game"}),
                    TokenError::Kind::kWrongAudience),
            "token audience (aud) does not include 'gameverse': meant for another service");
  p = payload();
  p["aud"] = nlohmann::json::array({"a", "b"});
  refusal(signed_token(header(), p), TokenError::Kind::kWrongAudience);
  p.erase("aud");
  refusal(signed_token(header(), p), TokenError::Kind::kWrongAudience);
}

TEST_F(TokenVerification, TimesAreCheckedWithABoundedClockSkew) {
  const std::string token = sign("k1", secret_key_, claims());
  // Signed on a host whose clock is ahead: accepted within the skew, refused beyond it.
  EXPECT_NO_THROW(verify(token, keys_, kNow - kClockSkewMs));
  EXPECT_EQ(refusal(token, TokenError::Kind::kNotYetValid, kNow - kClockSkewMs - 1000),
            "token not valid yet: its nbf or iat is ahead of this host's clock by more than 30 s");
  // "nbf" alone in the future.
  nlohmann::json p = payload();
  p["nbf"] = kNow / 1000 + 60;
  refusal(signed_token(header(), p), TokenError::Kind::kNotYetValid);
  p["nbf"] = kNow / 1000 + 29;
  EXPECT_NO_THROW(verify(signed_token(header(), p), keys_, kNow));
  p["nbf"] = "tomorrow";
  refusal(signed_token(header(), p), TokenError::Kind::kMalformed);
  p["nbf"] = int64_t{1} << 62;  // would overflow as milliseconds
  refusal(signed_token(header(), p), TokenError::Kind::kMalformed);
  // Past "exp": accepted for the skew, then expired.
  const int64_t expiry = kNow + 900'000;
  EXPECT_NO_THROW(verify(token, keys_, expiry + kClockSkewMs - 1000));
  EXPECT_EQ(refusal(token, TokenError::Kind::kExpired, expiry + kClockSkewMs), "token expired");
  // A skew of zero, as a deployment may set it.
  refusal(token, TokenError::Kind::kExpired, expiry, {"gameverse", "gameverse", 0});
}

TEST_F(TokenVerification, MessagesNeverEchoTheAttackersHeaderValues) {
  const std::string hostile = "evil\n\x1b[31mred\r\n" + std::string(10'000, 'A');
  nlohmann::json h = header();
  h["alg"] = hostile;
  const std::string alg = refusal(signed_token(h, payload()), TokenError::Kind::kAlgorithm);
  h = header();
  h["kid"] = hostile;
  const std::string kid = refusal(signed_token(h, payload()), TokenError::Kind::kUnknownKey);
  for (const std::string& message : {alg, kid}) {
    EXPECT_LT(message.size(), 120u) << message;
    EXPECT_EQ(message.find_first_of("\n\r\x1b"), std::string::npos) << message;
  }
  EXPECT_EQ(kid, "token signed with an unknown key 'evil???31mred??AAAAAAAAAAAAAAAAA...'");
  EXPECT_EQ(printable("key-1_v.2"), "key-1_v.2");
}

}  // namespace
}  // namespace gameverse::tokens
