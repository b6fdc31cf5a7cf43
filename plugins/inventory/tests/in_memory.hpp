// The inventory's repository and catalog in memory, for the domain tests: the same conflict
// rules as the store (versions, create-only keys), no host.
#pragma once

#include <functional>
#include <map>
#include <mutex>

#include "domain/repositories.hpp"

namespace gameverse::inventory::testing {

class InMemoryRepository final : public InventoryRepository {
 public:
  PlayerState load(const std::string& player_id) override {
    std::lock_guard lock(mu_);
    auto it = players_.find(player_id);
    return it == players_.end() ? PlayerState{} : it->second;
  }
  std::optional<IdempotencyRecord> idempotency(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = idempotency_.find(key);
    if (it == idempotency_.end()) return std::nullopt;
    return it->second;
  }
  bool commit(const ChangeSet& c) override {
    std::lock_guard lock(mu_);
    ++commits;
    if (fail_next_commits > 0) {
      --fail_next_commits;
      return false;
    }
    for (const auto& p : c.players) {
      auto it = players_.find(p.player_id);
      const int64_t now = it == players_.end() ? 0 : it->second.version;
      if (now != p.expected_version) return false;
    }
    for (const auto& e : c.ledger) {
      if (ledger_.count({e.player_id, e.sequence})) return false;
    }
    if (!c.idempotency_key.empty() && idempotency_.count(c.idempotency_key)) return false;
    for (const auto& o : c.offers) {
      auto it = offers_.find(o.offer.id);
      const int64_t now = it == offers_.end() ? 0 : it->second.version;
      if (now != o.version) return false;
    }
    for (const auto& p : c.players) {
      PlayerState& s = players_[p.player_id];
      s.holdings = p.holdings;
      ++s.version;
    }
    for (const auto& e : c.ledger) ledger_[{e.player_id, e.sequence}] = e;
    if (!c.idempotency_key.empty()) {
      idempotency_[c.idempotency_key] = c.idempotency;
      idempotency_created_[c.idempotency_key] = clock_ms;
    }
    for (const auto& h : c.holders_added) holders_.insert(h);
    for (const auto& h : c.holders_removed) holders_.erase(h);
    for (const auto& o : c.offers) {
      StoredOffer& s = offers_[o.offer.id];
      s.offer = o.offer;
      ++s.version;
    }
    for (const auto& e : c.offer_index_added) index_.insert({e.player_id, e.outgoing ? 1 : 0, e.offer_id});
    for (const auto& e : c.offer_index_removed) index_.erase({e.player_id, e.outgoing ? 1 : 0, e.offer_id});
    return true;
  }
  std::optional<StoredOffer> offer(const std::string& id) override {
    std::lock_guard lock(mu_);
    auto it = offers_.find(id);
    if (it == offers_.end()) return std::nullopt;
    return it->second;
  }
  Page<std::string> offer_ids(const std::string& player, std::optional<bool> outgoing, const std::string&,
                              uint32_t limit) override {
    std::lock_guard lock(mu_);
    Page<std::string> out;
    for (const auto& [p, out_flag, id] : index_) {
      if (p == player && (!outgoing || *outgoing == (out_flag == 1)) && out.items.size() < limit) {
        out.items.push_back(id);
      }
    }
    return out;
  }
  // Pages as the store does: the cursor is the sequence to start after.
  Page<LedgerEntry> ledger(const std::string& player, const std::string& cursor, uint32_t limit) override {
    std::lock_guard lock(mu_);
    ++ledger_pages;
    Page<LedgerEntry> out;
    const uint64_t after = cursor.empty() ? 0 : std::stoull(cursor);
    for (auto it = ledger_.upper_bound({player, after}); it != ledger_.end() && it->first.first == player;
         ++it) {
      if (out.items.size() == limit) {
        out.next_cursor = std::to_string(out.items.back().sequence);
        break;
      }
      out.items.push_back(it->second);
    }
    return out;
  }
  Page<std::string> players(const std::string&, uint32_t) override {
    std::lock_guard lock(mu_);
    Page<std::string> out;
    for (const auto& [id, s] : players_) out.items.push_back(id);
    return out;
  }
  bool anyone_holds(const std::string& item) override {
    std::lock_guard lock(mu_);
    for (const auto& [i, p] : holders_) {
      if (i == item) return true;
    }
    return false;
  }

  size_t ledger_size() {
    std::lock_guard lock(mu_);
    return ledger_.size();
  }
  // Tampering, for VerifyLedger.
  void set_balance(const std::string& player, const std::string& currency, int64_t amount) {
    std::lock_guard lock(mu_);
    players_[player].holdings.currencies[currency] = amount;
  }

  // Tampers with a player's newest ledger entry (what VerifyLedger must find).
  void rewrite_last_entry(const std::string& player, const std::function<void(LedgerEntry&)>& change) {
    std::lock_guard lock(mu_);
    change(ledger_.at({player, players_.at(player).holdings.sequence}));
  }

  Page<StoredKey> idempotency_keys(const std::string& cursor, uint32_t limit) override {
    std::lock_guard lock(mu_);
    Page<StoredKey> out;
    for (auto it = idempotency_created_.upper_bound(cursor); it != idempotency_created_.end(); ++it) {
      if (out.items.size() == limit) {
        out.next_cursor = out.items.back().key;
        break;
      }
      out.items.push_back({it->first, it->second});
    }
    return out;
  }
  Page<StoredOffer> all_offers(const std::string& cursor, uint32_t limit) override {
    std::lock_guard lock(mu_);
    Page<StoredOffer> out;
    for (auto it = offers_.upper_bound(cursor); it != offers_.end(); ++it) {
      if (out.items.size() == limit) {
        out.next_cursor = out.items.back().offer.id;
        break;
      }
      out.items.push_back(it->second);
    }
    return out;
  }
  void erase(const std::vector<std::string>& keys, const std::vector<StoredOffer>& offers) override {
    std::lock_guard lock(mu_);
    for (const std::string& k : keys) {
      idempotency_.erase(k);
      idempotency_created_.erase(k);
    }
    for (const StoredOffer& o : offers) {
      auto it = offers_.find(o.offer.id);
      if (it != offers_.end() && it->second.version == o.version) offers_.erase(it);
    }
  }
  size_t idempotency_count() {
    std::lock_guard lock(mu_);
    return idempotency_.size();
  }
  size_t offer_count() {
    std::lock_guard lock(mu_);
    return offers_.size();
  }

  int64_t clock_ms = 0;  // when records are stored
  int fail_next_commits = 0;
  int commits = 0;
  int ledger_pages = 0;

 private:
  std::mutex mu_;
  std::map<std::string, PlayerState> players_;
  std::map<std::pair<std::string, uint64_t>, LedgerEntry> ledger_;
  std::map<std::string, IdempotencyRecord> idempotency_;
  std::map<std::string, int64_t> idempotency_created_;
  std::set<std::pair<std::string, std::string>> holders_;
  std::map<std::string, StoredOffer> offers_;
  std::set<std::tuple<std::string, int, std::string>> index_;
};

class FixedCatalog final : public Catalog {
 public:
  Definitions lookup(const std::set<std::string>& items, const std::set<std::string>& currencies,
                     const std::set<std::string>& bundles) override {
    std::lock_guard lock(mu);
    ++lookups;
    if (unavailable)
      throw InventoryError(InventoryError::Kind::kUnavailable, "the catalog cannot be reached");
    Definitions out;
    out.version = all.version;
    for (const auto& id : items) {
      if (all.items.count(id)) out.items[id] = all.items.at(id);
      if (all.migrations.count(id)) out.migrations[id] = all.migrations.at(id);
    }
    for (const auto& id : currencies) {
      if (all.currencies.count(id)) out.currencies[id] = all.currencies.at(id);
    }
    for (const auto& id : bundles) {
      if (all.bundles.count(id)) out.bundles[id] = all.bundles.at(id);
    }
    return out;
  }
  std::mutex mu;
  Definitions all;
  bool unavailable = false;
  int lookups = 0;
};

}  // namespace gameverse::inventory::testing
