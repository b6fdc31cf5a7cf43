#include "infrastructure/store_repository.hpp"

#include <cstdio>

#include "gameverse/inventory/records/v1/records.pb.h"

namespace gameverse::inventory {

namespace {

namespace rec = gameverse::inventory::records::v1;

constexpr const char* kPlayers = "players";
constexpr const char* kLedger = "ledger";
constexpr const char* kIdempotency = "idempotency";
constexpr const char* kOffers = "offers";
constexpr const char* kOfferIndex = "offer_index";
constexpr const char* kHolders = "holders";

template <class Field>
void put_amounts(Field* out, const Amounts& amounts) {
  for (const Amount& a : amounts) {
    rec::Balance* b = out->Add();
    b->set_id(a.id);
    b->set_count(a.count);
  }
}

template <class Field>
Amounts amounts_of(const Field& in) {
  Amounts out;
  out.reserve(static_cast<size_t>(in.size()));
  for (const rec::Balance& b : in) out.push_back({b.id(), b.count()});
  return out;
}

template <class Field>
void put_map(Field* out, const std::map<std::string, int64_t>& balances) {
  for (const auto& [id, count] : balances) {
    rec::Balance* b = out->Add();
    b->set_id(id);
    b->set_count(count);
  }
}

template <class Field>
std::map<std::string, int64_t> map_of(const Field& in) {
  std::map<std::string, int64_t> out;
  for (const rec::Balance& b : in) out[b.id()] = b.count();
  return out;
}

rec::LedgerRecord record_of(const LedgerEntry& e) {
  rec::LedgerRecord r;
  r.set_player_id(e.player_id);
  r.set_sequence(e.sequence);
  r.set_reason(e.reason);
  r.set_actor(e.actor);
  r.set_idempotency_key(e.idempotency_key);
  put_amounts(r.mutable_item_deltas(), e.item_deltas);
  put_amounts(r.mutable_currency_deltas(), e.currency_deltas);
  put_amounts(r.mutable_resulting_items(), e.resulting_items);
  put_amounts(r.mutable_resulting_currencies(), e.resulting_currencies);
  r.set_created_unix_ms(e.created_unix_ms);
  r.set_offer_id(e.offer_id);
  r.set_counterparty(e.counterparty);
  r.set_catalog_version(e.catalog_version);
  return r;
}

LedgerEntry entry_of(const rec::LedgerRecord& r) {
  LedgerEntry e;
  e.player_id = r.player_id();
  e.sequence = r.sequence();
  e.reason = r.reason();
  e.actor = r.actor();
  e.idempotency_key = r.idempotency_key();
  e.item_deltas = amounts_of(r.item_deltas());
  e.currency_deltas = amounts_of(r.currency_deltas());
  e.resulting_items = amounts_of(r.resulting_items());
  e.resulting_currencies = amounts_of(r.resulting_currencies());
  e.created_unix_ms = r.created_unix_ms();
  e.offer_id = r.offer_id();
  e.counterparty = r.counterparty();
  e.catalog_version = r.catalog_version();
  return e;
}

rec::OfferRecord record_of(const Offer& o) {
  rec::OfferRecord r;
  r.set_from_player_id(o.from_player_id);
  r.set_to_player_id(o.to_player_id);
  put_amounts(r.mutable_give_items(), o.give_items);
  put_amounts(r.mutable_give_currencies(), o.give_currencies);
  put_amounts(r.mutable_want_items(), o.want_items);
  put_amounts(r.mutable_want_currencies(), o.want_currencies);
  r.set_created_unix_ms(o.created_unix_ms);
  r.set_expires_unix_ms(o.expires_unix_ms);
  r.set_state(static_cast<int32_t>(o.state));
  r.set_closed_unix_ms(o.closed_unix_ms);
  return r;
}

// The store's cursors are bytes; the API's are text: hex.
std::string to_text(const std::string& cursor) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(cursor.size() * 2);
  for (unsigned char c : cursor) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string from_text(const std::string& cursor) {
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw InventoryError(InventoryError::Kind::kInvalidArgument,
                         "cursor is not one this service gave: pass next_cursor back as it came");
  };
  if (cursor.size() % 2 != 0 || cursor.size() > 4096) nibble('x');
  std::string out;
  for (size_t i = 0; i < cursor.size(); i += 2) {
    out += static_cast<char>(nibble(cursor[i]) << 4 | nibble(cursor[i + 1]));
  }
  return out;
}

std::string index_key(const OfferIndexEntry& e) {
  return e.player_id + (e.outgoing ? "/out/" : "/in/") + e.offer_id;
}

}  // namespace

std::string StoreRepository::ledger_key(const std::string& player_id, uint64_t sequence) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(sequence));
  return player_id + "/" + digits;
}

PlayerState StoreRepository::load(const std::string& player_id) {
  PlayerState out;
  if (auto r = store_.get<rec::PlayerRecord>(kPlayers, player_id)) {
    out.holdings.items = map_of(r->value.items());
    out.holdings.currencies = map_of(r->value.currencies());
    out.holdings.sequence = r->value.sequence();
    out.holdings.open_offers = r->value.open_offers();
    out.version = r->version;
  }
  return out;
}

std::optional<IdempotencyRecord> StoreRepository::idempotency(const std::string& scoped_key) {
  auto r = store_.get<rec::IdempotencyRecord>(kIdempotency, scoped_key);
  if (!r) return std::nullopt;
  return IdempotencyRecord{r->value.method(), r->value.request(), r->value.response()};
}

bool StoreRepository::commit(const ChangeSet& changes) {
  sdk::Store::Batch batch;
  for (const auto& p : changes.players) {
    rec::PlayerRecord r;
    put_map(r.mutable_items(), p.holdings.items);
    put_map(r.mutable_currencies(), p.holdings.currencies);
    r.set_sequence(p.holdings.sequence);
    r.set_open_offers(p.holdings.open_offers);
    batch.put(kPlayers, p.player_id, r, p.expected_version, p.player_id);
  }
  for (const LedgerEntry& e : changes.ledger) {
    batch.put(kLedger, ledger_key(e.player_id, e.sequence), record_of(e), sdk::Store::kCreateOnly,
              e.player_id);
  }
  if (!changes.idempotency_key.empty()) {
    rec::IdempotencyRecord r;
    r.set_method(changes.idempotency.method);
    r.set_request(changes.idempotency.request);
    r.set_response(changes.idempotency.response);
    batch.put(kIdempotency, changes.idempotency_key, r, sdk::Store::kCreateOnly);
  }
  for (const auto& [item, player] : changes.holders_added)
    batch.put(kHolders, item + "/" + player, std::string());
  for (const auto& [item, player] : changes.holders_removed) batch.erase(kHolders, item + "/" + player);
  for (const StoredOffer& o : changes.offers) batch.put(kOffers, o.offer.id, record_of(o.offer), o.version);
  for (const OfferIndexEntry& e : changes.offer_index_added) {
    batch.put(kOfferIndex, index_key(e), std::string(), sdk::Store::kCreateOnly, e.player_id);
  }
  for (const OfferIndexEntry& e : changes.offer_index_removed) batch.erase(kOfferIndex, index_key(e));
  try {
    store_.commit(batch);
    return true;
  } catch (const sdk::Error& e) {
    // A version that moved on (ABORTED) or a create-only key that exists (ALREADY_EXISTS): another
    // change won; nothing of this batch was written.
    if (e.code() == sdk::StatusCode::kAborted || e.code() == sdk::StatusCode::kAlreadyExists) return false;
    throw;
  }
}

namespace {

StoredOffer offer_of(const std::string& offer_id, const rec::OfferRecord& r, int64_t version) {
  StoredOffer out;
  out.version = version;
  Offer& o = out.offer;
  o.id = offer_id;
  o.from_player_id = r.from_player_id();
  o.to_player_id = r.to_player_id();
  o.give_items = amounts_of(r.give_items());
  o.give_currencies = amounts_of(r.give_currencies());
  o.want_items = amounts_of(r.want_items());
  o.want_currencies = amounts_of(r.want_currencies());
  o.created_unix_ms = r.created_unix_ms();
  o.expires_unix_ms = r.expires_unix_ms();
  o.state = static_cast<OfferState>(r.state());
  o.closed_unix_ms = r.closed_unix_ms();
  return out;
}

}  // namespace

std::optional<StoredOffer> StoreRepository::offer(const std::string& offer_id) {
  auto r = store_.get<rec::OfferRecord>(kOffers, offer_id);
  if (!r) return std::nullopt;
  return offer_of(offer_id, r->value, r->version);
}

Page<StoredKey> StoreRepository::idempotency_keys(const std::string& cursor, uint32_t limit) {
  sdk::Store::Page page = store_.list({kIdempotency, {}, {}, from_text(cursor), limit});
  Page<StoredKey> out;
  for (const auto& o : page.objects) out.items.push_back({o.key, o.created_unix_ms});
  out.next_cursor = to_text(page.next_cursor);
  return out;
}

Page<StoredOffer> StoreRepository::all_offers(const std::string& cursor, uint32_t limit) {
  sdk::Store::Page page = store_.list({kOffers, {}, {}, from_text(cursor), limit});
  Page<StoredOffer> out;
  for (const auto& o : page.objects) {
    rec::OfferRecord r;
    if (!r.ParseFromString(o.value)) continue;  // not ours to judge here; left as it is
    out.items.push_back(offer_of(o.key, r, o.version));
  }
  out.next_cursor = to_text(page.next_cursor);
  return out;
}

void StoreRepository::erase(const std::vector<std::string>& idempotency_keys,
                            const std::vector<StoredOffer>& offers) {
  // One batch per record: a record that changed meanwhile (an offer at another version) is left
  // for the next sweep without holding the others back.
  for (const std::string& key : idempotency_keys) {
    try {
      store_.erase(kIdempotency, key);
    } catch (const sdk::Error&) {
    }
  }
  for (const StoredOffer& o : offers) {
    try {
      store_.erase(kOffers, o.offer.id, o.version);
    } catch (const sdk::Error&) {
    }
  }
}

Page<std::string> StoreRepository::offer_ids(const std::string& player_id, std::optional<bool> outgoing,
                                             const std::string& cursor, uint32_t limit) {
  const std::string prefix = player_id + (!outgoing ? "/" : *outgoing ? "/out/" : "/in/");
  sdk::Store::Page page = store_.list({kOfferIndex, prefix, {}, from_text(cursor), limit});
  Page<std::string> out;
  for (const auto& o : page.objects) out.items.push_back(o.key.substr(o.key.rfind('/') + 1));
  out.next_cursor = to_text(page.next_cursor);
  return out;
}

Page<LedgerEntry> StoreRepository::ledger(const std::string& player_id, const std::string& cursor,
                                          uint32_t limit) {
  auto page = store_.list<rec::LedgerRecord>({kLedger, player_id + "/", {}, from_text(cursor), limit});
  Page<LedgerEntry> out;
  for (const auto& r : page.records) out.items.push_back(entry_of(r.value));
  out.next_cursor = to_text(page.next_cursor);
  return out;
}

Page<std::string> StoreRepository::players(const std::string& cursor, uint32_t limit) {
  sdk::Store::Page page = store_.list({kPlayers, {}, {}, from_text(cursor), limit});
  Page<std::string> out;
  for (const auto& o : page.objects) out.items.push_back(o.key);
  out.next_cursor = to_text(page.next_cursor);
  return out;
}

bool StoreRepository::anyone_holds(const std::string& item_id) {
  return !store_.list({kHolders, item_id + "/", {}, {}, 1}).objects.empty();
}

}  // namespace gameverse::inventory
