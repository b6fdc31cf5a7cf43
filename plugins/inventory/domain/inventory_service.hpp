// The inventory's use cases: grants, revokes, consumption, offers (transfers and trades) and
// their acceptance, the ledger and its verification. Every change is one atomic ChangeSet with a
// ledger entry per player touched and the idempotency record of the call; a conflict with a
// concurrent change is retried a bounded number of times, then ABORTED.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "domain/model.hpp"
#include "domain/repositories.hpp"
#include "domain/rules.hpp"

namespace gameverse::inventory {

// A mutating call as the API hands it over: its method, key and serialized request (a replay
// must match it byte for byte).
struct ChangeRequest {
  std::string method;
  std::string idempotency_key;
  std::string bytes;
  // Run once when the key has no first answer yet, before any rule: limits on how often a caller
  // may change things (a replay is never counted, so it always gets the first answer).
  std::function<void()> admit;
};

// What a change or a read produced, for the API to turn into its response.
struct Outcome {
  std::string player_id;
  Holdings holdings;
  std::optional<LedgerEntry> entry;
  std::optional<Offer> offer;
  uint64_t catalog_version = 0;
  std::map<std::string, std::string> frozen;  // held but not defined: item id -> why
};
// Turns an outcome into the response bytes stored with the idempotency record.
using Render = std::function<std::string(const Outcome&)>;

struct Mismatch {
  std::string player_id;
  // "item", "currency", "sequence", "resulting", "overflow", or "offer" (a trade's deltas that are
  // not exactly the offer's terms: the two sides would not cancel out)
  std::string kind;
  std::string id;
  int64_t held = 0;
  int64_t derived = 0;
};

struct VerifyReport {
  uint32_t players_checked = 0;
  uint64_t entries_checked = 0;
  std::vector<Mismatch> mismatches;
  std::string next_cursor;
};

// How long what the inventory stores for its own bookkeeping is kept, and how much one sweep reads.
struct Retention {
  int64_t replay_window_ms = 7LL * 24 * 3600 * 1000;            // idempotency records
  int64_t closed_offer_retention_ms = 30LL * 24 * 3600 * 1000;  // accepted, declined, cancelled, expired
  uint32_t page_size = 500;                                     // records read per collection per sweep
};

// Where the sweep goes on from (empty: from the start).
struct SweepCursor {
  std::string idempotency;
  std::string offers;
};

class InventoryService {
 public:
  // Throws InventoryError(kInvalidArgument) naming the config key when `limits` do not fit together.
  InventoryService(InventoryRepository& repository, Catalog& catalog, Limits limits,
                   std::function<int64_t()> now_unix_ms, std::function<std::string()> new_offer_id);

  // Each mutating call returns the response bytes: the first answer when the key was used before
  // with the same request; ALREADY_EXISTS when it was used with a different one.
  std::string grant(const Caller& caller, const ChangeRequest& request, const Render& render,
                    const std::string& player_id, const Amounts& items, const Amounts& currencies,
                    const std::vector<std::string>& bundle_ids, const std::string& reason);
  std::string revoke(const Caller& caller, const ChangeRequest& request, const Render& render,
                     const std::string& player_id, const Amounts& items, const Amounts& currencies,
                     const std::string& reason);
  std::string consume(const Caller& caller, const ChangeRequest& request, const Render& render,
                      const Amounts& items, const std::string& reason);
  // A transfer is an offer that wants nothing back.
  std::string offer(const Caller& caller, const ChangeRequest& request, const Render& render,
                    const std::string& to_player_id, const Amounts& give_items,
                    const Amounts& give_currencies, const Amounts& want_items, const Amounts& want_currencies,
                    int64_t expires_in_s, bool transfer);
  std::string accept(const Caller& caller, const ChangeRequest& request, const Render& render,
                     const std::string& offer_id);
  // kDeclined by the recipient, kCancelled by the sender.
  std::string close(const Caller& caller, const ChangeRequest& request, const Render& render,
                    const std::string& offer_id, OfferState how);

  // A player's inventory, with removed items converted by their migration on the way.
  Outcome get(const Caller& caller, const std::string& player_id);
  Page<LedgerEntry> ledger(const Caller& caller, const std::string& player_id, const std::string& cursor,
                           uint32_t page_size);
  Page<Offer> offers(const Caller& caller, std::optional<bool> outgoing, const std::string& cursor,
                     uint32_t page_size);
  // At most kVerifyEntriesPerCall ledger entries a call: a long ledger is continued with
  // next_cursor, within a player too. `cancelled` is asked between pages (the caller gave up).
  static constexpr uint64_t kVerifyEntriesPerCall = 20000;
  VerifyReport verify(const Caller& caller, const std::string& player_id, const std::string& cursor,
                      uint32_t page_size, const std::function<bool()>& cancelled = nullptr);
  std::vector<std::string> find_held(const Caller& caller, const std::vector<std::string>& item_ids);

  // One page of idempotency records and one of offers: deletes the records older than the replay
  // window (a replay after that is a new change) and offers closed longer than their retention
  // (their index entries went when they closed). Returns how many were deleted; `cursor` moves on
  // and starts over after the last page.
  size_t sweep(SweepCursor& cursor, const Retention& retention);

  // Told of every conflict with a concurrent change: retried, or (gave_up) answered ABORTED.
  void on_conflict(std::function<void(bool gave_up)> listener) { on_conflict_ = std::move(listener); }
  // Offers may go only to ids `valid` accepts (the sign-in service's id format); `rule` says which.
  void recipients_must(std::function<bool(const std::string&)> valid, std::string rule) {
    recipient_check_ = std::move(valid);
    recipient_rule_ = std::move(rule);
  }
  // Told of every removed item whose migration could not be applied (it would pass a limit or
  // names a target that is not defined) each time one is tried: the holding stays, frozen.
  void on_migration_held_back(std::function<void(size_t items)> listener) {
    on_migration_held_back_ = std::move(listener);
  }

 private:
  struct Plan {
    ChangeSet changes;
    Outcome outcome;
  };
  struct PlayerChange;
  struct VerifyProgress;
  // Re-derives one player's balances from the ledger up to the sequence of the player's document
  // when the check began; false when the entry budget ran out first (progress says where).
  bool verify_player(VerifyProgress& progress, VerifyReport& report, uint64_t& budget,
                     const std::function<bool()>& cancelled);

  // The key as stored: the caller's actor, for grants and revokes also the player they change
  // (a trusted plugin granting for many players), then the caller's key.
  static std::string scoped_key(const Caller& caller, const ChangeRequest& request,
                                const std::string& player_id = "");
  // The first answer to the request's key, if it has one (ALREADY_EXISTS for a different request
  // under it); otherwise runs request.admit and returns nullopt. Called before any limit or rule
  // that may have changed since the first call.
  std::optional<std::string> replay_or_admit(const std::string& scoped_key, const ChangeRequest& request,
                                             const std::string& legacy_scoped_key = "");
  std::string mutate(const std::string& scoped_key, const ChangeRequest& request, const Render& render,
                     const std::function<Plan()>& plan);
  // `state` is the player's document as just loaded: the change is made against its version.
  PlayerChange begin(const std::string& player_id, PlayerState state, const Definitions& defs,
                     const Caller& caller, const ChangeRequest& request);
  void finish(PlayerChange& change, ChangeSet& changes);
  Definitions definitions(const std::set<std::string>& items, const std::set<std::string>& currencies,
                          const std::set<std::string>& bundles = {});
  void backoff(int attempt);

  InventoryRepository& repository_;
  Catalog& catalog_;
  Limits limits_;
  std::function<int64_t()> now_;
  std::function<std::string()> new_offer_id_;
  std::function<void(bool)> on_conflict_;
  std::function<void(size_t)> on_migration_held_back_;
  std::function<bool(const std::string&)> recipient_check_;
  std::string recipient_rule_;
};

}  // namespace gameverse::inventory
