#include "domain/crypto.hpp"

#include <sodium.h>

#include <optional>

#include <gameverse/tokens.hpp>

namespace gameverse::auth {

namespace {

using K = AuthError::Kind;

using tokens::base64url;
using tokens::ensure_sodium;
using tokens::from_base64;

}  // namespace

std::string PasswordHasher::hash(const std::string& password) const {
  ensure_sodium();
  std::optional<HashLimiter::Slot> worker;
  if (limiter) worker.emplace(limiter->acquire());
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), opslimit, memlimit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("Argon2id ran out of memory (memlimit " + std::to_string(memlimit) + " bytes)");
  }
  return out;
}

bool PasswordHasher::verify(const std::string& hash, const std::string& password) const {
  ensure_sodium();
  std::optional<HashLimiter::Slot> worker;
  if (limiter) worker.emplace(limiter->acquire());
  return crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
}

bool PasswordHasher::needs_rehash(const std::string& hash) const {
  ensure_sodium();
  return crypto_pwhash_str_needs_rehash(hash.c_str(), opslimit, memlimit) != 0;
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

namespace {
constexpr std::string_view kDeviceKeyPrefix = "b2:";
}

std::string device_key(std::string_view device_id) {
  return std::string(kDeviceKeyPrefix) + token_digest(device_id);
}

bool is_device_key(std::string_view entry) {
  return entry.substr(0, kDeviceKeyPrefix.size()) == kDeviceKeyPrefix;
}

std::string device_fingerprint(std::string_view entry) {
  return is_device_key(entry) ? std::string(entry.substr(kDeviceKeyPrefix.size(), 12))
                              : token_digest(entry).substr(0, 12);
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

std::string sign_token(const SigningKey& key, const TokenClaims& claims, const tokens::Validation& audience) {
  return tokens::sign(key.kid, key.secret_key, claims, audience);
}

std::string seal_secret(const std::string& kek, const std::string& kid, const std::string& secret) {
  ensure_sodium();
  std::string sealed(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + secret.size() +
                         crypto_aead_xchacha20poly1305_ietf_ABYTES,
                     '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(sealed.data());
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long length = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &length,
      reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
      reinterpret_cast<const unsigned char*>(kid.data()), kid.size(), nullptr, nonce,
      reinterpret_cast<const unsigned char*>(kek.data()));
  return sealed;
}

std::string open_secret(const std::string& kek, const std::string& kid, const std::string& sealed) {
  ensure_sodium();
  constexpr size_t kOverhead =
      crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES;
  std::string secret(sealed.size() > kOverhead ? sealed.size() - kOverhead : 0, '\0');
  unsigned long long length = 0;
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  if (sealed.size() <= kOverhead || crypto_aead_xchacha20poly1305_ietf_decrypt(
                                        reinterpret_cast<unsigned char*>(secret.data()), &length, nullptr,
                                        nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                        sealed.size() - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                        reinterpret_cast<const unsigned char*>(kid.data()), kid.size(), nonce,
                                        reinterpret_cast<const unsigned char*>(kek.data())) != 0) {
    throw AuthError(K::kInvalidArgument,
                    "the stored signing key '" + kid +
                        "' does not decrypt with the configured key encryption key (key_encryption_key_file "
                        "or GAMEVERSE_AUTH_KEK): it was sealed under another key, or its record was altered");
  }
  secret.resize(length);
  return secret;
}

std::string key_encryption_key(const std::string& base64, const std::string& source) {
  ensure_sodium();
  std::string key;
  if ((!from_base64(base64, sodium_base64_VARIANT_ORIGINAL, key) &&
       !from_base64(base64, sodium_base64_VARIANT_URLSAFE_NO_PADDING, key)) ||
      key.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES) {
    throw AuthError(K::kInvalidArgument, "the key encryption key from " + source +
                                             " is not base64 of 32 bytes (openssl rand -base64 32)");
  }
  return key;
}

TokenClaims verify_token(std::string_view token, const std::vector<VerifyKey>& keys, int64_t now_unix_ms,
                         const tokens::Validation& audience) {
  try {
    return tokens::verify(token, keys, now_unix_ms, audience);
  } catch (const tokens::TokenError& e) {
    throw AuthError(K::kUnauthenticated, e.what());
  }
}

}  // namespace gameverse::auth
