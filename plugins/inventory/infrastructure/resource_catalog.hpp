// The catalog as the resource-manager serves it (/gameverse.resources.v1.Resources/
// LookupDefinitions, called with the plugin's own trust), cached per catalog version and dropped
// when a publish is announced on gameverse.resources.v1.catalog.
#pragma once

#include <gameverse/sdk/host.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include "domain/repositories.hpp"

namespace gameverse::inventory {

class ResourceCatalog final : public Catalog {
 public:
  static constexpr const char* kLookupMethod = "/gameverse.resources.v1.Resources/LookupDefinitions";
  static constexpr const char* kPublishedTopic = "gameverse.resources.v1.catalog";
  // Cached ids (found or not) kept at most; beyond, the cache starts over.
  static constexpr size_t kMaxCachedIds = 100000;
  // Lookups of what is missing from the cache before UNAVAILABLE (the catalog kept changing).
  static constexpr int kLookupRounds = 5;

  ResourceCatalog(sdk::Host host, std::chrono::milliseconds timeout) : host_(host), timeout_(timeout) {}

  Definitions lookup(const std::set<std::string>& item_ids, const std::set<std::string>& currency_ids,
                     const std::set<std::string>& bundle_ids) override;

  // A publish of `version` was announced: what was cached for an older version goes.
  void announced(uint64_t version);
  // Asks the current version (a lookup of nothing), in case an announcement was missed (pub/sub
  // over Redis delivers at most once): another version than the cached one drops the cache.
  void check_version();
  // Parses an announcement's payload (CatalogPublished); nullopt when it does not parse.
  static std::optional<uint64_t> version_of_announcement(std::string_view payload);

 private:
  struct Item {
    std::optional<ItemDefinition> definition;
    std::optional<ItemMigration> migration;
  };
  // Asks the resource-manager and caches the answer; false (nothing cached) when the answer is
  // older than the cached or the announced version.
  bool fetch(const std::vector<std::string>& items, const std::vector<std::string>& currencies,
             const std::vector<std::string>& bundles);

  sdk::Host host_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  uint64_t version_ = 0;    // of what is cached
  uint64_t announced_ = 0;  // the newest version announced
  std::map<std::string, Item> items_;
  std::map<std::string, std::optional<CurrencyDefinition>> currencies_;
  std::map<std::string, std::optional<BundleDefinition>> bundles_;
};

}  // namespace gameverse::inventory
