// What the inventory needs from storage and from the catalog; the infrastructure implements it
// over the host's store and the resource-manager, the tests in memory.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "domain/model.hpp"

namespace gameverse::inventory {

// A player's document as stored, with the store's version (0: no document yet).
struct PlayerState {
  Holdings holdings;
  int64_t version = 0;
};

// The first answer to an idempotency key, and the request it answered.
struct IdempotencyRecord {
  std::string method;
  std::string request;
  std::string response;
};

struct StoredOffer {
  Offer offer;
  int64_t version = 0;  // in a ChangeSet: the version it must have (0: create only)
};

// An offer listed under a player: outgoing (sent) or incoming (received).
struct OfferIndexEntry {
  std::string player_id;
  bool outgoing = false;
  std::string offer_id;
};

// Everything one change writes, applied all together or not at all.
struct ChangeSet {
  struct PlayerWrite {
    std::string player_id;
    Holdings holdings;
    int64_t expected_version = 0;  // 0: create only
  };
  std::vector<PlayerWrite> players;
  std::vector<LedgerEntry> ledger;  // each created only: a second writer of a sequence loses
  std::string idempotency_key;      // scoped by caller; empty: no record (a lazy migration on read)
  IdempotencyRecord idempotency;    // created only, in the same batch
  std::vector<std::pair<std::string, std::string>> holders_added;    // (item id, player id)
  std::vector<std::pair<std::string, std::string>> holders_removed;  // (item id, player id)
  std::vector<StoredOffer> offers;
  std::vector<OfferIndexEntry> offer_index_added;
  std::vector<OfferIndexEntry> offer_index_removed;
};

template <class T>
struct Page {
  std::vector<T> items;
  std::string next_cursor;  // empty on the last page
};

// A stored record's key and when it was stored.
struct StoredKey {
  std::string key;
  int64_t created_unix_ms = 0;
};

class InventoryRepository {
 public:
  virtual ~InventoryRepository() = default;
  virtual PlayerState load(const std::string& player_id) = 0;
  virtual std::optional<IdempotencyRecord> idempotency(const std::string& scoped_key) = 0;
  // false on a conflict (a version moved on, a create-only key exists): nothing was written.
  virtual bool commit(const ChangeSet& changes) = 0;
  virtual std::optional<StoredOffer> offer(const std::string& offer_id) = 0;
  // Offer ids listed under a player, newest first; `outgoing` nullopt: incoming, then outgoing.
  virtual Page<std::string> offer_ids(const std::string& player_id, std::optional<bool> outgoing,
                                      const std::string& cursor, uint32_t limit) = 0;
  // A player's ledger, oldest first.
  virtual Page<LedgerEntry> ledger(const std::string& player_id, const std::string& cursor,
                                   uint32_t limit) = 0;
  // Every player with a document, by id.
  virtual Page<std::string> players(const std::string& cursor, uint32_t limit) = 0;
  virtual bool anyone_holds(const std::string& item_id) = 0;
  // Every idempotency record and every offer, by key, a page at a time (for the sweep).
  virtual Page<StoredKey> idempotency_keys(const std::string& cursor, uint32_t limit) = 0;
  virtual Page<StoredOffer> all_offers(const std::string& cursor, uint32_t limit) = 0;
  // Deletes idempotency records and closed offers (each offer only at the version given).
  virtual void erase(const std::vector<std::string>& idempotency_keys,
                     const std::vector<StoredOffer>& offers) = 0;
};

// The game's catalog as the inventory sees it.
class Catalog {
 public:
  virtual ~Catalog() = default;
  // The definitions of the given ids at the current catalog version; ids not found are absent.
  // Throws InventoryError(kUnavailable) when the catalog cannot be reached.
  virtual Definitions lookup(const std::set<std::string>& item_ids, const std::set<std::string>& currency_ids,
                             const std::set<std::string>& bundle_ids) = 0;
};

}  // namespace gameverse::inventory
