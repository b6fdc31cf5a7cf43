// The inventory's repository over the host's document store: one document per player (holdings
// and wallet) written with its version, the ledger and idempotency records created only, the
// holders and offer indexes — every change one atomic batch.
#pragma once

#include <gameverse/sdk/store.hpp>

#include "domain/repositories.hpp"

namespace gameverse::inventory {

class StoreRepository final : public InventoryRepository {
 public:
  explicit StoreRepository(sdk::Store store) : store_(store) {}

  PlayerState load(const std::string& player_id) override;
  std::optional<IdempotencyRecord> idempotency(const std::string& scoped_key) override;
  bool commit(const ChangeSet& changes) override;
  std::optional<StoredOffer> offer(const std::string& offer_id) override;
  Page<std::string> offer_ids(const std::string& player_id, std::optional<bool> outgoing,
                              const std::string& cursor, uint32_t limit) override;
  Page<LedgerEntry> ledger(const std::string& player_id, const std::string& cursor, uint32_t limit) override;
  Page<std::string> players(const std::string& cursor, uint32_t limit) override;
  bool anyone_holds(const std::string& item_id) override;
  Page<StoredKey> idempotency_keys(const std::string& cursor, uint32_t limit) override;
  Page<StoredOffer> all_offers(const std::string& cursor, uint32_t limit) override;
  void erase(const std::vector<std::string>& idempotency_keys,
             const std::vector<StoredOffer>& offers) override;

  // The ledger key of a player's entry: ordered by sequence within the player.
  static std::string ledger_key(const std::string& player_id, uint64_t sequence);

 private:
  sdk::Store store_;
};

}  // namespace gameverse::inventory
