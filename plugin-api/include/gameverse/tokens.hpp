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

// Why a token was refused; the message says what is wrong with it and nothing more.
struct TokenError : std::runtime_error {
  enum class Kind {
    kMalformed,     // not a JWT, not base64url, no algorithm, no sub or exp
    kAlgorithm,     // an algorithm other than EdDSA
    kUnknownKey,    // signed with a key not among those given: perhaps one not fetched yet
    kBadSignature,  // the signature does not verify
    kExpired,
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

// header.payload.signature, with "alg": "EdDSA" and "kid". secret_key: libsodium's 64 bytes.
inline std::string sign(std::string_view kid, std::string_view secret_key, const Claims& claims) {
  ensure_sodium();
  const nlohmann::json header = {{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", kid}};
  const nlohmann::json payload = {{"iss", "gameverse"},
                                  {"sub", claims.subject},
                                  {"sid", claims.session_id},
                                  {"roles", claims.roles},
                                  {"iat", claims.issued_unix_ms / 1000},
                                  {"exp", claims.expires_unix_ms / 1000}};
  const std::string input = base64url(header.dump()) + "." + base64url(payload.dump());
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                       reinterpret_cast<const unsigned char*>(secret_key.data()));
  return input + "." +
         base64url(std::string_view(reinterpret_cast<const char*>(signature), sizeof signature));
}

// A NumericDate claim (whole seconds, as "exp" and "iat" carry them) in milliseconds; false when
// it is not an integer or its milliseconds do not fit in 64 bits.
inline bool claim_unix_ms(const nlohmann::json& seconds, int64_t& out) {
  constexpr int64_t kMaxSeconds = INT64_MAX / 1000;
  if (!seconds.is_number_integer()) return false;
  if (seconds.is_number_unsigned() ? seconds.get<uint64_t>() > static_cast<uint64_t>(kMaxSeconds)
                                   : seconds.get<int64_t>() < -kMaxSeconds) {
    return false;
  }
  out = seconds.get<int64_t>() * 1000;
  return true;
}

// The token's claims, or TokenError saying what is wrong: malformed, an algorithm other than
// EdDSA ("none" included), a key not in `keys`, a signature that does not verify, expired.
inline Claims verify(std::string_view token, const std::vector<VerifyKey>& keys, int64_t now_unix_ms) {
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
                     "token algorithm '" + alg + "' is not accepted; tokens are EdDSA");
  const std::string kid = header.contains("kid") && header["kid"].is_string() ? header["kid"] : "";
  const auto key = std::find_if(keys.begin(), keys.end(), [&](const VerifyKey& k) { return k.kid == kid; });
  if (key == keys.end())
    throw TokenError(TokenError::Kind::kUnknownKey, "token signed with an unknown key '" + kid + "'");
  const std::string signature = part(token.substr(second + 1), "signature");
  const std::string_view input = token.substr(0, second);
  if (signature.size() != crypto_sign_BYTES || key->public_key.size() != crypto_sign_PUBLICKEYBYTES ||
      crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                  reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                                  reinterpret_cast<const unsigned char*>(key->public_key.data())) != 0) {
    throw TokenError(TokenError::Kind::kBadSignature, "token signature does not verify");
  }
  const nlohmann::json payload =
      nlohmann::json::parse(part(token.substr(first + 1, second - first - 1), "payload"), nullptr, false);
  if (!payload.is_object() || !payload.contains("sub") || !payload["sub"].is_string() ||
      !payload.contains("exp") || !payload["exp"].is_number_integer()) {
    throw TokenError(TokenError::Kind::kMalformed, "malformed token: its payload lacks sub or exp");
  }
  Claims claims;
  claims.subject = payload["sub"];
  if (payload.contains("sid") && payload["sid"].is_string()) claims.session_id = payload["sid"];
  if (payload.contains("roles") && payload["roles"].is_array()) {
    for (const auto& role : payload["roles"]) {
      if (role.is_string()) claims.roles.push_back(role);
    }
  }
  if (!claim_unix_ms(payload["exp"], claims.expires_unix_ms) ||
      (payload.contains("iat") && payload["iat"].is_number_integer() &&
       !claim_unix_ms(payload["iat"], claims.issued_unix_ms))) {
    throw TokenError(TokenError::Kind::kMalformed, "malformed token: its exp or iat is not a time");
  }
  if (now_unix_ms >= claims.expires_unix_ms) throw TokenError(TokenError::Kind::kExpired, "token expired");
  return claims;
}

}  // namespace gameverse::tokens
