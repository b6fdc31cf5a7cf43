// JSON values in the store and the cache, with nlohmann::json (Debian: nlohmann-json3-dev).
// Optional: only plugins that include this header need it.
//
//   sdk::put_json(store, "profiles", player_id, {{"level", 3}, {"name", "Ada"}});
//   if (auto profile = sdk::get_json(store, "profiles", player_id)) level = (*profile)["level"];
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "gameverse/sdk/plugin.hpp"

namespace gameverse::sdk {

// Parses JSON, throwing Error(kInvalidArgument) that says where it stopped; `what` names the
// value in the message ("the request's profile").
inline nlohmann::json parse_json(std::string_view text, std::string_view what = "the value") {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(StatusCode::kInvalidArgument, std::string(what) + " is not JSON: " + e.what());
  }
}

// Stores value as compact JSON text; returns the new version (see Store::put).
inline int64_t put_json(const Store& store, std::string collection, std::string key,
                        const nlohmann::json& value, int64_t expected_version = Store::kAnyVersion,
                        std::string owner = {}) {
  return store.put(std::move(collection), std::move(key), value.dump(), expected_version, std::move(owner));
}

// The stored value as JSON, or nullopt when the key is absent. A stored value that is not JSON
// throws Error(kDataLoss) naming the object.
inline std::optional<nlohmann::json> get_json(const Store& store, std::string_view collection,
                                              std::string_view key) {
  std::optional<Store::Object> object = store.get(collection, key);
  if (!object) return std::nullopt;
  nlohmann::json value = nlohmann::json::parse(object->value, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    throw Error(StatusCode::kDataLoss,
                "the value of " + std::string(collection) + "/" + std::string(key) + " is not JSON");
  }
  return value;
}

// The cache, likewise.
inline void set_json(const Cache& cache, std::string_view key, const nlohmann::json& value,
                     std::chrono::nanoseconds ttl = std::chrono::nanoseconds(0)) {
  cache.set(key, value.dump(), std::chrono::duration_cast<std::chrono::milliseconds>(ttl));
}

inline std::optional<nlohmann::json> get_json(const Cache& cache, std::string_view key) {
  std::optional<std::string> text = cache.get(key);
  if (!text) return std::nullopt;
  nlohmann::json value = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded())
    throw Error(StatusCode::kDataLoss, "the cached value of " + std::string(key) + " is not JSON");
  return value;
}

}  // namespace gameverse::sdk
