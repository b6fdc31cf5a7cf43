// The player-data repositories over the host's document store. Values are the records of
// proto/gameverse/playerdata/records/v1/records.proto (beside this file):
//   profiles/<player id>          ProfileRecord   owner: the player
//   names/<name key>              NameRecord      created only: a name is held once
//   name_index/<search key>       NameRecord      what ListPlayers pages through by prefix
//   save_slots/<player id>/<slot> SlotRecord      the slot's version and bytes   owner: the player
//   usage/<player id>             UsageRecord     in the batch of every slot write and delete; its
//                                                 slot counter gives every slot write its version
//   stats/<player id>             StatsRecord     owner: the player
// Write counts live in the host's cache: writes/<player id>, one window a key.
// The store's ABORTED and ALREADY_EXISTS on a write become WriteConflict: the service reads again.
#pragma once

#include <gameverse/sdk/plugin.hpp>

#include "domain/repositories.hpp"

namespace gameverse::playerdata {

class StoreProfiles final : public Profiles {
 public:
  explicit StoreProfiles(sdk::Store store) : store_(store) {}
  std::optional<Profile> profile(const std::string& player_id) override;
  std::optional<NameEntry> name(const std::string& name_key) override;
  void save(const Profile& before, const Profile& after, const NameWrite& names = {}) override;
  NamePage names(const std::string& key_prefix, const std::string& cursor, int64_t limit) override;

 private:
  // The version of the NameRecord at collection/key when `player_id` holds it; kCreateOnly when
  // there is none; nullopt when another player holds it.
  std::optional<int64_t> own_version(const char* collection, const std::string& key,
                                     const std::string& player_id);
  // Adds the erase of collection/key at the version read, when `player_id` holds it.
  void erase_own(sdk::Store::Batch& batch, const char* collection, const std::string& key,
                 const std::string& player_id);
  // The version to write the player's own search key over: kCreateOnly when there is none;
  // WriteConflict when another player holds it.
  int64_t index_version(const std::string& search_key, const std::string& player_id);
  sdk::Store store_;
};

class StoreSlots final : public Slots {
 public:
  explicit StoreSlots(sdk::Store store) : store_(store) {}
  std::optional<Slot> slot(const std::string& player_id, const std::string& name) override;
  SlotPage list(const std::string& player_id, const std::string& cursor, int64_t limit) override;
  Usage usage(const std::string& player_id) override;
  void write(const Slot& slot, int64_t expected_record_version, const Usage& before,
             const Usage& after) override;
  void erase(const std::string& player_id, const std::string& name, int64_t version, const Usage& before,
             const Usage& after) override;

 private:
  sdk::Store store_;
};

class StoreStats final : public Stats {
 public:
  explicit StoreStats(sdk::Store store) : store_(store) {}
  StatSheet sheet(const std::string& player_id) override;
  int64_t save(const std::string& player_id, const StatSheet& before, const StatSheet& after) override;

 private:
  sdk::Store store_;
};

class CacheWriteCounter final : public WriteCounter {
 public:
  explicit CacheWriteCounter(sdk::Cache cache) : cache_(cache) {}
  int64_t add(const std::string& player_id, int64_t window_ms) override {
    return cache_.increment("writes/" + player_id, 1, std::chrono::milliseconds(window_ms));
  }

 private:
  sdk::Cache cache_;
};

}  // namespace gameverse::playerdata
