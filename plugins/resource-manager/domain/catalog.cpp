#include "domain/catalog.hpp"

#include <cmath>
#include <ctime>
#include <set>

namespace gameverse::resources {

namespace {

using Reason = ValidationError::Reason;

[[noreturn]] void invalid(const std::string& message) {
  throw ValidationError(Reason::kInvalid, message);
}

std::string quoted(const std::string& text) {
  // Ids in messages are shown short and printable: they come from the network.
  std::string out;
  for (char c : text.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > 80) out += "...";
  return "'" + out + "'";
}

// "2026-11-30T10:50:04Z"
std::string utc(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string where(const char* kind, size_t index, const std::string& id) {
  return std::string(kind) + " " + quoted(id) + " (#" + std::to_string(index) + ")";
}

// Valid UTF-8 without control characters (C0, DEL, C1) or the bidirectional overrides and
// isolates (U+202A..U+202E, U+2066..U+2069) that make text show other than it reads; 1..max bytes
// (0 allowed when optional).
bool valid_text(const std::string& text, size_t max_bytes, bool optional) {
  if (text.empty()) return optional;
  if (text.size() > max_bytes) return false;
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t code = 0;
    if (c < 0x80) {
      code = c;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      code = c & 0x1fu;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      code = c & 0x0fu;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      code = c & 0x07u;
    } else {
      return false;
    }
    if (i + extra >= text.size() && extra > 0) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3fu);
    }
    static constexpr uint32_t kSmallest[] = {0, 0x80, 0x800, 0x10000};
    if (code < kSmallest[extra] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return false;
    if ((code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069)) return false;
    i += extra + 1;
  }
  return true;
}

void check_name(const std::string& subject, const std::string& name, const Limits& limits) {
  if (!valid_text(name, limits.max_name_bytes, false)) {
    invalid(subject + ": name must be 1 to " + std::to_string(limits.max_name_bytes) +
            " bytes of UTF-8 without control characters or bidirectional overrides");
  }
}

void check_id(const std::string& subject, const char* field, const std::string& id, const Limits& limits) {
  if (!valid_id(id, limits.max_id_bytes)) {
    invalid(subject + ": " + field + " " + quoted(id) + " must be 1 to " +
            std::to_string(limits.max_id_bytes) +
            " bytes of letters, digits, '_', '.', ':' or '-', starting with a letter or digit");
  }
}

void check_quantity(const std::string& subject, const char* field, int64_t value, int64_t max) {
  if (value < 1 || value > max) {
    invalid(subject + ": " + field + " is " + std::to_string(value) + "; it must be 1 to " +
            std::to_string(max));
  }
}

void validate_item(const Item& item, size_t index, const Limits& limits) {
  const std::string subject = where("item", index, item.id);
  check_id(subject, "id", item.id, limits);
  check_name(subject, item.name, limits);
  if (!item.category.empty() && !valid_id(item.category, limits.max_category_bytes)) {
    invalid(subject + ": category must be empty or 1 to " + std::to_string(limits.max_category_bytes) +
            " bytes of letters, digits, '_', '.', ':' or '-'");
  }
  check_quantity(subject, "max_stack", item.max_stack, limits.max_quantity);
  if (item.properties.size() > limits.max_properties) {
    invalid(subject + ": " + std::to_string(item.properties.size()) + " properties; at most " +
            std::to_string(limits.max_properties));
  }
  for (const auto& [key, value] : item.properties) {
    if (!valid_id(key, limits.max_id_bytes)) {
      invalid(subject + ": property key " + quoted(key) + " must be 1 to " +
              std::to_string(limits.max_id_bytes) + " bytes of letters, digits, '_', '.', ':' or '-'");
    }
    if (std::holds_alternative<std::monostate>(value)) {
      invalid(subject + ": property " + quoted(key) + " has no value");
    }
    if (const auto* d = std::get_if<double>(&value); d != nullptr && !std::isfinite(*d)) {
      invalid(subject + ": property " + quoted(key) + " is not a finite number");
    }
    if (const auto* s = std::get_if<std::string>(&value);
        s != nullptr && !valid_text(*s, limits.max_property_string_bytes, true)) {
      invalid(subject + ": property " + quoted(key) + " must be at most " +
              std::to_string(limits.max_property_string_bytes) +
              " bytes of UTF-8 without control characters or bidirectional overrides");
    }
  }
}

void validate_currency(const Currency& currency, size_t index, const Limits& limits) {
  const std::string subject = where("currency", index, currency.id);
  check_id(subject, "id", currency.id, limits);
  check_name(subject, currency.name, limits);
  check_quantity(subject, "max_balance", currency.max_balance, limits.max_quantity);
}

void validate_bundle_shape(const Bundle& bundle, size_t index, const Limits& limits) {
  const std::string subject = where("bundle", index, bundle.id);
  check_id(subject, "id", bundle.id, limits);
  check_name(subject, bundle.name, limits);
  if (bundle.items.size() + bundle.currencies.size() > limits.max_bundle_entries) {
    invalid(subject + ": " + std::to_string(bundle.items.size() + bundle.currencies.size()) +
            " items and currencies; at most " + std::to_string(limits.max_bundle_entries));
  }
  if (bundle.items.empty() && bundle.currencies.empty())
    invalid(subject + ": grants nothing (no items, no currencies)");
  std::set<std::string> seen;
  for (const ItemAmount& a : bundle.items) {
    check_id(subject, "items.item_id", a.item_id, limits);
    if (!seen.insert(a.item_id).second) invalid(subject + ": item " + quoted(a.item_id) + " is listed twice");
    check_quantity(subject + " item " + quoted(a.item_id), "count", a.count, limits.max_quantity);
  }
  seen.clear();
  for (const CurrencyAmount& a : bundle.currencies) {
    check_id(subject, "currencies.currency_id", a.currency_id, limits);
    if (!seen.insert(a.currency_id).second)
      invalid(subject + ": currency " + quoted(a.currency_id) + " is listed twice");
    check_quantity(subject + " currency " + quoted(a.currency_id), "amount", a.amount, limits.max_quantity);
  }
}

void validate_asset(const Asset& asset, size_t index, const Limits& limits) {
  const std::string subject = where("asset", index, asset.asset_id);
  check_id(subject, "asset_id", asset.asset_id, limits);
  // Content hashes: "sha256:<hex>", base64 and the like.
  bool hash_ok = !asset.content_hash.empty() && asset.content_hash.size() <= limits.max_hash_bytes;
  for (char c : asset.content_hash) {
    hash_ok = hash_ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                          c == ':' || c == '-' || c == '_' || c == '+' || c == '/' || c == '=');
  }
  if (!hash_ok) {
    invalid(subject + ": content_hash must be 1 to " + std::to_string(limits.max_hash_bytes) +
            " bytes of letters, digits and ':-_+/='");
  }
  if (asset.size_bytes < 0 || asset.size_bytes > limits.max_asset_bytes) {
    invalid(subject + ": size_bytes is " + std::to_string(asset.size_bytes) + "; it must be 0 to " +
            std::to_string(limits.max_asset_bytes));
  }
  const bool scheme = asset.url.rfind("https://", 0) == 0 || asset.url.rfind("http://", 0) == 0;
  bool printable = true;
  for (char c : asset.url) printable = printable && c > 0x20 && c < 0x7f;
  if (!scheme || !printable || asset.url.size() > limits.max_url_bytes || asset.url.size() <= 8) {
    invalid(subject + ": url must be an http:// or https:// URL of printable ASCII, at most " +
            std::to_string(limits.max_url_bytes) + " bytes");
  }
}

template <class T, class IdOf>
void put_unique(std::map<std::string, T>& into, const std::vector<T>& list, const char* kind, IdOf id_of) {
  std::set<std::string> seen;
  size_t index = 0;
  for (const T& d : list) {
    if (!seen.insert(id_of(d)).second) {
      invalid(where(kind, index, id_of(d)) + ": the id appears twice in this publish");
    }
    into[id_of(d)] = d;
    ++index;
  }
}

template <class T>
void diff(Kind kind, const std::map<std::string, T>& before, const std::map<std::string, T>& after,
          PublishPlan& plan) {
  for (const auto& [id, d] : after) {
    auto it = before.find(id);
    if (it == before.end() || !(it->second == d)) plan.upserted.push_back({kind, id});
  }
  for (const auto& [id, d] : before) {
    if (!after.contains(id)) plan.removed.push_back({kind, id});
  }
}

}  // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kItem: return "item";
    case Kind::kCurrency: return "currency";
    case Kind::kBundle: return "bundle";
    case Kind::kAsset: return "asset";
  }
  return "definition";
}

bool Catalog::contains(const Ref& ref) const {
  switch (ref.kind) {
    case Kind::kItem: return items.contains(ref.id);
    case Kind::kCurrency: return currencies.contains(ref.id);
    case Kind::kBundle: return bundles.contains(ref.id);
    case Kind::kAsset: return assets.contains(ref.id);
  }
  return false;
}

bool valid_id(const std::string& id, size_t max_bytes) {
  if (id.empty() || id.size() > max_bytes) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != ':' && c != '-'))) return false;
  }
  return true;
}

PublishPlan plan_publish(const Catalog& current, const PublishRequest& request, const Limits& limits) {
  if (request.expected_version && *request.expected_version != current.version) {
    throw ValidationError(Reason::kVersionMismatch,
                          "the publish builds on version " + std::to_string(*request.expected_version) +
                              " but the current version is " + std::to_string(current.version) +
                              "; nothing was published");
  }
  const size_t carried = request.items.size() + request.currencies.size() + request.bundles.size() +
                         request.assets.size() + request.remove.size() + request.migrations.size();
  if (carried > limits.max_request_definitions) {
    throw ValidationError(Reason::kTooLarge, "the publish carries " + std::to_string(carried) +
                                                 " definitions, removals and migrations; at most " +
                                                 std::to_string(limits.max_request_definitions));
  }
  if (request.replace_all && !request.remove.empty()) {
    invalid("remove must be empty with replace_all: the definitions left out are the ones removed");
  }
  for (size_t i = 0; i < request.items.size(); ++i) validate_item(request.items[i], i, limits);
  for (size_t i = 0; i < request.currencies.size(); ++i) validate_currency(request.currencies[i], i, limits);
  for (size_t i = 0; i < request.bundles.size(); ++i) validate_bundle_shape(request.bundles[i], i, limits);
  for (size_t i = 0; i < request.assets.size(); ++i) validate_asset(request.assets[i], i, limits);

  PublishPlan plan;
  Catalog& next = plan.next;
  if (!request.replace_all) next = current;
  if (request.replace_all) next.migrations = current.migrations;
  next.version = current.version;
  next.published_unix_ms = current.published_unix_ms;
  put_unique(next.items, request.items, "item", [](const Item& d) { return d.id; });
  put_unique(next.currencies, request.currencies, "currency", [](const Currency& d) { return d.id; });
  put_unique(next.bundles, request.bundles, "bundle", [](const Bundle& d) { return d.id; });
  put_unique(next.assets, request.assets, "asset", [](const Asset& d) { return d.asset_id; });
  std::set<Ref> removing;
  for (size_t i = 0; i < request.remove.size(); ++i) {
    const Ref& ref = request.remove[i];
    const std::string subject =
        "remove #" + std::to_string(i) + " (" + kind_name(ref.kind) + " " + quoted(ref.id) + ")";
    check_id(subject, "id", ref.id, limits);
    if (!current.contains(ref))
      invalid(subject + ": not defined in version " + std::to_string(current.version));
    if (!removing.insert(ref).second) invalid(subject + ": listed twice");
    switch (ref.kind) {
      case Kind::kItem: next.items.erase(ref.id); break;
      case Kind::kCurrency: next.currencies.erase(ref.id); break;
      case Kind::kBundle: next.bundles.erase(ref.id); break;
      case Kind::kAsset: next.assets.erase(ref.id); break;
    }
  }
  // A definition both upserted and removed in one change set is a contradiction.
  if (!removing.empty()) {
    std::set<Ref> upserting;
    for (const Item& d : request.items) upserting.insert({Kind::kItem, d.id});
    for (const Currency& d : request.currencies) upserting.insert({Kind::kCurrency, d.id});
    for (const Bundle& d : request.bundles) upserting.insert({Kind::kBundle, d.id});
    for (const Asset& d : request.assets) upserting.insert({Kind::kAsset, d.asset_id});
    for (const Ref& ref : removing) {
      if (upserting.contains(ref)) {
        invalid(std::string(kind_name(ref.kind)) + " " + quoted(ref.id) +
                " is both defined and removed in this publish");
      }
    }
  }

  // Only growth past the limit is refused: a catalog over a lowered limit can still shrink.
  if (next.size() > limits.max_catalog_definitions && next.size() > current.size()) {
    throw ValidationError(Reason::kTooLarge, "the catalog would hold " + std::to_string(next.size()) +
                                                 " definitions; at most " +
                                                 std::to_string(limits.max_catalog_definitions));
  }

  // References: a bundle grants only defined items and currencies; a live bundle only live ones.
  for (const auto& [id, bundle] : next.bundles) {
    const std::string subject = "bundle " + quoted(id);
    for (const ItemAmount& a : bundle.items) {
      auto it = next.items.find(a.item_id);
      if (it == next.items.end())
        invalid(subject + ": items names " + quoted(a.item_id) + ", which is not a defined item");
      if (it->second.retired && !bundle.retired)
        invalid(subject + ": items names " + quoted(a.item_id) +
                ", which is retired; retire the bundle or drop the item");
      if (a.count > it->second.max_stack)
        invalid(subject + ": count of item " + quoted(a.item_id) + " is over its max_stack " +
                std::to_string(it->second.max_stack));
    }
    for (const CurrencyAmount& a : bundle.currencies) {
      auto it = next.currencies.find(a.currency_id);
      if (it == next.currencies.end())
        invalid(subject + ": currencies names " + quoted(a.currency_id) +
                ", which is not a defined currency");
      if (it->second.retired && !bundle.retired)
        invalid(subject + ": currencies names " + quoted(a.currency_id) +
                ", which is retired; retire the bundle or drop the currency");
      if (a.amount > it->second.max_balance)
        invalid(subject + ": amount of currency " + quoted(a.currency_id) + " is over its max_balance " +
                std::to_string(it->second.max_balance));
    }
  }

  diff(Kind::kItem, current.items, next.items, plan);
  diff(Kind::kCurrency, current.currencies, next.currencies, plan);
  diff(Kind::kBundle, current.bundles, next.bundles, plan);
  diff(Kind::kAsset, current.assets, next.assets, plan);

  // Removals: currencies are never removed (balances would be lost); an item needs a migration,
  // or was retired already and is held by nobody (checked by the caller).
  std::set<std::string> removed_items;
  for (const Ref& ref : plan.removed) {
    if (ref.kind == Kind::kCurrency) {
      invalid("currency " + quoted(ref.id) +
              " cannot be removed: players may hold balances of it; retire it instead");
    }
    if (ref.kind == Kind::kItem) removed_items.insert(ref.id);
  }
  std::set<std::string> migrated;
  for (size_t i = 0; i < request.migrations.size(); ++i) {
    Migration m = request.migrations[i];
    const std::string subject =
        "migration #" + std::to_string(i) + " (from item " + quoted(m.from_item_id) + ")";
    check_id(subject, "from_item_id", m.from_item_id, limits);
    if (!removed_items.contains(m.from_item_id))
      invalid(subject + ": from_item_id is not an item this publish removes");
    if (!migrated.insert(m.from_item_id).second) invalid(subject + ": a second migration for the same item");
    if (m.discard && (m.to_item || m.to_currency))
      invalid(subject + ": discard cannot go with to_item or to_currency");
    if (!m.discard && !m.to_item && !m.to_currency)
      invalid(subject + ": states nothing: give to_item, to_currency or discard");
    if (m.to_item) {
      auto it = next.items.find(m.to_item->item_id);
      if (it == next.items.end() || it->second.retired) {
        invalid(subject + ": to_item.item_id " + quoted(m.to_item->item_id) +
                " is not a defined, non-retired item of the new catalog");
      }
      check_quantity(subject, "to_item.count", m.to_item->count, it->second.max_stack);
    }
    if (m.to_currency) {
      auto it = next.currencies.find(m.to_currency->currency_id);
      if (it == next.currencies.end() || it->second.retired) {
        invalid(subject + ": to_currency.currency_id " + quoted(m.to_currency->currency_id) +
                " is not a defined, non-retired currency of the new catalog");
      }
      check_quantity(subject, "to_currency.amount", m.to_currency->amount, it->second.max_balance);
    }
    // What one player may hold of the removed item must still fit once converted.
    const __int128 most_held =
        current.items.contains(m.from_item_id) ? current.items.at(m.from_item_id).max_stack : 0;
    if (m.to_item) {
      const int64_t target = next.items.at(m.to_item->item_id).max_stack;
      if (most_held * m.to_item->count > target) {
        invalid(subject + ": a full stack of " + std::to_string(static_cast<int64_t>(most_held)) +
                " units times " + "to_item.count " + std::to_string(m.to_item->count) +
                " is over the max_stack " + std::to_string(target) + " of item " +
                quoted(m.to_item->item_id));
      }
    }
    if (m.to_currency) {
      const int64_t target = next.currencies.at(m.to_currency->currency_id).max_balance;
      if (most_held * m.to_currency->amount > target) {
        invalid(subject + ": a full stack of " + std::to_string(static_cast<int64_t>(most_held)) +
                " units times " + "to_currency.amount " + std::to_string(m.to_currency->amount) +
                " is over the max_balance " + std::to_string(target) + " of currency " +
                quoted(m.to_currency->currency_id));
      }
    }
    m.from_max_stack = static_cast<int64_t>(most_held);
    plan.new_migrations.push_back(std::move(m));
  }
  for (const std::string& id : removed_items) {
    if (migrated.contains(id)) continue;
    const Item& before = current.items.at(id);
    if (!before.retired) {
      invalid("item " + quoted(id) + " is removed without a migration and was not retired in version " +
              std::to_string(current.version) + ": state a migration, or retire it first");
    }
    const auto since = current.retired_since.find(id);
    const int64_t possible =
        (since == current.retired_since.end() ? 0 : since->second) + limits.removal_after_retirement_ms;
    if (possible > request.now_unix_ms) {
      invalid("item " + quoted(id) +
              " was retired too recently to be removed without a migration: other hosts "
              "may still grant it until they read its retirement; that is possible from " +
              utc(possible) + " (in " + std::to_string((possible - request.now_unix_ms + 999) / 1000) +
              " s), or state a migration now");
    }
    plan.needs_unheld.push_back(id);
  }
  // Retirement times: kept while an item stays retired, set by the publish that retires a live
  // item. One defined retired was never grantable anywhere: it may go at once.
  next.retired_since.clear();
  for (const auto& [id, item] : next.items) {
    if (!item.retired) continue;
    const auto was = current.items.find(id);
    const auto since = current.retired_since.find(id);
    if (was == current.items.end())
      next.retired_since[id] = 0;
    else if (was->second.retired)
      next.retired_since[id] = since == current.retired_since.end() ? 0 : since->second;
    else
      next.retired_since[id] = request.now_unix_ms;
  }

  for (const Migration& m : plan.new_migrations) next.migrations[m.from_item_id] = m;
  for (const auto& [id, item] : next.items) {
    if (next.migrations.erase(id) > 0) plan.cleared_migrations.push_back(id);
  }
  // Holdings of removed items are converted lazily, so what a kept migration converts into must
  // stay defined. (It may be retired: the conversion is the holder's, not a new grant.)
  for (const auto& [from, m] : next.migrations) {
    if (m.to_item && !next.items.contains(m.to_item->item_id)) {
      invalid("item " + quoted(m.to_item->item_id) + " cannot be removed: the migration of removed item " +
              quoted(from) + " (version " + std::to_string(m.catalog_version) + ") converts into it");
    }
  }

  // Kept migrations convert lazily, so their targets' limits must keep holding a full stack.
  for (const auto& [from, m] : next.migrations) {
    if (m.from_max_stack <= 0) continue;
    const std::string by = "the migration of removed item " + quoted(from) + " (version " +
                           std::to_string(m.catalog_version) + ") converts a full stack of " +
                           std::to_string(m.from_max_stack) + " into ";
    if (m.to_item) {
      const auto it = next.items.find(m.to_item->item_id);
      const __int128 needed = static_cast<__int128>(m.from_max_stack) * m.to_item->count;
      if (it != next.items.end() && needed > it->second.max_stack) {
        invalid("item " + quoted(m.to_item->item_id) + ": max_stack " + std::to_string(it->second.max_stack) +
                " is too low: " + by + std::to_string(static_cast<int64_t>(needed)) + " of it");
      }
    }
    if (m.to_currency) {
      const auto it = next.currencies.find(m.to_currency->currency_id);
      const __int128 needed = static_cast<__int128>(m.from_max_stack) * m.to_currency->amount;
      if (it != next.currencies.end() && needed > it->second.max_balance) {
        invalid("currency " + quoted(m.to_currency->currency_id) + ": max_balance " +
                std::to_string(it->second.max_balance) + " is too low: " + by +
                std::to_string(static_cast<int64_t>(needed)) + " of it");
      }
    }
  }

  const size_t changes = plan.upserted.size() + plan.removed.size() + plan.new_migrations.size() +
                         plan.cleared_migrations.size();
  if (changes > limits.max_changes_per_publish) {
    throw ValidationError(
        Reason::kTooLarge,
        "the publish changes " + std::to_string(changes) +
            " definitions and migrations; one publish is applied in one atomic store batch, "
            "which holds at most " +
            std::to_string(limits.max_changes_per_publish) + ": publish it as several change sets");
  }
  return plan;
}

Changes changes_since(const Catalog& current, const std::vector<ChangeRecord>& history, uint64_t since,
                      size_t max_refs) {
  Changes out;
  if (since >= current.version) return out;  // nothing newer (or a version from the future: nothing to add)
  if (since == 0 || history.empty() || history.front().version > since + 1) {
    out.refetch_all = true;
    return out;
  }
  std::set<Ref> touched;
  for (const ChangeRecord& record : history) {
    if (record.version <= since) continue;
    touched.insert(record.changed.begin(), record.changed.end());
    if (touched.size() > max_refs) {
      out.refetch_all = true;
      return out;
    }
  }
  for (const Ref& ref : touched) (current.contains(ref) ? out.upserted : out.removed).push_back(ref);
  return out;
}

}  // namespace gameverse::resources
