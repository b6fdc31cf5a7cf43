#include "domain/rules.hpp"

#include <algorithm>

namespace gameverse::inventory {

namespace {

using Kind = InventoryError::Kind;

[[noreturn]] void invalid(std::string message) {
  throw InventoryError(Kind::kInvalidArgument, std::move(message));
}

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

// Records one delta and the balance it leaves in the entry (merging repeated ids).
void record(Amounts& deltas, Amounts& results, const std::string& id, int64_t delta, int64_t result) {
  auto d = std::find_if(deltas.begin(), deltas.end(), [&](const Amount& a) { return a.id == id; });
  if (d == deltas.end()) {
    deltas.push_back({id, delta});
    results.push_back({id, result});
    return;
  }
  d->count = checked_add(d->count, delta, "a ledger delta of " + quoted(id));
  auto r = std::find_if(results.begin(), results.end(), [&](const Amount& a) { return a.id == id; });
  r->count = result;
}

void set_balance(std::map<std::string, int64_t>& balances, const std::string& id, int64_t value) {
  if (value == 0) {
    balances.erase(id);
  } else {
    balances[id] = value;
  }
}

}  // namespace

bool Caller::has_role(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}
bool Caller::is_admin() const {
  return !player_id.empty() && (has_role("admin") || has_role("operator"));
}
bool Caller::may_read_any() const {
  return is_admin() || (!player_id.empty() && has_role("moderator"));
}
std::string Caller::actor() const {
  if (player_id.empty()) return "plugin:" + plugin;
  if (has_role("operator") && player_id == "operator") return "operator";
  return "player:" + player_id;
}

void check_limits(const Limits& limits) {
  if (limits.max_offer_ttl_s < 1 || limits.max_offer_ttl_s > kMostOfferTtlS) {
    invalid("max_offer_ttl_s is " + std::to_string(limits.max_offer_ttl_s) + "; it must be between 1 and " +
            std::to_string(kMostOfferTtlS) + " (a year)");
  }
  if (limits.default_offer_ttl_s < 1 || limits.default_offer_ttl_s > limits.max_offer_ttl_s) {
    invalid("default_offer_ttl_s is " + std::to_string(limits.default_offer_ttl_s) +
            "; it must be between 1 and max_offer_ttl_s (" + std::to_string(limits.max_offer_ttl_s) + ")");
  }
}

void check_id(std::string_view field, std::string_view id) {
  if (id.empty()) invalid(std::string(field) + " is empty");
  if (id.size() > kMaxIdBytes) {
    invalid(std::string(field) + " has " + std::to_string(id.size()) + " bytes; the most is " +
            std::to_string(kMaxIdBytes));
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == ':';
    if (!ok) invalid(std::string(field) + " " + quoted(id) + " may hold only letters, digits and _ - . :");
  }
}

void check_idempotency_key(std::string_view key) {
  if (key.empty()) {
    invalid(
        "idempotency_key is required: every change needs a key of the caller's choosing, so a retry "
        "cannot apply it twice");
  }
  if (key.size() > kMaxIdempotencyKeyBytes) {
    invalid("idempotency_key has " + std::to_string(key.size()) + " bytes; the most is " +
            std::to_string(kMaxIdempotencyKeyBytes));
  }
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) invalid("idempotency_key may hold only printable ASCII without spaces");
  }
}

void check_reason(std::string_view reason) {
  if (reason.size() > kMaxReasonBytes) {
    invalid("reason has " + std::to_string(reason.size()) + " bytes; the most is " +
            std::to_string(kMaxReasonBytes));
  }
}

void check_amounts(std::string_view field, const Amounts& amounts, std::string_view id_name,
                   std::string_view count_name) {
  std::set<std::string_view> seen;
  for (size_t i = 0; i < amounts.size(); ++i) {
    const std::string at = std::string(field) + "[" + std::to_string(i) + "]";
    check_id(at + "." + std::string(id_name), amounts[i].id);
    if (!seen.insert(amounts[i].id).second) {
      invalid(at + "." + std::string(id_name) + " " + quoted(amounts[i].id) + " appears twice in " +
              std::string(field) + "; give each once");
    }
    const int64_t n = amounts[i].count;
    if (n <= 0) {
      invalid(at + "." + std::string(count_name) + " is " + std::to_string(n) +
              "; it must be greater than 0");
    }
    if (n > kMaxQuantity) {
      invalid(at + "." + std::string(count_name) + " is " + std::to_string(n) + "; the most is " +
              std::to_string(kMaxQuantity));
    }
  }
}

void check_line_count(size_t lines, const Limits& limits) {
  if (lines > limits.max_lines) {
    invalid("the request has " + std::to_string(lines) + " item, currency and bundle lines; the most is " +
            std::to_string(limits.max_lines));
  }
}

int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) invalid(std::string(what) + " would overflow a 64-bit count");
  return out;
}

int64_t checked_multiply(int64_t a, int64_t b, std::string_view what) {
  int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) invalid(std::string(what) + " would overflow a 64-bit count");
  return out;
}

void apply_items(Holdings& holdings, const Definitions& defs, const Amounts& deltas, Purpose purpose,
                 std::string_view field, const std::string& player_id, const Limits& limits,
                 LedgerEntry& entry) {
  for (size_t i = 0; i < deltas.size(); ++i) {
    const Amount& d = deltas[i];
    const std::string at = std::string(field) + "[" + std::to_string(i) + "]";
    auto def = defs.items.find(d.id);
    if (def == defs.items.end() && purpose != Purpose::kRevoke &&
        !(purpose == Purpose::kMigration && d.count < 0)) {
      invalid(at + ".item_id " + quoted(d.id) + " is not in the catalog (version " +
              std::to_string(defs.version) + ")" +
              (holdings.items.count(d.id) != 0 ? "; it is held but frozen and cannot move" : ""));
    }
    if (purpose == Purpose::kGrant && def->second.retired) {
      throw InventoryError(Kind::kFailedPrecondition,
                           at + ".item_id " + quoted(d.id) + " is retired and can no longer be granted");
    }
    if (purpose == Purpose::kConsume && !def->second.consumable) {
      throw InventoryError(Kind::kFailedPrecondition, at + ".item_id " + quoted(d.id) + " is not consumable");
    }
    if (purpose == Purpose::kTrade && !def->second.tradable) {
      throw InventoryError(Kind::kFailedPrecondition, at + ".item_id " + quoted(d.id) +
                                                          " is not tradable and cannot move between players");
    }
    const auto held_it = holdings.items.find(d.id);
    const int64_t held = held_it == holdings.items.end() ? 0 : held_it->second;
    const int64_t after = checked_add(held, d.count, at + ".count on top of what " + player_id + " holds");
    if (after < 0) {
      throw InventoryError(Kind::kFailedPrecondition, at + ": " + player_id + " holds " +
                                                          std::to_string(held) + " of " + quoted(d.id) +
                                                          ", fewer than " + std::to_string(-d.count));
    }
    if (d.count > 0 && def != defs.items.end()) {
      const int64_t most = std::max<int64_t>(def->second.max_stack, 1);
      if (after > most) {
        throw InventoryError(Kind::kFailedPrecondition, at + ": " + player_id + " would hold " +
                                                            std::to_string(after) + " of " + quoted(d.id) +
                                                            "; its max_stack is " + std::to_string(most));
      }
    }
    if (held == 0 && after > 0 && holdings.items.size() >= limits.max_distinct_items) {
      throw InventoryError(Kind::kFailedPrecondition, at + ": " + player_id + " already holds " +
                                                          std::to_string(holdings.items.size()) +
                                                          " different items, the most one player may hold");
    }
    set_balance(holdings.items, d.id, after);
    record(entry.item_deltas, entry.resulting_items, d.id, d.count, after);
  }
}

void apply_currencies(Holdings& holdings, const Definitions& defs, const Amounts& deltas, Purpose purpose,
                      std::string_view field, const std::string& player_id, LedgerEntry& entry) {
  for (size_t i = 0; i < deltas.size(); ++i) {
    const Amount& d = deltas[i];
    const std::string at = std::string(field) + "[" + std::to_string(i) + "]";
    auto def = defs.currencies.find(d.id);
    if (def == defs.currencies.end() && purpose != Purpose::kRevoke) {
      invalid(at + ".currency_id " + quoted(d.id) + " is not in the catalog (version " +
              std::to_string(defs.version) + ")");
    }
    if (purpose == Purpose::kGrant && def->second.retired) {
      throw InventoryError(Kind::kFailedPrecondition,
                           at + ".currency_id " + quoted(d.id) + " is retired and can no longer be granted");
    }
    const auto held_it = holdings.currencies.find(d.id);
    const int64_t held = held_it == holdings.currencies.end() ? 0 : held_it->second;
    const int64_t after = checked_add(held, d.count, at + ".amount on top of the balance of " + player_id);
    if (after < 0) {
      throw InventoryError(Kind::kFailedPrecondition, at + ": the balance of " + player_id + " in " +
                                                          quoted(d.id) + " is " + std::to_string(held) +
                                                          ", less than " + std::to_string(-d.count));
    }
    if (d.count > 0 && after > def->second.max_balance) {
      throw InventoryError(Kind::kFailedPrecondition, at + ": the balance of " + player_id + " in " +
                                                          quoted(d.id) + " would be " +
                                                          std::to_string(after) + "; its max_balance is " +
                                                          std::to_string(def->second.max_balance));
    }
    set_balance(holdings.currencies, d.id, after);
    record(entry.currency_deltas, entry.resulting_currencies, d.id, d.count, after);
  }
}

Amounts negated(const Amounts& amounts) {
  Amounts out = amounts;
  for (Amount& a : out) a.count = -a.count;  // counts are checked > 0 and <= 10^18 before
  return out;
}

namespace {

// Converts one holding of a removed item into `next`/`step`; empty on success, otherwise why it
// stays as it is (`next` and `step` are then to be thrown away).
std::string migrate_one(Holdings& next, LedgerEntry& step, const Definitions& defs, const Limits& limits,
                        const ItemMigration& migration, const std::string& id, int64_t count) {
  if (!migration.discard && !migration.to_item && !migration.to_currency) {
    return "its catalog migration names no target and is no discard";
  }
  next.items.erase(id);
  record(step.item_deltas, step.resulting_items, id, -count, 0);
  if (migration.to_item) {
    const Amount& to = *migration.to_item;
    auto def = defs.items.find(to.id);
    if (def == defs.items.end()) {
      return "its catalog migration converts it into item " + quoted(to.id) + ", which is not in the catalog";
    }
    const auto held_it = next.items.find(to.id);
    const int64_t held = held_it == next.items.end() ? 0 : held_it->second;
    int64_t add = 0, after = 0;
    if (to.count <= 0 || __builtin_mul_overflow(count, to.count, &add) ||
        __builtin_add_overflow(held, add, &after)) {
      return "converting it into " + quoted(to.id) + " would overflow a 64-bit count";
    }
    const int64_t most = std::max<int64_t>(def->second.max_stack, 1);
    if (after > most) {
      return "converting it would make " + std::to_string(after) + " of " + quoted(to.id) +
             ", over its max_stack of " + std::to_string(most);
    }
    if (held == 0 && next.items.size() >= limits.max_distinct_items) {
      return "converting it into " + quoted(to.id) + " would pass max_distinct_items (" +
             std::to_string(limits.max_distinct_items) + ")";
    }
    set_balance(next.items, to.id, after);
    record(step.item_deltas, step.resulting_items, to.id, add, after);
  }
  if (migration.to_currency) {
    const Amount& to = *migration.to_currency;
    auto def = defs.currencies.find(to.id);
    if (def == defs.currencies.end()) {
      return "its catalog migration converts it into currency " + quoted(to.id) +
             ", which is not in the catalog";
    }
    const auto held_it = next.currencies.find(to.id);
    const int64_t held = held_it == next.currencies.end() ? 0 : held_it->second;
    int64_t add = 0, after = 0;
    if (to.count <= 0 || __builtin_mul_overflow(count, to.count, &add) ||
        __builtin_add_overflow(held, add, &after)) {
      return "converting it into " + quoted(to.id) + " would overflow a 64-bit amount";
    }
    if (after > def->second.max_balance) {
      return "converting it would make a balance of " + std::to_string(after) + " in " + quoted(to.id) +
             ", over its max_balance of " + std::to_string(def->second.max_balance);
    }
    set_balance(next.currencies, to.id, after);
    record(step.currency_deltas, step.resulting_currencies, to.id, add, after);
  }
  return "";
}

}  // namespace

bool migrate(Holdings& holdings, const Definitions& defs, const Limits& limits, LedgerEntry& entry,
             std::map<std::string, std::string>* held_back) {
  bool changed = false;
  const std::map<std::string, int64_t> held = holdings.items;
  for (const auto& [id, count] : held) {
    if (defs.items.count(id) != 0) continue;
    auto m = defs.migrations.find(id);
    if (m == defs.migrations.end()) continue;  // frozen: kept, never dropped silently
    Holdings next = holdings;
    LedgerEntry step = entry;
    const std::string why = migrate_one(next, step, defs, limits, m->second, id, count);
    if (!why.empty()) {
      // Nothing is lost and nothing passes a limit: the holding stays, frozen, with the reason.
      if (held_back != nullptr) (*held_back)[id] = why;
      continue;
    }
    holdings = std::move(next);
    entry = std::move(step);
    entry.catalog_version = std::max(entry.catalog_version, m->second.catalog_version);
    changed = true;
  }
  if (changed) entry.reason = "catalog migration";
  return changed;
}

std::map<std::string, std::string> frozen_items(const Holdings& holdings, const Definitions& defs,
                                                const Limits& limits) {
  std::map<std::string, std::string> out;
  for (const auto& [id, count] : holdings.items) {
    if (defs.items.count(id) != 0) continue;
    auto m = defs.migrations.find(id);
    if (m == defs.migrations.end()) {
      out[id] = "removed from the catalog (version " + std::to_string(defs.version) + ") without a migration";
      continue;
    }
    Holdings next = holdings;
    LedgerEntry step;
    std::string why = migrate_one(next, step, defs, limits, m->second, id, count);
    out[id] = why.empty() ? "removed from the catalog; it is converted by its migration on the next change"
                          : std::move(why);
  }
  return out;
}

}  // namespace gameverse::inventory
