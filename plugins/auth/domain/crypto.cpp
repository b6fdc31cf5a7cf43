#include "domain/crypto.hpp"

#include <sodium.h>

#include <nlohmann/json.hpp>

namespace gameverse::auth {

namespace {

using K = AuthError::Kind;

struct SodiumInit {
  SodiumInit() {
    if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  }
};

void ensure_sodium() {
  static const SodiumInit init;
}

std::string base64url(std::string_view bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

bool from_base64(std::string_view text, int variant, std::string& out) {
  out.assign(text.size(), '\0');
  size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(),
                        nullptr, &length, nullptr, variant) != 0) {
    return false;
  }
  out.resize(length);
  return true;
}

std::string unauthenticated_part(std::string_view text, const char* what) {
  std::string out;
  if (!from_base64(text, sodium_base64_VARIANT_URLSAFE_NO_PADDING, out)) {
    throw AuthError(K::kUnauthenticated, std::string("malformed token: its ") + what + " is not base64url");
  }
  return out;
}

}  // namespace

std::string PasswordHasher::hash(const std::string& password) const {
  ensure_sodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), opslimit, memlimit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("Argon2id ran out of memory (memlimit " + std::to_string(memlimit) + " bytes)");
  }
  return out;
}

bool PasswordHasher::verify(const std::string& hash, const std::string& password) const {
  ensure_sodium();
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

std::string random_token(size_t bytes) {
  ensure_sodium();
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  return base64url(raw);
}

std::string token_digest(std::string_view token) {
  ensure_sodium();
  unsigned char digest[32];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  char hex[sizeof digest * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return hex;
}

SigningKey generate_signing_key(int64_t now_unix_ms) {
  ensure_sodium();
  SigningKey key;
  key.public_key.resize(crypto_sign_PUBLICKEYBYTES);
  key.secret_key.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(key.public_key.data()),
                      reinterpret_cast<unsigned char*>(key.secret_key.data()));
  key.kid = random_token(9);
  key.created_unix_ms = now_unix_ms;
  return key;
}

SigningKey signing_key_from_seed(const std::string& seed_base64, int64_t now_unix_ms) {
  ensure_sodium();
  std::string seed;
  if (!from_base64(seed_base64, sodium_base64_VARIANT_ORIGINAL, seed) &&
      !from_base64(seed_base64, sodium_base64_VARIANT_URLSAFE_NO_PADDING, seed)) {
    throw AuthError(K::kInvalidArgument, "the signing key is not base64");
  }
  if (seed.size() != crypto_sign_SEEDBYTES) {
    throw AuthError(K::kInvalidArgument, "the signing key is " + std::to_string(seed.size()) +
                                             " bytes; an Ed25519 seed is 32 (openssl rand -base64 32)");
  }
  SigningKey key;
  key.public_key.resize(crypto_sign_PUBLICKEYBYTES);
  key.secret_key.resize(crypto_sign_SECRETKEYBYTES);
  crypto_sign_seed_keypair(reinterpret_cast<unsigned char*>(key.public_key.data()),
                           reinterpret_cast<unsigned char*>(key.secret_key.data()),
                           reinterpret_cast<const unsigned char*>(seed.data()));
  sodium_memzero(seed.data(), seed.size());
  key.kid = "config-" + token_digest(key.public_key).substr(0, 12);  // stable across restarts
  key.created_unix_ms = now_unix_ms;
  return key;
}

std::string sign_token(const SigningKey& key, const TokenClaims& claims) {
  ensure_sodium();
  const nlohmann::json header = {{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", key.kid}};
  const nlohmann::json payload = {{"iss", "gameverse"},
                                  {"sub", claims.subject},
                                  {"sid", claims.session_id},
                                  {"roles", claims.roles},
                                  {"iat", claims.issued_unix_ms / 1000},
                                  {"exp", claims.expires_unix_ms / 1000}};
  const std::string signing_input = base64url(header.dump()) + "." + base64url(payload.dump());
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(signing_input.data()),
                       signing_input.size(), reinterpret_cast<const unsigned char*>(key.secret_key.data()));
  return signing_input + "." +
         base64url(std::string_view(reinterpret_cast<const char*>(signature), sizeof signature));
}

TokenClaims verify_token(std::string_view token, const std::vector<VerifyKey>& keys, int64_t now_unix_ms) {
  ensure_sodium();
  const size_t first = token.find('.');
  const size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    throw AuthError(K::kUnauthenticated, "malformed token: a JWT has three dot-separated parts");
  }
  const nlohmann::json header =
      nlohmann::json::parse(unauthenticated_part(token.substr(0, first), "header"), nullptr, false);
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string()) {
    throw AuthError(K::kUnauthenticated, "malformed token: its header has no algorithm");
  }
  const std::string alg = header["alg"];
  if (alg != "EdDSA") {
    throw AuthError(K::kUnauthenticated, "token algorithm '" + alg + "' is not accepted; tokens are EdDSA");
  }
  const std::string kid = header.contains("kid") && header["kid"].is_string() ? header["kid"] : "";
  const auto key = std::find_if(keys.begin(), keys.end(), [&](const VerifyKey& k) { return k.kid == kid; });
  if (key == keys.end())
    throw AuthError(K::kUnauthenticated, "token signed with an unknown key '" + kid + "'");
  const std::string signature = unauthenticated_part(token.substr(second + 1), "signature");
  const std::string_view signing_input = token.substr(0, second);
  if (signature.size() != crypto_sign_BYTES || key->public_key.size() != crypto_sign_PUBLICKEYBYTES ||
      crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                  reinterpret_cast<const unsigned char*>(signing_input.data()),
                                  signing_input.size(),
                                  reinterpret_cast<const unsigned char*>(key->public_key.data())) != 0) {
    throw AuthError(K::kUnauthenticated, "token signature does not verify");
  }
  const nlohmann::json payload = nlohmann::json::parse(
      unauthenticated_part(token.substr(first + 1, second - first - 1), "payload"), nullptr, false);
  if (!payload.is_object() || !payload.contains("sub") || !payload.contains("exp") ||
      !payload["exp"].is_number()) {
    throw AuthError(K::kUnauthenticated, "malformed token: its payload lacks sub or exp");
  }
  TokenClaims claims;
  claims.subject = payload.value("sub", "");
  claims.session_id = payload.value("sid", "");
  claims.roles = payload.value("roles", std::vector<std::string>{});
  claims.issued_unix_ms = payload.value("iat", int64_t{0}) * 1000;
  claims.expires_unix_ms = payload["exp"].get<int64_t>() * 1000;
  if (now_unix_ms >= claims.expires_unix_ms) throw AuthError(K::kUnauthenticated, "token expired");
  return claims;
}

}  // namespace gameverse::auth
