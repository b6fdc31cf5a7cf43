// GameVerse access tokens: JWTs signed with Ed25519 ("alg": "EdDSA"), the format the auth plugin
// issues and the host's gate verifies. Header-only over libsodium and nlohmann::json; independent
// of the rest of the SDK, so any plugin or tool can verify tokens itself.
#pragma once

#include <sodium.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gameverse::tokens {

struct Claims {
  std::string subject;  // the account id
  std::string session_id;
  std::vector<std::string> roles;
  int64_t issued_unix_ms = 0;
  int64_t expires_unix_ms = 0;  // whole seconds, as JWTs carry them
};

struct VerifyKey {
  std::string kid;
  std::string public_key;  // 32 bytes
};

inline constexpr const char* kDefaultIssuer = "gameverse";
inline constexpr const char* kDefaultAudience = "gameverse";
// How far apart the clocks of the host that signed and the one that verifies may be, by default.
inline constexpr int64_t kClockSkewMs = 30'000;

// What a token must say besides its signature. Who issues tokens ("iss") and for whom ("aud"):
// the auth plugin's `issuer` and `audience` settings, which it publishes with its verification
// keys (with its `clock_skew_s`) so that the gate expects the same. Deployments that share a
// signing key but not these refuse each other's tokens. A token is accepted clock_skew_ms after
// its "exp", and from clock_skew_ms before its "nbf" and "iat".
struct Validation {
  std::string issuer = kDefaultIssuer;
  std::string audience = kDefaultAudience;
  int64_t clock_skew_ms = kClockSkewMs;
};

// The pub/sub topic on which the auth plugin announces revocations (gameverse.auth.v1.Revocation)
// and the host's gate listens.
inline constexpr const char* kRevocationTopic = "gameverse.auth.revocations";

// Why a token was refused; the message says what is wrong with it and nothing more.
struct TokenError : std::runtime_error {
  enum class Kind {
    kMalformed,     // not a JWT, not base64url, no algorithm, no sub or exp
    kAlgorithm,     // an algorithm other than EdDSA
    kUnknownKey,    // signed with a key not among those given: perhaps one not fetched yet
    kBadSignature,  // the signature does not verify
    kExpired,
    kNotYetValid,   // "nbf" or "iat" ahead of the clock by more than the allowed skew
    kWrongAudience  // "typ", "iss" or "aud" are not those of this deployment
  };
  TokenError(Kind kind, const std::string& message) : std::runtime_error(message), kind(kind) {}
  Kind kind;
};

inline void ensure_sodium() {
  struct Init {
    Init() {
      if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
    }
  };
  static const Init init;
}

inline std::string base64url(std::string_view bytes) {
  ensure_sodium();
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// False when `text` is not base64 of the given libsodium variant.
inline bool from_base64(std::string_view text, int variant, std::string& out) {
  ensure_sodium();
  out.assign(text.size(), '\0');
  size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(),
                        nullptr, &length, nullptr, variant) != 0) {
    return false;
  }
  out.resize(length);
  return true;
}

// `text` as it may appear in a message: at most 32 bytes of [A-Za-z0-9._-], anything else '?'.
// For values an attacker chose (a token's "alg", its "kid"), so logs and answers carry no control
// characters, markup or megabytes from them.
inline std::string printable(std::string_view text) {
  constexpr size_t kMax = 32;
  std::string out;
  for (const char c : text.substr(0, kMax)) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
    out += plain ? c : '?';
  }
  if (text.size() > kMax) out += "...";
  return out;
}

// header.payload.signature, with "alg": "EdDSA", "typ": "JWT" and "kid". secret_key: libsodium's
// 64 bytes.
inline std::string sign(std::string_view kid, std::string_view secret_key, const Claims& claims,
                        const Validation& audience = {}) {
  ensure_sodium();
  const nlohmann::json header = {{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", kid}};
  const nlohmann::json payload = {{"iss", audience.issuer},
                                  {"aud", audience.audience},
                                  {"sub", claims.subject},
                                  {"sid", claims.session_id},
                                  {"roles", claims.roles},
                                  {"iat", claims.issued_unix_ms / 1000},
                                  {"nbf", claims.issued_unix_ms / 1000},
                                  {"exp", claims.expires_unix_ms / 1000}};
  const std::string input = base64url(header.dump()) + "." + base64url(payload.dump());
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                       reinterpret_cast<const unsigned char*>(secret_key.data()));
  return input + "." +
         base64url(std::string_view(reinterpret_cast<const char*>(signature), sizeof signature));
}

// The token's claims, or TokenError saying what is wrong: malformed, an algorithm other than
// EdDSA ("none" included), a "typ" other than JWT or at+jwt, a key not in `keys`, a signature that
// does not verify, an issuer or audience other than `expected`'s, expired, or not valid yet
// ("nbf", "iat"); times with expected.clock_skew_ms of leeway. The message never repeats the token's own
// values unfiltered.
inline Claims verify(std::string_view token, const std::vector<VerifyKey>& keys, int64_t now_unix_ms,
                     const Validation& expected = {}) {
  const size_t first = token.find('.');
  const size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    throw TokenError(TokenError::Kind::kMalformed, "malformed token: a JWT has three dot-separated parts");
  }
  auto part = [&](std::string_view text, const char* what) {
    std::string out;
    if (!from_base64(text, sodium_base64_VARIANT_URLSAFE_NO_PADDING, out)) {
      throw TokenError(TokenError::Kind::kMalformed,
                       std::string("malformed token: its ") + what + " is not base64url");
    }
    return out;
  };
  const nlohmann::json header = nlohmann::json::parse(part(token.substr(0, first), "header"), nullptr, false);
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string()) {
    throw TokenError(TokenError::Kind::kMalformed, "malformed token: its header has no algorithm");
  }
  const std::string alg = header["alg"];
  if (alg != "EdDSA")
    throw TokenError(TokenError::Kind::kAlgorithm,
                     "token algorithm '" + printable(alg) + "' is not accepted; tokens are EdDSA");
  const std::string kid = header.contains("kid") && header["kid"].is_string() ? header["kid"] : "";
  const auto key = std::find_if(keys.begin(), keys.end(), [&](const VerifyKey& k) { return k.kid == kid; });
  if (key == keys.end())
    throw TokenError(TokenError::Kind::kUnknownKey,
                     "token signed with an unknown key '" + printable(kid) + "'");
  const std::string signature = part(token.substr(second + 1), "signature");
  const std::string_view input = token.substr(0, second);
  if (signature.size() != crypto_sign_BYTES || key->public_key.size() != crypto_sign_PUBLICKEYBYTES ||
      crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                  reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                                  reinterpret_cast<const unsigned char*>(key->public_key.data())) != 0) {
    throw TokenError(TokenError::Kind::kBadSignature, "token signature does not verify");
  }
  const std::string typ = header.contains("typ") && header["typ"].is_string() ? header["typ"] : "";
  if (typ != "JWT" && typ != "at+jwt") {
    throw TokenError(TokenError::Kind::kWrongAudience, "token type (typ) is not JWT: not an access token");
  }
  const nlohmann::json payload =
      nlohmann::json::parse(part(token.substr(first + 1, second - first - 1), "payload"), nullptr, false);
  if (!payload.is_object() || !payload.contains("sub") || !payload["sub"].is_string() ||
      !payload.contains("exp")) {
    throw TokenError(TokenError::Kind::kMalformed, "malformed token: its payload lacks sub or exp");
  }
  // A time claim in whole seconds between 1970 and 9999, as milliseconds; -1 when absent.
  auto time_claim = [&](const char* claim) -> int64_t {
    if (!payload.contains(claim)) return -1;
    const nlohmann::json& value = payload[claim];
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 253'402'300'799) {
      throw TokenError(TokenError::Kind::kMalformed,
                       std::string("malformed token: its ") + claim + " is not a time in whole seconds");
    }
    return value.get<int64_t>() * 1000;
  };
  Claims claims;
  claims.subject = payload["sub"];
  if (payload.contains("sid") && payload["sid"].is_string()) claims.session_id = payload["sid"];
  if (payload.contains("roles") && payload["roles"].is_array()) {
    for (const auto& role : payload["roles"]) {
      if (role.is_string()) claims.roles.push_back(role);
    }
  }
  claims.expires_unix_ms = time_claim("exp");
  claims.issued_unix_ms = std::max<int64_t>(time_claim("iat"), 0);
  const int64_t not_before_unix_ms = time_claim("nbf");
  if (!payload.contains("iss") || payload["iss"] != expected.issuer) {
    throw TokenError(TokenError::Kind::kWrongAudience,
                     "token issuer (iss) is not '" + expected.issuer + "': issued by another deployment");
  }
  // "aud" is one string or an array of them (RFC 7519).
  const nlohmann::json* aud = payload.contains("aud") ? &payload["aud"] : nullptr;
  const bool for_us = aud != nullptr &&
                      (aud->is_array() ? std::find(aud->begin(), aud->end(), expected.audience) != aud->end()
                                       : *aud == expected.audience);
  if (!for_us) {
    throw TokenError(
        TokenError::Kind::kWrongAudience,
        "token audience (aud) does not include '" + expected.audience + "': meant for another service");
  }
  if (now_unix_ms >= claims.expires_unix_ms + expected.clock_skew_ms) {
    throw TokenError(TokenError::Kind::kExpired, "token expired");
  }
  if (std::max(not_before_unix_ms, claims.issued_unix_ms) > now_unix_ms + expected.clock_skew_ms) {
    throw TokenError(TokenError::Kind::kNotYetValid,
                     "token not valid yet: its nbf or iat is ahead of this host's clock by more than " +
                         std::to_string(expected.clock_skew_ms / 1000) + " s");
  }
  return claims;
}

}  // namespace gameverse::tokens
