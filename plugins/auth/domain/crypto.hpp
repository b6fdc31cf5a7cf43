// Password hashing (Argon2id) and access tokens (JWT signed with Ed25519), over libsodium.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "domain/hash_limiter.hpp"
#include "domain/model.hpp"

namespace gameverse::auth {

// Argon2id with libsodium's crypto_pwhash_str; the cost is kept inside each hash, so raising it
// applies to new hashes and old ones still verify.
struct PasswordHasher {
  uint64_t opslimit;  // passes over memory
  size_t memlimit;    // bytes
  // When set, every hash and verify holds one of its workers (kBusy when none is to be had).
  std::shared_ptr<HashLimiter> limiter;
  std::string hash(const std::string& password) const;
  bool verify(const std::string& hash, const std::string& password) const;
  // True when `hash` was not made with this cost (or algorithm): re-hash after a verify.
  bool needs_rehash(const std::string& hash) const;
};

// Cryptographically random bytes as unpadded base64url.
std::string random_token(size_t bytes);
// A one-way digest for storing refresh tokens (BLAKE2b-256, hex).
std::string token_digest(std::string_view token);

// Device ids are client-made random secrets (128 bits or more), so a fast digest suffices: the
// store keeps "b2:" + token_digest(device id), never the id. The prefix tells a key from a plain
// id that a record from before hashing may hold.
std::string device_key(std::string_view device_id);
bool is_device_key(std::string_view entry);
// What GetAccount shows of a device: 12 hex digits of its key, enough to tell devices apart.
std::string device_fingerprint(std::string_view entry);

SigningKey generate_signing_key(int64_t now_unix_ms);
// A key from a 32-byte seed given as base64 (standard or url-safe); kInvalidArgument otherwise.
SigningKey signing_key_from_seed(const std::string& seed_base64, int64_t now_unix_ms);

// header.payload.signature, with "alg": "EdDSA" and the key's "kid".
std::string sign_token(const SigningKey& key, const TokenClaims& claims, const tokens::Validation& audience);

// Signing secrets at rest: XChaCha20-Poly1305 under a 32-byte key encryption key, with the kid as
// associated data (a sealed secret moved to another kid does not open). The sealed form is the
// 24-byte nonce followed by the ciphertext.
std::string seal_secret(const std::string& kek, const std::string& kid, const std::string& secret);
// kInvalidArgument naming the kid when it does not open: another KEK, or an altered record.
std::string open_secret(const std::string& kek, const std::string& kid, const std::string& sealed);
// A KEK given as base64 (standard or url-safe) of 32 bytes; kInvalidArgument naming `source`.
std::string key_encryption_key(const std::string& base64, const std::string& source);

// Verifies a token against the given public keys (kid → Ed25519 public key). Throws
// kUnauthenticated saying what is wrong: malformed, an algorithm other than EdDSA ("none"
// included), an unknown key, a signature that does not verify, expired.
using VerifyKey = tokens::VerifyKey;
TokenClaims verify_token(std::string_view token, const std::vector<VerifyKey>& keys, int64_t now_unix_ms,
                         const tokens::Validation& audience);

}  // namespace gameverse::auth
