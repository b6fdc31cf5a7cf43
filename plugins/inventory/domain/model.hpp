// The inventory's entities: catalog definitions as the inventory needs them, a player's holdings,
// ledger entries and trade offers. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gameverse/domain_error.hpp>

namespace gameverse::inventory {

// A refusal with the status it maps to and a message that names what is wrong.
using InventoryError = gameverse::DomainError;

struct ItemDefinition {
  std::string id;
  bool stackable = false;
  int64_t max_stack = 1;  // the most one player may hold
  bool tradable = false;
  bool consumable = false;
  bool retired = false;  // cannot be granted; holders keep, consume and trade it
};

struct CurrencyDefinition {
  std::string id;
  int64_t max_balance = 0;
  bool retired = false;
};

// An item or currency id with a count (an amount of a currency). In a ledger delta it may be
// negative; everywhere a caller sends one it is > 0.
struct Amount {
  std::string id;
  int64_t count = 0;
  bool operator==(const Amount&) const = default;
};
using Amounts = std::vector<Amount>;

struct BundleDefinition {
  std::string id;
  Amounts items;
  Amounts currencies;
  bool retired = false;
};

// What each unit of an item removed from the catalog becomes (see the resource-manager contract).
struct ItemMigration {
  std::string from_item_id;
  std::optional<Amount> to_item;
  std::optional<Amount> to_currency;
  bool discard = false;
  uint64_t catalog_version = 0;
};

// The definitions a lookup found, at one catalog version. Ids that are absent are unknown.
struct Definitions {
  uint64_t version = 0;  // 0: no catalog published yet
  std::map<std::string, ItemDefinition> items;
  std::map<std::string, CurrencyDefinition> currencies;
  std::map<std::string, BundleDefinition> bundles;
  std::map<std::string, ItemMigration> migrations;  // by from_item_id
};

// One player's holdings and wallet. Zero counts are never kept.
struct Holdings {
  std::map<std::string, int64_t> items;
  std::map<std::string, int64_t> currencies;
  uint64_t sequence = 0;  // of the player's last ledger entry
  // Offers this player sent that are still open, kept under the document's version so that
  // concurrent offers cannot pass max_open_offers.
  uint32_t open_offers = 0;
  bool operator==(const Holdings&) const = default;
};

struct LedgerEntry {
  std::string player_id;
  uint64_t sequence = 0;
  std::string reason;
  std::string actor;
  std::string idempotency_key;
  Amounts item_deltas;
  Amounts currency_deltas;
  Amounts resulting_items;
  Amounts resulting_currencies;
  int64_t created_unix_ms = 0;
  std::string offer_id;
  std::string counterparty;
  uint64_t catalog_version = 0;
};

enum class OfferState { kOpen = 1, kAccepted = 2, kDeclined = 3, kCancelled = 4, kExpired = 5 };

struct Offer {
  std::string id;
  std::string from_player_id;
  std::string to_player_id;
  Amounts give_items;
  Amounts give_currencies;
  Amounts want_items;
  Amounts want_currencies;
  int64_t created_unix_ms = 0;
  int64_t expires_unix_ms = 0;
  OfferState state = OfferState::kOpen;
  int64_t closed_unix_ms = 0;
};

// Who calls: a signed-in player (with roles), the host's operator, or a plugin with its own trust.
struct Caller {
  std::string player_id;  // empty for a plugin calling with its own trust
  std::vector<std::string> roles;
  std::string plugin;           // the in-process caller, if any
  bool trusted_plugin = false;  // `plugin` is listed in trusted_plugins and called with its own trust

  bool has_role(const std::string& role) const;
  bool is_admin() const;      // role admin, or the host's operator
  bool may_read_any() const;  // moderators and admins
  // "player:<id>", "operator" or "plugin:<name>": the ledger's actor and the idempotency scope.
  std::string actor() const;
};

}  // namespace gameverse::inventory
