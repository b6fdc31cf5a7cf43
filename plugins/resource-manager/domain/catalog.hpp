// The content catalog as the domain sees it: definitions, a catalog version, and the rules a
// publish must meet (validated as a whole) to become the next version. Plain C++: no SDK, no
// protobuf.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <gameverse/domain_error.hpp>

namespace gameverse::resources {

enum class Kind { kItem = 1, kCurrency = 2, kBundle = 3, kAsset = 4 };
const char* kind_name(Kind kind);

struct Ref {
  Kind kind = Kind::kItem;
  std::string id;
  auto operator<=>(const Ref&) const = default;
};

// A property's value; monostate is a value the client left unset, which validation refuses.
using PropertyValue = std::variant<std::monostate, int64_t, double, std::string, bool>;

struct Item {
  std::string id, name, category;
  bool stackable = false;
  int64_t max_stack = 0;
  bool tradable = false, consumable = false;
  std::map<std::string, PropertyValue> properties;
  bool retired = false;
  bool operator==(const Item&) const = default;
};

struct Currency {
  std::string id, name;
  int64_t max_balance = 0;
  bool retired = false;
  bool operator==(const Currency&) const = default;
};

struct ItemAmount {
  std::string item_id;
  int64_t count = 0;
  bool operator==(const ItemAmount&) const = default;
};

struct CurrencyAmount {
  std::string currency_id;
  int64_t amount = 0;
  bool operator==(const CurrencyAmount&) const = default;
};

struct Bundle {
  std::string id, name;
  std::vector<ItemAmount> items;
  std::vector<CurrencyAmount> currencies;
  bool retired = false;
  bool operator==(const Bundle&) const = default;
};

struct Asset {
  std::string asset_id, content_hash;
  int64_t size_bytes = 0;
  std::string url;
  bool operator==(const Asset&) const = default;
};

struct Migration {
  std::string from_item_id;
  std::optional<ItemAmount> to_item;
  std::optional<CurrencyAmount> to_currency;
  bool discard = false;
  uint64_t catalog_version = 0;  // the version that removed the item
  int64_t from_max_stack = 0;    // the removed item's max_stack (0: not recorded)
  bool operator==(const Migration&) const = default;
};

// One catalog version: every definition, and the migrations of items removed so far (kept until
// the id is defined again).
struct Catalog {
  uint64_t version = 0;  // 0: nothing published yet
  int64_t published_unix_ms = 0;
  // The lineage: a random epoch made with the first version, and a random id per publish. Two
  // catalogs with the same version are the same only when both match (a store restored from a
  // backup, or a failover that lost the last publish, can reuse a version number).
  std::string epoch;
  std::string publish_id;
  std::map<std::string, Item> items;
  std::map<std::string, Currency> currencies;
  std::map<std::string, Bundle> bundles;
  std::map<std::string, Asset> assets;
  std::map<std::string, Migration> migrations;  // by from_item_id
  // When each retired item was retired (unix ms; 0: before this was recorded). Other hosts may
  // grant an item until they have read its retirement.
  std::map<std::string, int64_t> retired_since;
  size_t size() const { return items.size() + currencies.size() + bundles.size() + assets.size(); }
  bool contains(const Ref& ref) const;
};

// What an admin asks to publish.
struct PublishRequest {
  std::optional<uint64_t> expected_version;
  bool replace_all = false;  // the upserts are the whole catalog
  std::vector<Item> items;
  std::vector<Currency> currencies;
  std::vector<Bundle> bundles;
  std::vector<Asset> assets;
  std::vector<Ref> remove;
  std::vector<Migration> migrations;
  int64_t now_unix_ms = 0;  // when it is published: items retired by it are retired from then
};

struct Limits {
  size_t max_changes_per_publish = 400;  // definitions added, changed or removed, plus migrations
  size_t max_catalog_definitions = 20000;
  size_t max_request_definitions = 20000;  // what one request may carry before anything is compared
  size_t max_id_bytes = 64;
  size_t max_name_bytes = 128;
  size_t max_category_bytes = 64;
  size_t max_properties = 32;
  size_t max_property_string_bytes = 1024;
  size_t max_bundle_entries = 64;
  size_t max_url_bytes = 2048;
  size_t max_hash_bytes = 128;
  int64_t max_quantity = 1'000'000'000'000'000;  // max_stack, max_balance and amounts: headroom for sums
  int64_t max_asset_bytes = int64_t{1} << 40;
  // How long after its retirement an item may be removed without a migration: until then another
  // host may still hold the version before it and grant the item after the holders were asked.
  int64_t removal_after_retirement_ms = 0;
};

// A publish that breaks a rule: the message names the definition and the field. A version
// mismatch is ABORTED (read again and retry), anything else INVALID_ARGUMENT.
class ValidationError : public DomainError {
 public:
  enum class Reason { kInvalid, kVersionMismatch, kTooLarge };
  ValidationError(Reason reason, const std::string& message)
      : DomainError(reason == Reason::kVersionMismatch ? Kind::kAborted : Kind::kInvalidArgument, message),
        reason_(reason) {}
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};

// What a valid publish does to the current catalog.
struct PublishPlan {
  Catalog next;               // version and published time still to be set by the caller
  std::vector<Ref> upserted;  // added or changed
  std::vector<Ref> removed;
  std::vector<Migration> new_migrations;        // for removed items
  std::vector<std::string> cleared_migrations;  // item ids defined again: their old migration goes
  // Retired items removed without a migration: allowed only if nobody holds them (the caller asks
  // the inventory).
  std::vector<std::string> needs_unheld;
  bool unchanged() const { return upserted.empty() && removed.empty(); }
};

// Validates the request against the current catalog as a whole and returns what it changes.
// Throws ValidationError naming the first problem; nothing is changed by this function.
PublishPlan plan_publish(const Catalog& current, const PublishRequest& request, const Limits& limits);

// Checks ids' syntax: 1..max bytes of [A-Za-z0-9_.:-], starting with a letter or digit.
bool valid_id(const std::string& id, size_t max_bytes);

// Changes between two versions for a client cache, from the refs each version changed.
struct ChangeRecord {
  uint64_t version = 0;
  int64_t published_unix_ms = 0;
  std::vector<Ref> changed;  // upserted or removed in this version
  std::string published_by;  // the account (or "operator") that published it
  std::string publish_id;    // the version's publish id (Catalog::publish_id)
};

struct Changes {
  bool refetch_all = false;
  std::vector<Ref> upserted;  // exist now
  std::vector<Ref> removed;   // gone now
};

// The refs changed after `since` up to `current.version`, given the records kept (ascending,
// consecutive). refetch_all when a record needed is not kept or the total passes max_refs.
Changes changes_since(const Catalog& current, const std::vector<ChangeRecord>& history, uint64_t since,
                      size_t max_refs);

}  // namespace gameverse::resources
