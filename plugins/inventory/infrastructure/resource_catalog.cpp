#include "infrastructure/resource_catalog.hpp"

#include <thread>

#include "gameverse/resources/v1/resources.pb.h"

namespace gameverse::inventory {

namespace {

namespace res = gameverse::resources::v1;
using Kind = InventoryError::Kind;

constexpr size_t kMaxIdsPerLookup = 1000;  // the resource-manager's limit per request

template <class Field>
Amounts amounts_of(const Field& in) {
  Amounts out;
  for (const auto& a : in) {
    if constexpr (std::is_same_v<std::decay_t<decltype(a)>, res::ItemAmount>) {
      out.push_back({a.item_id(), a.count()});
    } else {
      out.push_back({a.currency_id(), a.amount()});
    }
  }
  return out;
}

template <class Map>
std::vector<std::string> missing_from(const Map& cache, const std::set<std::string>& ids) {
  std::vector<std::string> out;
  for (const std::string& id : ids) {
    if (cache.count(id) == 0) out.push_back(id);
  }
  return out;
}

}  // namespace

std::optional<uint64_t> ResourceCatalog::version_of_announcement(std::string_view payload) {
  res::CatalogPublished published;
  if (!published.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return std::nullopt;
  return published.version();
}

void ResourceCatalog::announced(uint64_t version) {
  std::lock_guard lock(mu_);
  announced_ = std::max(announced_, version);
  if (version_ < announced_) {
    items_.clear();
    currencies_.clear();
    bundles_.clear();
  }
}

void ResourceCatalog::check_version() {
  try {
    fetch({}, {}, {});
  } catch (const InventoryError&) {
    // Unreachable now: the next lookup says so to its caller.
  }
}

bool ResourceCatalog::fetch(const std::vector<std::string>& items, const std::vector<std::string>& currencies,
                            const std::vector<std::string>& bundles) {
  res::LookupDefinitionsRequest request;
  for (const auto& id : items) request.add_item_ids(id);
  for (const auto& id : currencies) request.add_currency_ids(id);
  for (const auto& id : bundles) request.add_bundle_ids(id);
  res::LookupDefinitionsResponse response;
  try {
    response = host_.call<res::LookupDefinitionsResponse>(kLookupMethod, request, sdk::as_plugin, timeout_);
  } catch (const sdk::Error& e) {
    const std::string why =
        e.code() == sdk::StatusCode::kUnimplemented
            ? "the resource-manager plugin is not loaded"
            : "the resource-manager answered " + std::to_string(static_cast<int>(e.code())) + ": " + e.what();
    throw InventoryError(Kind::kUnavailable,
                         "the catalog cannot be reached (" + why + "); nothing was changed, retry later");
  }
  std::lock_guard lock(mu_);
  if (response.version() < version_ || response.version() < announced_) {
    // An answer from before a version already cached or announced (a lookup still in flight when
    // the publish landed): never cached, so the cache never goes back a version; asked again.
    return false;
  }
  if (response.version() != version_) {
    // Another catalog version: nothing cached for the old one is used with it.
    items_.clear();
    currencies_.clear();
    bundles_.clear();
    version_ = response.version();
  }
  if (items_.size() + currencies_.size() + bundles_.size() > kMaxCachedIds) {
    items_.clear();
    currencies_.clear();
    bundles_.clear();
  }
  for (const auto& id : items) items_.try_emplace(id);
  for (const auto& id : currencies) currencies_.try_emplace(id);
  for (const auto& id : bundles) bundles_.try_emplace(id);
  for (const res::ItemDefinition& d : response.items()) {
    items_[d.id()].definition =
        ItemDefinition{d.id(), d.stackable(), d.max_stack(), d.tradable(), d.consumable(), d.retired()};
  }
  for (const res::ItemMigration& m : response.migrations()) {
    ItemMigration migration;
    migration.from_item_id = m.from_item_id();
    if (m.has_to_item() && !m.to_item().item_id().empty()) {
      migration.to_item = Amount{m.to_item().item_id(), m.to_item().count()};
    }
    if (m.has_to_currency() && !m.to_currency().currency_id().empty()) {
      migration.to_currency = Amount{m.to_currency().currency_id(), m.to_currency().amount()};
    }
    migration.discard = m.discard();
    migration.catalog_version = m.catalog_version();
    items_[m.from_item_id()].migration = migration;
  }
  for (const res::CurrencyDefinition& d : response.currencies()) {
    currencies_[d.id()] = CurrencyDefinition{d.id(), d.max_balance(), d.retired()};
  }
  for (const res::BundleDefinition& d : response.bundles()) {
    bundles_[d.id()] =
        BundleDefinition{d.id(), amounts_of(d.items()), amounts_of(d.currencies()), d.retired()};
  }
  return true;
}

Definitions ResourceCatalog::lookup(const std::set<std::string>& item_ids,
                                    const std::set<std::string>& currency_ids,
                                    const std::set<std::string>& bundle_ids) {
  // A new version seen midway empties the cache: then what is still missing is asked again. An
  // answer older than the announced version is asked again after a short pause.
  for (int round = 0; round < kLookupRounds; ++round) {
    if (round > 1) std::this_thread::sleep_for(std::chrono::milliseconds(20 * round));
    std::vector<std::string> items, currencies, bundles;
    {
      std::lock_guard lock(mu_);
      items = missing_from(items_, item_ids);
      currencies = missing_from(currencies_, currency_ids);
      bundles = missing_from(bundles_, bundle_ids);
      if (items.empty() && currencies.empty() && bundles.empty()) {
        Definitions out;
        out.version = version_;
        for (const auto& id : item_ids) {
          const Item& item = items_.at(id);
          if (item.definition) out.items[id] = *item.definition;
          if (item.migration) out.migrations[id] = *item.migration;
        }
        for (const auto& id : currency_ids) {
          if (const auto& d = currencies_.at(id)) out.currencies[id] = *d;
        }
        for (const auto& id : bundle_ids) {
          if (const auto& d = bundles_.at(id)) out.bundles[id] = *d;
        }
        return out;
      }
    }
    // At most 1000 ids per request.
    while (!items.empty() || !currencies.empty() || !bundles.empty()) {
      std::vector<std::string> i, c, b;
      size_t room = kMaxIdsPerLookup;
      auto take = [&room](std::vector<std::string>& from, std::vector<std::string>& to) {
        while (!from.empty() && room > 0) {
          to.push_back(std::move(from.back()));
          from.pop_back();
          --room;
        }
      };
      take(items, i);
      take(currencies, c);
      take(bundles, b);
      if (!fetch(i, c, b)) break;
    }
  }
  throw InventoryError(Kind::kUnavailable,
                       "the catalog changed during every lookup, or the resource-manager still answers with "
                       "a version older than the one announced; nothing was changed, retry");
}

}  // namespace gameverse::inventory
