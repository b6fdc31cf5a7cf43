#include "domain/inventory_service.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

namespace gameverse::inventory {

namespace {

using Kind = InventoryError::Kind;

std::set<std::string> ids_of(const Amounts& amounts) {
  std::set<std::string> out;
  for (const Amount& a : amounts) out.insert(a.id);
  return out;
}

void add_ids(std::set<std::string>& into, const Amounts& amounts) {
  for (const Amount& a : amounts) into.insert(a.id);
}

void add_held(std::set<std::string>& into, const Holdings& holdings) {
  for (const auto& [id, count] : holdings.items) into.insert(id);
}

void require_player(const Caller& caller, const char* what) {
  if (caller.player_id.empty()) {
    throw InventoryError(Kind::kPermissionDenied, std::string(what) + " needs a signed-in player");
  }
}

void require_reader(const Caller& caller, const std::string& player_id) {
  if (caller.player_id == player_id || caller.may_read_any() || caller.trusted_plugin) return;
  throw InventoryError(
      Kind::kPermissionDenied,
      "player_id: a player may read only their own inventory and ledger; moderators and admins "
      "may read any");
}

void require_granter(const Caller& caller) {
  if (caller.is_admin() || caller.trusted_plugin) return;
  if (caller.player_id.empty()) {
    throw InventoryError(Kind::kPermissionDenied,
                         "plugin '" + caller.plugin +
                             "' is not in the inventory's trusted_plugins and cannot grant or revoke");
  }
  throw InventoryError(Kind::kPermissionDenied, "granting and revoking needs the role admin");
}

const char* state_name(OfferState s) {
  switch (s) {
    case OfferState::kOpen: return "open";
    case OfferState::kAccepted: return "accepted";
    case OfferState::kDeclined: return "declined";
    case OfferState::kCancelled: return "cancelled";
    case OfferState::kExpired: return "expired";
  }
  return "unknown";
}

uint32_t page_of(uint32_t asked, uint32_t fallback, uint32_t most) {
  if (asked == 0) return fallback;
  return std::min(asked, most);
}

}  // namespace

struct InventoryService::PlayerChange {
  std::string player_id;
  PlayerState before;
  Holdings after;
  std::vector<LedgerEntry> entries;
  LedgerEntry entry;  // the change itself, appended by finish()
};

InventoryService::InventoryService(InventoryRepository& repository, Catalog& catalog, Limits limits,
                                   std::function<int64_t()> now_unix_ms,
                                   std::function<std::string()> new_offer_id)
    : repository_(repository),
      catalog_(catalog),
      limits_(limits),
      now_(std::move(now_unix_ms)),
      new_offer_id_(std::move(new_offer_id)) {
  check_limits(limits_);
}

void InventoryService::backoff(int attempt) {
  thread_local std::minstd_rand random(std::random_device{}());
  const int most_ms = 1 << std::min(attempt, 5);
  std::this_thread::sleep_for(
      std::chrono::microseconds(std::uniform_int_distribution<int>(100, most_ms * 1000)(random)));
}

Definitions InventoryService::definitions(const std::set<std::string>& items,
                                          const std::set<std::string>& currencies,
                                          const std::set<std::string>& bundles) {
  Definitions defs = catalog_.lookup(items, currencies, bundles);
  // A bundle's contents and the targets of migrations, looked up at the same time (one more
  // lookup, served from the cache): a migration is checked against its target's limits.
  std::set<std::string> more_items, more_currencies;
  for (const auto& [id, bundle] : defs.bundles) {
    add_ids(more_items, bundle.items);
    add_ids(more_currencies, bundle.currencies);
  }
  for (const auto& [id, migration] : defs.migrations) {
    if (migration.to_item) more_items.insert(migration.to_item->id);
    if (migration.to_currency) more_currencies.insert(migration.to_currency->id);
  }
  std::erase_if(more_items, [&](const std::string& id) { return items.count(id) != 0; });
  std::erase_if(more_currencies, [&](const std::string& id) { return currencies.count(id) != 0; });
  if (more_items.empty() && more_currencies.empty()) return defs;
  Definitions extra = catalog_.lookup(more_items, more_currencies, {});
  defs.items.insert(extra.items.begin(), extra.items.end());
  defs.currencies.insert(extra.currencies.begin(), extra.currencies.end());
  defs.migrations.insert(extra.migrations.begin(), extra.migrations.end());
  defs.version = std::max(defs.version, extra.version);
  return defs;
}

std::string InventoryService::scoped_key(const Caller& caller, const ChangeRequest& request,
                                         const std::string& player_id) {
  if (player_id.empty()) return caller.actor() + "/" + request.idempotency_key;
  return caller.actor() + "/" + player_id + "/" + request.idempotency_key;
}

namespace {

std::optional<std::string> first_answer(InventoryRepository& repository, const std::string& scoped_key,
                                        const ChangeRequest& request) {
  std::optional<IdempotencyRecord> first = repository.idempotency(scoped_key);
  if (!first) return std::nullopt;
  if (first->method != request.method || first->request != request.bytes) {
    throw InventoryError(Kind::kAlreadyExists, "idempotency_key '" + request.idempotency_key +
                                                   "' was already used for a different request (" +
                                                   first->method + "); use a new key for a new change");
  }
  return first->response;
}

}  // namespace

std::optional<std::string> InventoryService::replay_or_admit(const std::string& scoped_key,
                                                             const ChangeRequest& request,
                                                             const std::string& legacy_scoped_key) {
  check_idempotency_key(request.idempotency_key);
  if (std::optional<std::string> first = first_answer(repository_, scoped_key, request)) return first;
  if (!legacy_scoped_key.empty()) {
    // Grants and revokes recorded before their keys were scoped per player: the same request
    // (which names the player) still gets its first answer.
    std::optional<IdempotencyRecord> old = repository_.idempotency(legacy_scoped_key);
    if (old && old->method == request.method && old->request == request.bytes) return old->response;
  }
  if (request.admit) request.admit();
  return std::nullopt;
}

std::string InventoryService::mutate(const std::string& scoped_key, const ChangeRequest& request,
                                     const Render& render, const std::function<Plan()>& plan) {
  for (int attempt = 0;; ++attempt) {
    // Looked up again on every attempt: a concurrent call with the same key may have committed.
    if (attempt > 0) {
      if (std::optional<std::string> first = first_answer(repository_, scoped_key, request)) return *first;
    }
    Plan p = plan();
    p.changes.idempotency_key = scoped_key;
    p.changes.idempotency = {request.method, request.bytes, render(p.outcome)};
    if (repository_.commit(p.changes)) return p.changes.idempotency.response;
    const bool give_up = attempt + 1 >= limits_.max_conflict_retries;
    if (on_conflict_) on_conflict_(give_up);
    if (give_up) {
      throw InventoryError(Kind::kAborted, "the inventory changed concurrently " +
                                               std::to_string(attempt + 1) +
                                               " times while this change was applied; nothing was changed, "
                                               "retry with the same idempotency_key");
    }
    backoff(attempt);
  }
}

InventoryService::PlayerChange InventoryService::begin(const std::string& player_id, PlayerState state,
                                                       const Definitions& defs, const Caller& caller,
                                                       const ChangeRequest& request) {
  PlayerChange change;
  change.player_id = player_id;
  change.before = std::move(state);
  change.after = change.before.holdings;
  LedgerEntry migration;
  migration.player_id = player_id;
  // Made by the inventory for the catalog, as on a read: not by the caller (in an accepted offer,
  // the other player) and not under the caller's key.
  migration.actor = "inventory";
  migration.created_unix_ms = now_();
  std::map<std::string, std::string> held_back;
  const bool migrated = migrate(change.after, defs, limits_, migration, &held_back);
  if (!held_back.empty() && on_migration_held_back_) on_migration_held_back_(held_back.size());
  if (migrated) {
    migration.sequence = ++change.after.sequence;
    change.entries.push_back(std::move(migration));
  }
  change.entry.player_id = player_id;
  change.entry.actor = caller.actor();
  change.entry.idempotency_key = request.idempotency_key;
  change.entry.created_unix_ms = now_();
  change.entry.catalog_version = defs.version;
  return change;
}

void InventoryService::finish(PlayerChange& change, ChangeSet& changes) {
  change.entry.sequence = ++change.after.sequence;
  change.entries.push_back(change.entry);
  changes.players.push_back({change.player_id, change.after, change.before.version});
  for (const LedgerEntry& e : change.entries) changes.ledger.push_back(e);
  for (const auto& [id, count] : change.after.items) {
    if (change.before.holdings.items.count(id) == 0) changes.holders_added.emplace_back(id, change.player_id);
  }
  for (const auto& [id, count] : change.before.holdings.items) {
    if (change.after.items.count(id) == 0) changes.holders_removed.emplace_back(id, change.player_id);
  }
}

std::string InventoryService::grant(const Caller& caller, const ChangeRequest& request, const Render& render,
                                    const std::string& player_id, const Amounts& items,
                                    const Amounts& currencies, const std::vector<std::string>& bundle_ids,
                                    const std::string& reason) {
  require_granter(caller);
  check_id("player_id", player_id);  // part of the key's scope: bounded before it is looked up
  const std::string key = scoped_key(caller, request, player_id);
  if (std::optional<std::string> first = replay_or_admit(key, request, scoped_key(caller, request))) {
    return *first;
  }
  check_amounts("items", items, "item_id", "count");
  check_amounts("currencies", currencies, "currency_id", "amount");
  std::set<std::string> bundles;
  for (size_t i = 0; i < bundle_ids.size(); ++i) {
    const std::string at = "bundle_ids[" + std::to_string(i) + "]";
    check_id(at, bundle_ids[i]);
    if (!bundles.insert(bundle_ids[i]).second) {
      throw InventoryError(Kind::kInvalidArgument, at + " '" + bundle_ids[i] + "' appears twice");
    }
  }
  check_line_count(items.size() + currencies.size() + bundle_ids.size(), limits_);
  if (items.empty() && currencies.empty() && bundle_ids.empty()) {
    throw InventoryError(Kind::kInvalidArgument,
                         "a grant needs at least one of items, currencies and bundle_ids");
  }
  check_reason(reason);
  return mutate(key, request, render, [&] {
    PlayerState peek = repository_.load(player_id);
    std::set<std::string> item_ids = ids_of(items);
    add_held(item_ids, peek.holdings);
    const Definitions defs = definitions(item_ids, ids_of(currencies), bundles);
    std::vector<const BundleDefinition*> granted_bundles;
    for (size_t i = 0; i < bundle_ids.size(); ++i) {
      auto b = defs.bundles.find(bundle_ids[i]);
      const std::string at = "bundle_ids[" + std::to_string(i) + "]";
      if (b == defs.bundles.end()) {
        throw InventoryError(Kind::kInvalidArgument, at + " '" + bundle_ids[i] +
                                                         "' is not in the catalog (version " +
                                                         std::to_string(defs.version) + ")");
      }
      if (b->second.retired) {
        throw InventoryError(Kind::kFailedPrecondition,
                             at + " '" + bundle_ids[i] + "' is retired and can no longer be granted");
      }
      granted_bundles.push_back(&b->second);
    }
    PlayerChange change = begin(player_id, std::move(peek), defs, caller, request);
    change.entry.reason = reason.empty() ? "grant" : "grant: " + reason;
    apply_items(change.after, defs, items, Purpose::kGrant, "items", player_id, limits_, change.entry);
    apply_currencies(change.after, defs, currencies, Purpose::kGrant, "currencies", player_id, change.entry);
    // A bundle's contents one bundle at a time, so a refusal names the bundle and its line.
    for (size_t i = 0; i < granted_bundles.size(); ++i) {
      const std::string at = "bundle_ids[" + std::to_string(i) + "] ('" + bundle_ids[i] + "')";
      apply_items(change.after, defs, granted_bundles[i]->items, Purpose::kGrant, at + ".items", player_id,
                  limits_, change.entry);
      apply_currencies(change.after, defs, granted_bundles[i]->currencies, Purpose::kGrant,
                       at + ".currencies", player_id, change.entry);
    }
    Plan plan;
    finish(change, plan.changes);
    plan.outcome = {player_id,    change.after, change.entry,
                    std::nullopt, defs.version, frozen_items(change.after, defs, limits_)};
    return plan;
  });
}

std::string InventoryService::revoke(const Caller& caller, const ChangeRequest& request, const Render& render,
                                     const std::string& player_id, const Amounts& items,
                                     const Amounts& currencies, const std::string& reason) {
  require_granter(caller);
  check_id("player_id", player_id);  // part of the key's scope: bounded before it is looked up
  const std::string key = scoped_key(caller, request, player_id);
  if (std::optional<std::string> first = replay_or_admit(key, request, scoped_key(caller, request))) {
    return *first;
  }
  check_amounts("items", items, "item_id", "count");
  check_amounts("currencies", currencies, "currency_id", "amount");
  check_line_count(items.size() + currencies.size(), limits_);
  if (items.empty() && currencies.empty()) {
    throw InventoryError(Kind::kInvalidArgument, "a revoke needs at least one of items and currencies");
  }
  check_reason(reason);
  return mutate(key, request, render, [&] {
    PlayerState peek = repository_.load(player_id);
    std::set<std::string> item_ids = ids_of(items);
    add_held(item_ids, peek.holdings);
    const Definitions defs = definitions(item_ids, ids_of(currencies));
    PlayerChange change = begin(player_id, std::move(peek), defs, caller, request);
    change.entry.reason = reason.empty() ? "revoke" : "revoke: " + reason;
    apply_items(change.after, defs, negated(items), Purpose::kRevoke, "items", player_id, limits_,
                change.entry);
    apply_currencies(change.after, defs, negated(currencies), Purpose::kRevoke, "currencies", player_id,
                     change.entry);
    Plan plan;
    finish(change, plan.changes);
    plan.outcome = {player_id,    change.after, change.entry,
                    std::nullopt, defs.version, frozen_items(change.after, defs, limits_)};
    return plan;
  });
}

std::string InventoryService::consume(const Caller& caller, const ChangeRequest& request,
                                      const Render& render, const Amounts& items, const std::string& reason) {
  require_player(caller, "consuming items");
  const std::string key = scoped_key(caller, request);
  if (std::optional<std::string> first = replay_or_admit(key, request)) return *first;
  check_amounts("items", items, "item_id", "count");
  check_line_count(items.size(), limits_);
  if (items.empty()) throw InventoryError(Kind::kInvalidArgument, "items is empty: name what to consume");
  check_reason(reason);
  const std::string& player_id = caller.player_id;
  return mutate(key, request, render, [&] {
    PlayerState peek = repository_.load(player_id);
    std::set<std::string> item_ids = ids_of(items);
    add_held(item_ids, peek.holdings);
    const Definitions defs = definitions(item_ids, {});
    PlayerChange change = begin(player_id, std::move(peek), defs, caller, request);
    change.entry.reason = reason.empty() ? "consume" : "consume: " + reason;
    apply_items(change.after, defs, negated(items), Purpose::kConsume, "items", player_id, limits_,
                change.entry);
    Plan plan;
    finish(change, plan.changes);
    plan.outcome = {player_id,    change.after, change.entry,
                    std::nullopt, defs.version, frozen_items(change.after, defs, limits_)};
    return plan;
  });
}

std::string InventoryService::offer(const Caller& caller, const ChangeRequest& request, const Render& render,
                                    const std::string& to_player_id, const Amounts& give_items,
                                    const Amounts& give_currencies, const Amounts& want_items,
                                    const Amounts& want_currencies, int64_t expires_in_s, bool transfer) {
  require_player(caller, transfer ? "a transfer" : "a trade offer");
  const std::string key = scoped_key(caller, request);
  if (std::optional<std::string> first = replay_or_admit(key, request)) return *first;
  check_id("to_player_id", to_player_id);
  if (recipient_check_ && !recipient_check_(to_player_id)) {
    throw InventoryError(Kind::kInvalidArgument,
                         "to_player_id '" + to_player_id + "' is not a player id (" + recipient_rule_ + ")");
  }
  if (to_player_id == caller.player_id) {
    throw InventoryError(Kind::kInvalidArgument,
                         "to_player_id is the caller: an offer goes to another player");
  }
  const char* gi = transfer ? "items" : "give_items";
  const char* gc = transfer ? "currencies" : "give_currencies";
  check_amounts(gi, give_items, "item_id", "count");
  check_amounts(gc, give_currencies, "currency_id", "amount");
  check_amounts("want_items", want_items, "item_id", "count");
  check_amounts("want_currencies", want_currencies, "currency_id", "amount");
  check_line_count(give_items.size() + give_currencies.size() + want_items.size() + want_currencies.size(),
                   limits_);
  if (give_items.empty() && give_currencies.empty() &&
      (transfer || (want_items.empty() && want_currencies.empty()))) {
    throw InventoryError(Kind::kInvalidArgument, transfer
                                                     ? "a transfer needs at least one of items and currencies"
                                                     : "a trade offer gives or wants something");
  }
  if (expires_in_s < 0 || expires_in_s > limits_.max_offer_ttl_s) {
    throw InventoryError(Kind::kInvalidArgument, "expires_in_s is " + std::to_string(expires_in_s) +
                                                     "; it must be between 0 (the default, " +
                                                     std::to_string(limits_.default_offer_ttl_s) + ") and " +
                                                     std::to_string(limits_.max_offer_ttl_s));
  }
  const int64_t ttl_s = expires_in_s == 0 ? limits_.default_offer_ttl_s : expires_in_s;
  return mutate(key, request, render, [&] {
    // What is offered must be tradable and held now; it is checked again when the offer is accepted.
    std::set<std::string> item_ids = ids_of(give_items);
    add_ids(item_ids, want_items);
    std::set<std::string> currency_ids = ids_of(give_currencies);
    add_ids(currency_ids, want_currencies);
    const Definitions defs = definitions(item_ids, currency_ids);
    PlayerState sender = repository_.load(caller.player_id);
    const PlayerState sender_before = sender;
    LedgerEntry scratch;
    apply_items(sender.holdings, defs, negated(give_items), Purpose::kTrade, gi, caller.player_id, limits_,
                scratch);
    apply_currencies(sender.holdings, defs, negated(give_currencies), Purpose::kTrade, gc, caller.player_id,
                     scratch);
    for (size_t i = 0; i < want_items.size(); ++i) {
      auto def = defs.items.find(want_items[i].id);
      const std::string at = "want_items[" + std::to_string(i) + "].item_id '" + want_items[i].id + "'";
      if (def == defs.items.end())
        throw InventoryError(Kind::kInvalidArgument, at + " is not in the catalog");
      if (!def->second.tradable) throw InventoryError(Kind::kFailedPrecondition, at + " is not tradable");
    }
    for (size_t i = 0; i < want_currencies.size(); ++i) {
      if (defs.currencies.count(want_currencies[i].id) == 0) {
        throw InventoryError(Kind::kInvalidArgument, "want_currencies[" + std::to_string(i) +
                                                         "].currency_id '" + want_currencies[i].id +
                                                         "' is not in the catalog");
      }
    }
    Plan plan;
    const int64_t now = now_();
    // The sender's open offers are bounded, counted in the sender's document (written with its
    // version, so concurrent offers cannot pass the bound); expired ones make room.
    Holdings counted = sender_before.holdings;
    if (counted.open_offers >= limits_.max_open_offers) {
      Page<std::string> open =
          repository_.offer_ids(caller.player_id, true, "", static_cast<uint32_t>(limits_.max_open_offers));
      for (const std::string& id : open.items) {
        std::optional<StoredOffer> old = repository_.offer(id);
        if (old && (old->offer.state != OfferState::kOpen || old->offer.expires_unix_ms < now)) {
          StoredOffer closed = *old;
          if (closed.offer.state == OfferState::kOpen) {
            closed.offer.state = OfferState::kExpired;
            closed.offer.closed_unix_ms = now;
            if (counted.open_offers > 0) --counted.open_offers;
          }
          plan.changes.offers.push_back(closed);
          plan.changes.offer_index_removed.push_back({closed.offer.from_player_id, true, id});
          plan.changes.offer_index_removed.push_back({closed.offer.to_player_id, false, id});
        }
      }
      if (counted.open_offers >= limits_.max_open_offers) {
        throw InventoryError(
            Kind::kResourceExhausted,
            caller.player_id + " has " + std::to_string(counted.open_offers) +
                " open offers, the most one player may have; cancel some or wait until they expire");
      }
    }
    ++counted.open_offers;
    plan.changes.players.push_back({caller.player_id, counted, sender_before.version});
    Offer o;
    o.id = new_offer_id_();
    o.from_player_id = caller.player_id;
    o.to_player_id = to_player_id;
    o.give_items = give_items;
    o.give_currencies = give_currencies;
    o.want_items = want_items;
    o.want_currencies = want_currencies;
    o.created_unix_ms = now;
    o.expires_unix_ms = checked_add(now, checked_multiply(ttl_s, 1000, "expires_in_s"), "expires_in_s");
    o.state = OfferState::kOpen;
    plan.changes.offers.push_back({o, 0});
    plan.changes.offer_index_added.push_back({o.from_player_id, true, o.id});
    plan.changes.offer_index_added.push_back({o.to_player_id, false, o.id});
    plan.outcome.player_id = caller.player_id;
    plan.outcome.offer = o;
    plan.outcome.catalog_version = defs.version;
    return plan;
  });
}

std::string InventoryService::accept(const Caller& caller, const ChangeRequest& request, const Render& render,
                                     const std::string& offer_id) {
  require_player(caller, "accepting an offer");
  const std::string key = scoped_key(caller, request);
  if (std::optional<std::string> first = replay_or_admit(key, request)) return *first;
  check_id("offer_id", offer_id);
  return mutate(key, request, render, [&] {
    std::optional<StoredOffer> stored = repository_.offer(offer_id);
    if (!stored) throw InventoryError(Kind::kNotFound, "offer_id '" + offer_id + "' does not exist");
    Offer& o = stored->offer;
    if (o.to_player_id != caller.player_id) {
      throw InventoryError(
          Kind::kPermissionDenied,
          "offer '" + offer_id + "' was not made to the caller; only its recipient may accept it");
    }
    if (o.state != OfferState::kOpen) {
      throw InventoryError(Kind::kFailedPrecondition,
                           "offer '" + offer_id + "' is " + state_name(o.state) + ", not open");
    }
    const int64_t now = now_();
    if (o.expires_unix_ms < now) {
      throw InventoryError(Kind::kFailedPrecondition, "offer '" + offer_id + "' expired at " +
                                                          std::to_string(o.expires_unix_ms) + " (unix ms)");
    }
    std::set<std::string> item_ids = ids_of(o.give_items);
    add_ids(item_ids, o.want_items);
    std::set<std::string> currency_ids = ids_of(o.give_currencies);
    add_ids(currency_ids, o.want_currencies);
    const PlayerState from_peek = repository_.load(o.from_player_id);
    const PlayerState to_peek = repository_.load(o.to_player_id);
    add_held(item_ids, from_peek.holdings);
    add_held(item_ids, to_peek.holdings);
    const Definitions defs = definitions(item_ids, currency_ids);
    const bool transfer = o.want_items.empty() && o.want_currencies.empty();
    const std::string reason = transfer ? "transfer" : "trade";
    PlayerChange from = begin(o.from_player_id, from_peek, defs, caller, request);
    PlayerChange to = begin(o.to_player_id, to_peek, defs, caller, request);
    for (PlayerChange* side : {&from, &to}) {
      side->entry.reason = reason;
      side->entry.offer_id = o.id;
      side->entry.counterparty = side == &from ? o.to_player_id : o.from_player_id;
    }
    // The sender gives, the recipient receives; then the other way. Any shortfall refuses it all.
    // What the sender's side lacks is not the accepter's business: only that the offer cannot be
    // fulfilled now (the sender's holdings stay private).
    auto on_senders_side = [&](const std::function<void()>& step) {
      try {
        step();
      } catch (const InventoryError& e) {
        if (e.kind() != Kind::kFailedPrecondition && e.kind() != Kind::kInvalidArgument) throw;
        throw InventoryError(Kind::kFailedPrecondition,
                             "the sender can no longer fulfil offer '" + o.id + "'; nothing was changed");
      }
    };
    on_senders_side([&] {
      apply_items(from.after, defs, negated(o.give_items), Purpose::kTrade, "offer.give_items",
                  o.from_player_id, limits_, from.entry);
      apply_currencies(from.after, defs, negated(o.give_currencies), Purpose::kTrade, "offer.give_currencies",
                       o.from_player_id, from.entry);
    });
    apply_items(to.after, defs, negated(o.want_items), Purpose::kTrade, "offer.want_items", o.to_player_id,
                limits_, to.entry);
    apply_currencies(to.after, defs, negated(o.want_currencies), Purpose::kTrade, "offer.want_currencies",
                     o.to_player_id, to.entry);
    apply_items(to.after, defs, o.give_items, Purpose::kTrade, "offer.give_items", o.to_player_id, limits_,
                to.entry);
    apply_currencies(to.after, defs, o.give_currencies, Purpose::kTrade, "offer.give_currencies",
                     o.to_player_id, to.entry);
    on_senders_side([&] {
      apply_items(from.after, defs, o.want_items, Purpose::kTrade, "offer.want_items", o.from_player_id,
                  limits_, from.entry);
      apply_currencies(from.after, defs, o.want_currencies, Purpose::kTrade, "offer.want_currencies",
                       o.from_player_id, from.entry);
    });
    if (from.after.open_offers > 0) --from.after.open_offers;
    Plan plan;
    finish(from, plan.changes);
    finish(to, plan.changes);
    o.state = OfferState::kAccepted;
    o.closed_unix_ms = now;
    plan.changes.offers.push_back(*stored);
    plan.changes.offer_index_removed.push_back({o.from_player_id, true, o.id});
    plan.changes.offer_index_removed.push_back({o.to_player_id, false, o.id});
    plan.outcome = {to.player_id, to.after, to.entry, o, defs.version, frozen_items(to.after, defs, limits_)};
    return plan;
  });
}

std::string InventoryService::close(const Caller& caller, const ChangeRequest& request, const Render& render,
                                    const std::string& offer_id, OfferState how) {
  require_player(caller, how == OfferState::kDeclined ? "declining an offer" : "cancelling an offer");
  const std::string key = scoped_key(caller, request);
  if (std::optional<std::string> first = replay_or_admit(key, request)) return *first;
  check_id("offer_id", offer_id);
  return mutate(key, request, render, [&] {
    std::optional<StoredOffer> stored = repository_.offer(offer_id);
    if (!stored) throw InventoryError(Kind::kNotFound, "offer_id '" + offer_id + "' does not exist");
    Offer& o = stored->offer;
    const std::string& party = how == OfferState::kDeclined ? o.to_player_id : o.from_player_id;
    if (party != caller.player_id) {
      throw InventoryError(Kind::kPermissionDenied, how == OfferState::kDeclined
                                                        ? "only the offer's recipient may decline it"
                                                        : "only the offer's sender may cancel it");
    }
    if (o.state != OfferState::kOpen) {
      throw InventoryError(Kind::kFailedPrecondition,
                           "offer '" + offer_id + "' is " + state_name(o.state) + ", not open");
    }
    o.state = how;
    o.closed_unix_ms = now_();
    Plan plan;
    // The sender has one open offer less (under the document's version, as when it was made).
    PlayerState sender = repository_.load(o.from_player_id);
    if (sender.holdings.open_offers > 0) --sender.holdings.open_offers;
    plan.changes.players.push_back({o.from_player_id, sender.holdings, sender.version});
    plan.changes.offers.push_back(*stored);
    plan.changes.offer_index_removed.push_back({o.from_player_id, true, o.id});
    plan.changes.offer_index_removed.push_back({o.to_player_id, false, o.id});
    plan.outcome.player_id = caller.player_id;
    plan.outcome.offer = o;
    return plan;
  });
}

Outcome InventoryService::get(const Caller& caller, const std::string& player_id) {
  check_id("player_id", player_id);
  require_reader(caller, player_id);
  for (int attempt = 0;; ++attempt) {
    PlayerState state = repository_.load(player_id);
    Outcome out{player_id, state.holdings, std::nullopt, std::nullopt, 0, {}};
    if (state.holdings.items.empty()) return out;
    std::set<std::string> held;
    add_held(held, state.holdings);
    Definitions defs;
    try {
      defs = definitions(held, {});
    } catch (const InventoryError& e) {
      if (e.kind() != Kind::kUnavailable) throw;
      return out;  // without the catalog: shown as stored, nothing marked frozen
    }
    out.catalog_version = defs.version;
    Holdings migrated = state.holdings;
    LedgerEntry entry;
    entry.player_id = player_id;
    entry.actor = "inventory";
    entry.created_unix_ms = now_();
    std::map<std::string, std::string> held_back;
    const bool changed = migrate(migrated, defs, limits_, entry, &held_back);
    if (!held_back.empty() && on_migration_held_back_) on_migration_held_back_(held_back.size());
    if (!changed) {
      out.frozen = frozen_items(state.holdings, defs, limits_);
      return out;
    }
    // Removed items are converted on the player's next read or change, with a ledger entry.
    entry.sequence = ++migrated.sequence;
    ChangeSet changes;
    changes.players.push_back({player_id, migrated, state.version});
    changes.ledger.push_back(entry);
    for (const auto& [id, count] : migrated.items) {
      if (state.holdings.items.count(id) == 0) changes.holders_added.emplace_back(id, player_id);
    }
    for (const auto& [id, count] : state.holdings.items) {
      if (migrated.items.count(id) == 0) changes.holders_removed.emplace_back(id, player_id);
    }
    if (repository_.commit(changes)) {
      out.holdings = migrated;
      out.frozen = frozen_items(migrated, defs, limits_);
      return out;
    }
    if (attempt + 1 >= limits_.max_conflict_retries) {
      throw InventoryError(Kind::kAborted, "the inventory of " + player_id + " kept changing; retry");
    }
    backoff(attempt);
  }
}

Page<LedgerEntry> InventoryService::ledger(const Caller& caller, const std::string& player_id,
                                           const std::string& cursor, uint32_t page_size) {
  check_id("player_id", player_id);
  require_reader(caller, player_id);
  return repository_.ledger(player_id, cursor, page_of(page_size, 100, 1000));
}

Page<Offer> InventoryService::offers(const Caller& caller, std::optional<bool> outgoing,
                                     const std::string& cursor, uint32_t page_size) {
  require_player(caller, "listing offers");
  Page<std::string> ids =
      repository_.offer_ids(caller.player_id, outgoing, cursor, page_of(page_size, 50, 200));
  Page<Offer> out;
  out.next_cursor = ids.next_cursor;
  const int64_t now = now_();
  for (const std::string& id : ids.items) {
    std::optional<StoredOffer> stored = repository_.offer(id);
    if (!stored) continue;
    if (stored->offer.state == OfferState::kOpen && stored->offer.expires_unix_ms < now) {
      stored->offer.state = OfferState::kExpired;
    }
    out.items.push_back(stored->offer);
  }
  return out;
}

struct InventoryService::VerifyProgress {
  std::string player_id;
  bool started = false;
  uint64_t target = 0;    // the document's sequence when the check of this player began
  uint64_t expected = 0;  // the last sequence summed
  std::string ledger_cursor;
  std::map<std::string, int64_t> items, currencies;
  // Every player, a page at a time: the players of the page still to check, and the next page.
  bool all_players = false;
  std::vector<std::string> pending;
  std::string players_cursor;
};

namespace {

constexpr const char* kVerifyCursorPrefix = "verify1;";

std::string hex(std::string_view in) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : in) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

[[noreturn]] void bad_cursor() {
  throw InventoryError(Kind::kInvalidArgument, "cursor is not one VerifyLedger returned for this request");
}

std::string unhex(std::string_view in) {
  if (in.size() % 2 != 0) bad_cursor();
  std::string out;
  auto value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    bad_cursor();
  };
  for (size_t i = 0; i < in.size(); i += 2) out += static_cast<char>(value(in[i]) * 16 + value(in[i + 1]));
  return out;
}

std::vector<std::string> split(std::string_view in, char by) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i <= in.size(); ++i) {
    if (i == in.size() || in[i] == by) {
      out.emplace_back(in.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

uint64_t number(const std::string& text) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789-") != std::string::npos)
    bad_cursor();
  try {
    return static_cast<uint64_t>(std::stoll(text));
  } catch (const std::exception&) {
    bad_cursor();
  }
}

std::string sums_text(const std::map<std::string, int64_t>& sums) {
  std::string out;
  for (const auto& [id, n] : sums) out += hex(id) + "=" + std::to_string(n) + ",";
  return out;
}

std::map<std::string, int64_t> sums_of(const std::string& text) {
  std::map<std::string, int64_t> out;
  for (const std::string& part : split(text, ',')) {
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    if (eq == std::string::npos) bad_cursor();
    out[unhex(part.substr(0, eq))] = static_cast<int64_t>(number(part.substr(eq + 1)));
  }
  return out;
}

// What an accepted offer moves for one of its sides: the sender gives and receives what it wants,
// the recipient the other way round. The two sides' deltas cancel out.
std::map<std::string, int64_t> offer_deltas(const Amounts& give, const Amounts& want, bool sender) {
  std::map<std::string, int64_t> out;
  for (const Amount& a : give) out[a.id] += sender ? -a.count : a.count;
  for (const Amount& a : want) out[a.id] += sender ? a.count : -a.count;
  std::erase_if(out, [](const auto& kv) { return kv.second == 0; });
  return out;
}

std::map<std::string, int64_t> deltas_of(const Amounts& deltas) {
  std::map<std::string, int64_t> out;
  for (const Amount& d : deltas) out[d.id] += d.count;
  std::erase_if(out, [](const auto& kv) { return kv.second == 0; });
  return out;
}

}  // namespace

bool InventoryService::verify_player(VerifyProgress& progress, VerifyReport& report, uint64_t& budget,
                                     const std::function<bool()>& cancelled) {
  const std::string& player_id = progress.player_id;
  std::optional<PlayerState> snapshot;
  if (!progress.started) {
    snapshot = repository_.load(player_id);
    progress.target = snapshot->holdings.sequence;
    progress.started = true;
  }
  auto note = [&](std::string kind, std::string id, int64_t held, int64_t derived) {
    report.mismatches.push_back({player_id, std::move(kind), std::move(id), held, derived});
  };
  auto add = [&](std::map<std::string, int64_t>& sums, const Amount& d, uint64_t sequence) {
    int64_t& sum = sums[d.id];
    if (__builtin_add_overflow(sum, d.count, &sum))
      note("overflow", d.id + "@" + std::to_string(sequence), d.count, 0);
  };
  // Entries written after the check began (live traffic) are left out: the document's sequence
  // then was `target`.
  while (progress.expected < progress.target) {
    if (budget == 0) return false;
    if (cancelled && cancelled()) {
      throw InventoryError(Kind::kAborted, "VerifyLedger was cancelled by its caller; nothing was changed");
    }
    Page<LedgerEntry> page = repository_.ledger(player_id, progress.ledger_cursor,
                                                static_cast<uint32_t>(std::min<uint64_t>(budget, 1000)));
    bool past_target = false;
    for (const LedgerEntry& e : page.items) {
      if (e.sequence > progress.target) {
        past_target = true;
        break;
      }
      --budget;
      ++report.entries_checked;
      if (e.sequence != progress.expected + 1) {
        note("sequence", std::to_string(progress.expected + 1), static_cast<int64_t>(e.sequence),
             static_cast<int64_t>(progress.expected + 1));
      }
      progress.expected = e.sequence;
      for (const Amount& d : e.item_deltas) add(progress.items, d, e.sequence);
      for (const Amount& d : e.currency_deltas) add(progress.currencies, d, e.sequence);
      for (const Amount& r : e.resulting_items) {
        if (progress.items[r.id] != r.count)
          note("resulting", r.id + "@" + std::to_string(e.sequence), r.count, progress.items[r.id]);
      }
      for (const Amount& r : e.resulting_currencies) {
        if (progress.currencies[r.id] != r.count)
          note("resulting", r.id + "@" + std::to_string(e.sequence), r.count, progress.currencies[r.id]);
      }
      if (!e.offer_id.empty()) {
        // Each side of an accepted offer moved exactly the offer's terms, so the two cancel out
        // (kept as long as the offer is).
        if (std::optional<StoredOffer> stored = repository_.offer(e.offer_id)) {
          const Offer& o = stored->offer;
          const bool sender = o.from_player_id == player_id;
          if ((!sender && o.to_player_id != player_id) ||
              deltas_of(e.item_deltas) != offer_deltas(o.give_items, o.want_items, sender) ||
              deltas_of(e.currency_deltas) != offer_deltas(o.give_currencies, o.want_currencies, sender)) {
            note("offer", e.offer_id + "@" + std::to_string(e.sequence), 0, 0);
          }
        }
      }
    }
    progress.ledger_cursor = page.next_cursor;
    if (past_target || page.next_cursor.empty()) break;
  }
  for (auto* sums : {&progress.items, &progress.currencies}) {
    std::erase_if(*sums, [](const auto& kv) { return kv.second == 0; });
  }
  if (progress.expected != progress.target) {
    note("sequence", "last", static_cast<int64_t>(progress.target), static_cast<int64_t>(progress.expected));
  }
  // The balances as of `target`: the document read when the check began, or, continued from an
  // earlier call, the document now if it has not moved on since (the entries' resulting
  // balances were checked either way).
  if (!snapshot) {
    PlayerState now = repository_.load(player_id);
    if (now.holdings.sequence == progress.target) snapshot = std::move(now);
  }
  if (snapshot) {
    auto compare = [&](const char* kind, const std::map<std::string, int64_t>& held,
                       const std::map<std::string, int64_t>& derived) {
      std::set<std::string> ids;
      for (const auto& [id, n] : held) ids.insert(id);
      for (const auto& [id, n] : derived) ids.insert(id);
      for (const std::string& id : ids) {
        const int64_t h = held.count(id) ? held.at(id) : 0;
        const int64_t d = derived.count(id) ? derived.at(id) : 0;
        if (h != d) note(kind, id, h, d);
      }
    };
    compare("item", snapshot->holdings.items, progress.items);
    compare("currency", snapshot->holdings.currencies, progress.currencies);
  }
  ++report.players_checked;
  return true;
}

VerifyReport InventoryService::verify(const Caller& caller, const std::string& player_id,
                                      const std::string& cursor, uint32_t page_size,
                                      const std::function<bool()>& cancelled) {
  if (!caller.is_admin())
    throw InventoryError(Kind::kPermissionDenied, "verifying the ledger needs the role admin");
  if (!player_id.empty()) check_id("player_id", player_id);
  auto encode = [](const VerifyProgress& p) {
    std::string pending;
    for (const std::string& id : p.pending) pending += hex(id) + ",";
    return std::string(kVerifyCursorPrefix) + hex(p.player_id) + ";" + std::to_string(p.target) + ";" +
           std::to_string(p.expected) + ";" + hex(p.ledger_cursor) + ";" + sums_text(p.items) + ";" +
           sums_text(p.currencies) + ";" + (p.all_players ? "1" : "0") + ";" + pending + ";" +
           hex(p.players_cursor);
  };
  VerifyReport report;
  uint64_t budget = kVerifyEntriesPerCall;
  std::optional<VerifyProgress> current;
  if (cursor.rfind(kVerifyCursorPrefix, 0) == 0) {
    const std::vector<std::string> f =
        split(std::string_view(cursor).substr(std::strlen(kVerifyCursorPrefix)), ';');
    if (f.size() != 9) bad_cursor();
    VerifyProgress p;
    p.player_id = unhex(f[0]);
    p.started = true;
    p.target = number(f[1]);
    p.expected = number(f[2]);
    p.ledger_cursor = unhex(f[3]);
    p.items = sums_of(f[4]);
    p.currencies = sums_of(f[5]);
    p.all_players = f[6] == "1";
    for (const std::string& id : split(f[7], ',')) {
      if (!id.empty()) p.pending.push_back(unhex(id));
    }
    p.players_cursor = unhex(f[8]);
    if (p.all_players != player_id.empty() || (!player_id.empty() && p.player_id != player_id)) bad_cursor();
    current = std::move(p);
  }
  if (!player_id.empty()) {
    if (!current) {
      current.emplace();
      current->player_id = player_id;
    }
    if (!verify_player(*current, report, budget, cancelled)) report.next_cursor = encode(*current);
    return report;
  }
  std::vector<std::string> pending;
  std::string players_cursor;
  if (current) {
    pending = current->pending;
    players_cursor = current->players_cursor;
  } else {
    Page<std::string> players = repository_.players(cursor, page_of(page_size, 50, 500));
    pending = std::move(players.items);
    players_cursor = players.next_cursor;
  }
  std::reverse(pending.begin(), pending.end());  // taken from the back
  while (current || !pending.empty()) {
    if (!current) {
      current.emplace();
      current->player_id = pending.back();
      pending.pop_back();
    }
    if (!verify_player(*current, report, budget, cancelled)) {
      current->all_players = true;
      current->pending.assign(pending.rbegin(), pending.rend());
      current->players_cursor = players_cursor;
      report.next_cursor = encode(*current);
      return report;
    }
    current.reset();
  }
  report.next_cursor = players_cursor;
  return report;
}

size_t InventoryService::sweep(SweepCursor& cursor, const Retention& retention) {
  const int64_t now = now_();
  std::vector<std::string> keys;
  Page<StoredKey> records = repository_.idempotency_keys(cursor.idempotency, retention.page_size);
  for (const StoredKey& k : records.items) {
    if (k.created_unix_ms < now - retention.replay_window_ms) keys.push_back(k.key);
  }
  std::vector<StoredOffer> offers;
  Page<StoredOffer> page = repository_.all_offers(cursor.offers, retention.page_size);
  for (const StoredOffer& o : page.items) {
    if (o.offer.state != OfferState::kOpen &&
        o.offer.closed_unix_ms < now - retention.closed_offer_retention_ms) {
      offers.push_back(o);
    }
  }
  if (!keys.empty() || !offers.empty()) repository_.erase(keys, offers);
  cursor.idempotency = records.next_cursor;
  cursor.offers = page.next_cursor;
  return keys.size() + offers.size();
}

std::vector<std::string> InventoryService::find_held(const Caller& caller,
                                                     const std::vector<std::string>& item_ids) {
  if (!caller.is_admin() && !(caller.player_id.empty() && caller.plugin == "resource-manager")) {
    throw InventoryError(
        Kind::kPermissionDenied,
        "FindHeldItems is for admins and the resource-manager plugin calling with its own trust");
  }
  if (item_ids.size() > 1000) {
    throw InventoryError(Kind::kInvalidArgument,
                         "item_ids has " + std::to_string(item_ids.size()) + " ids; the most is 1000");
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < item_ids.size(); ++i) {
    check_id("item_ids[" + std::to_string(i) + "]", item_ids[i]);
    if (seen.insert(item_ids[i]).second && repository_.anyone_holds(item_ids[i])) out.push_back(item_ids[i]);
  }
  return out;
}

}  // namespace gameverse::inventory
