#include "platform/store_service.hpp"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>

namespace gameverse::platform {

namespace {

constexpr size_t kMacBytes = 32;

std::string field(const std::string& s) {
  return std::to_string(s.size()) + ":" + s;
}

// The key that signs cursors lives in the store, so that every host on it accepts the others'
// cursors (a load balancer sends the next page anywhere). Its space is no plugin's: plugin names
// have no ':'.
constexpr const char* kHostSpace = "gameverse:host";
constexpr const char* kSecretsCollection = "secrets";
constexpr const char* kCursorKeyName = "cursor-mac-key";
constexpr size_t kCursorKeyBytes = 32;

// Reads the shared key, or makes it: create-only, so when two hosts start together one key wins
// and both read it.
std::string shared_cursor_key(StoreBackend& backend) {
  auto stored = [&]() -> std::optional<std::string> {
    auto object = backend.get(kHostSpace, kSecretsCollection, kCursorKeyName);
    if (!object) return std::nullopt;
    if (object->value.size() != kCursorKeyBytes) {
      throw PlatformError(GV_STATUS_DATA_LOSS, "the store's cursor key (space " + std::string(kHostSpace) +
                                                   ", " + kSecretsCollection + "/" + kCursorKeyName +
                                                   ") has " + std::to_string(object->value.size()) +
                                                   " bytes, not " + std::to_string(kCursorKeyBytes));
    }
    return object->value;
  };
  if (auto key = stored()) return *key;
  std::string fresh(kCursorKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(fresh.data()), static_cast<int>(fresh.size())) != 1) {
    throw PlatformError(GV_STATUS_INTERNAL, "no random bytes for the store's cursor key");
  }
  try {
    backend.write(kHostSpace, {{StoreWrite::Kind::kPut, kSecretsCollection, kCursorKeyName, fresh, "", 0}});
    return fresh;
  } catch (const PlatformError& e) {
    if (e.code() != GV_STATUS_ALREADY_EXISTS) throw;
  }
  if (auto key = stored()) return *key;
  throw PlatformError(GV_STATUS_INTERNAL,
                      "the store's cursor key was made by another host but cannot be read");
}

}  // namespace

Store::Store(std::unique_ptr<StoreBackend> backend, StoreLimits limits)
    : backend_(std::move(backend)), limits_(limits), cursor_secret_(shared_cursor_key(*backend_)) {}

void Store::check_collection(const std::string& space, const std::vector<std::string>& collections,
                             const std::string& collection) const {
  if (std::find(collections.begin(), collections.end(), collection) != collections.end()) return;
  std::string declared;
  for (const auto& c : collections) declared += (declared.empty() ? "" : ", ") + c;
  throw PlatformError(GV_STATUS_INVALID_ARGUMENT,
                      "collection '" + collection + "' is not declared by plugin '" + space +
                          "' (declared: " + (declared.empty() ? "none" : declared) + ")");
}

void Store::check_key(const std::string& key) const {
  if (key.empty()) throw PlatformError(GV_STATUS_INVALID_ARGUMENT, "the key is empty");
  if (key.size() > limits_.max_key_bytes) {
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT, "the key is " + std::to_string(key.size()) +
                                                        " bytes, more than " +
                                                        std::to_string(limits_.max_key_bytes));
  }
}

std::optional<StoredObject> Store::get(const std::string& space, const std::vector<std::string>& collections,
                                       const std::string& collection, const std::string& key) {
  check_collection(space, collections, collection);
  check_key(key);
  return backend_->get(space, collection, key);
}

std::vector<int64_t> Store::write(const std::string& space, const std::vector<std::string>& collections,
                                  const std::vector<StoreWrite>& writes) {
  if (writes.empty()) return {};
  if (writes.size() > limits_.max_batch_writes) {
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT, "a batch of " + std::to_string(writes.size()) +
                                                        " writes is more than " +
                                                        std::to_string(limits_.max_batch_writes));
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    const StoreWrite& w = writes[i];
    const std::string which = writes.size() > 1 ? "write " + std::to_string(i) + ": " : "";
    try {
      check_collection(space, collections, w.collection);
      check_key(w.key);
      if (w.kind == StoreWrite::Kind::kPut) {
        if (w.value.size() > limits_.max_value_bytes) {
          throw PlatformError(GV_STATUS_INVALID_ARGUMENT, "the value is " + std::to_string(w.value.size()) +
                                                              " bytes, more than max_value_bytes " +
                                                              std::to_string(limits_.max_value_bytes));
        }
        if (w.owner.size() > limits_.max_owner_bytes) {
          throw PlatformError(
              GV_STATUS_INVALID_ARGUMENT,
              "the owner is longer than " + std::to_string(limits_.max_owner_bytes) + " bytes");
        }
      } else if (w.expected_version == 0) {
        throw PlatformError(GV_STATUS_INVALID_ARGUMENT,
                            "a delete cannot be create-only (expected version 0)");
      }
      if (w.expected_version < kAnyVersion) {
        throw PlatformError(GV_STATUS_INVALID_ARGUMENT,
                            "expected version " + std::to_string(w.expected_version) + " is not a version");
      }
    } catch (const PlatformError& e) {
      throw PlatformError(e.code(), which + e.what());
    }
  }
  return backend_->write(space, writes);
}

std::string Store::cursor_mac(const std::string& space, const StoreQuery& query,
                              const std::string& after_key) const {
  const std::string message = field(space) + field(query.collection) + field(query.key_prefix) +
                              field(query.owner) + field(after_key);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), cursor_secret_.data(), static_cast<int>(cursor_secret_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &length);
  return std::string(reinterpret_cast<const char*>(mac), length);
}

ListResult Store::list(const std::string& space, const std::vector<std::string>& collections,
                       StoreQuery query, const std::string& cursor) {
  check_collection(space, collections, query.collection);
  if (query.limit == 0) query.limit = limits_.default_page;
  if (query.limit > limits_.max_page) {
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT, "a page of " + std::to_string(query.limit) +
                                                        " is more than " + std::to_string(limits_.max_page));
  }
  query.after_key.clear();
  if (!cursor.empty()) {
    // A cursor is the last key of the previous page and a MAC binding it to this query.
    const std::string after_key =
        cursor.size() > kMacBytes ? cursor.substr(0, cursor.size() - kMacBytes) : "";
    const std::string mac = cursor.size() >= kMacBytes ? cursor.substr(cursor.size() - kMacBytes) : "";
    const std::string expected = cursor_mac(space, query, after_key);
    if (mac.size() != kMacBytes || CRYPTO_memcmp(mac.data(), expected.data(), kMacBytes) != 0) {
      throw PlatformError(
          GV_STATUS_INVALID_ARGUMENT,
          "the cursor is not valid for this query: it was altered, comes from another query, or "
          "from before the host restarted");
    }
    query.after_key = after_key;
  }
  ListResult result{backend_->list(space, query), ""};
  if (result.page.more) {
    const std::string& last = result.page.objects.back().key;
    result.next_cursor = last + cursor_mac(space, query, last);
  }
  return result;
}

}  // namespace gameverse::platform
