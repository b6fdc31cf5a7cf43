// The inventory's rules as pure functions: what a request may hold, and what a change may do to
// holdings given the catalog. Every refusal is an InventoryError that names the field at fault.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "domain/model.hpp"

namespace gameverse::inventory {

// The largest count or amount a request may carry: room to add two and stay in int64.
inline constexpr int64_t kMaxQuantity = 1'000'000'000'000'000'000;  // 10^18
inline constexpr size_t kMaxIdBytes = 128;
inline constexpr size_t kMaxIdempotencyKeyBytes = 128;
inline constexpr size_t kMaxReasonBytes = 256;

// Limits an operator configures.
struct Limits {
  size_t max_lines = 64;            // item plus currency lines (and bundles) in one request
  size_t max_distinct_items = 500;  // distinct items one player may hold
  int64_t default_offer_ttl_s = 3600;
  int64_t max_offer_ttl_s = 7 * 24 * 3600;
  size_t max_open_offers = 50;   // open offers one player may have sent
  int max_conflict_retries = 8;  // store conflicts retried before ABORTED
};

// The longest an offer may be configured to stay open.
inline constexpr int64_t kMostOfferTtlS = 365 * 24 * 3600;
// Limits that make sense together: 1 <= default_offer_ttl_s <= max_offer_ttl_s <= kMostOfferTtlS,
// else an InventoryError(kInvalidArgument) naming the config keys.
void check_limits(const Limits& limits);

// Ids of players, items, currencies and bundles: 1..128 bytes of [A-Za-z0-9_.:-].
void check_id(std::string_view field, std::string_view id);
void check_idempotency_key(std::string_view key);
void check_reason(std::string_view reason);
// Each line: a valid id, once in the list, and 0 < count <= kMaxQuantity.
void check_amounts(std::string_view field, const Amounts& amounts, std::string_view id_name,
                   std::string_view count_name);
// The number of lines across a request, against limits.max_lines.
void check_line_count(size_t lines, const Limits& limits);

// a + b, or an InventoryError(kInvalidArgument) naming `what` when it leaves int64.
int64_t checked_add(int64_t a, int64_t b, std::string_view what);
int64_t checked_multiply(int64_t a, int64_t b, std::string_view what);

// Why items are added or taken: it decides which definitions are acceptable.
enum class Purpose {
  kGrant = 1,  // added by an admin: defined and not retired
  kRevoke,     // taken by an admin: anything held, defined or not
  kConsume,    // used up by the holder: defined and consumable (retired allowed)
  kTrade,      // moved between players: defined and tradable (retired allowed)
  kMigration,  // a catalog migration converts held units
};

// Adds (count > 0) or takes (count < 0) items and currencies and records each delta and
// resulting balance in `entry`. Refuses, naming `field`: unknown definitions (and retired ones for
// kGrant), items that may not be used this way, holding more than max_stack or max_balance,
// taking more than is held, more distinct items than limits.max_distinct_items.
void apply_items(Holdings& holdings, const Definitions& defs, const Amounts& deltas, Purpose purpose,
                 std::string_view field, const std::string& player_id, const Limits& limits,
                 LedgerEntry& entry);
void apply_currencies(Holdings& holdings, const Definitions& defs, const Amounts& deltas, Purpose purpose,
                      std::string_view field, const std::string& player_id, LedgerEntry& entry);

// The same amounts with counts negated (what one side gives, the other takes).
Amounts negated(const Amounts& amounts);

// Holdings of items removed from the catalog with a stated migration, converted; fills `entry`
// (reason "catalog migration") and returns true when anything changed. Items neither defined nor
// migrated stay as they are (frozen). So does, losslessly, an item whose conversion would
// overflow, pass the target's max_stack or max_balance or max_distinct_items, or name a target
// that is not defined; each such item and the reason go into `held_back`.
bool migrate(Holdings& holdings, const Definitions& defs, const Limits& limits, LedgerEntry& entry,
             std::map<std::string, std::string>* held_back = nullptr);

// Items held but not defined in the catalog (after migrating): shown, but they cannot move or be
// used; each with the reason (no migration, or why its migration cannot be applied).
std::map<std::string, std::string> frozen_items(const Holdings& holdings, const Definitions& defs,
                                                const Limits& limits);

}  // namespace gameverse::inventory
