// The player-data rules: who may read and change what, the bounds, and optimistic writes that
// read, decide and write conditioned on what they read, retrying when another write came between.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "domain/model.hpp"
#include "domain/repositories.hpp"

namespace gameverse::playerdata {

struct ProfileChange {
  std::optional<Avatar> avatar;  // kNone clears it
  std::vector<std::pair<std::string, MetadataValue>> set_metadata;
  std::vector<std::string> remove_metadata;
};

struct SlotWrite {
  std::string name;
  std::string data;
  std::optional<int64_t> expected_version;
};

class PlayerDataService {
 public:
  using Clock = std::function<int64_t()>;
  // Told of every write that met a concurrent one: `record` is "profile", "slot" or "stats";
  // `aborted` when the call gave up after max_write_attempts, else it tries again.
  using ConflictObserver = std::function<void(const char* record, bool aborted)>;
  // `writes` null: no per-player write limit.
  PlayerDataService(Limits limits, Profiles& profiles, Slots& slots, Stats& stats, Clock now_unix_ms,
                    ConflictObserver on_conflict = {}, WriteCounter* writes = nullptr);

  // `player_id` empty: the caller's own. Another player's profile has only its public fields,
  // unless the caller is staff. A player without a stored profile reads as an empty one.
  Profile profile(const Caller& caller, const std::string& player_id);
  Profile set_display_name(const Caller& caller, const std::string& display_name);
  Profile update_profile(const Caller& caller, const ProfileChange& change);
  // Staff only. The name is withheld from everyone (the player too) for `withhold_ms` (0: for good)
  // and the player's name-change cooldown starts again. `released`: the name it took away (empty
  // when there was none).
  Profile reset_display_name(const Caller& caller, const std::string& player_id,
                             const std::string& reason = {}, int64_t withhold_ms = 0,
                             std::string* released = nullptr);
  // Staff only: removes a player's avatar and/or metadata fields (absent keys are ignored).
  Profile clear_profile_fields(const Caller& caller, const std::string& player_id, bool clear_avatar,
                               const std::vector<std::string>& remove_metadata);
  NamePage list_players(const Caller& caller, const std::string& prefix, int64_t page_size,
                        const std::string& cursor);

  Slot slot(const Caller& caller, const std::string& player_id, const std::string& name);
  SlotPage slots(const Caller& caller, const std::string& player_id, int64_t page_size,
                 const std::string& cursor, Usage* usage);
  Slot write_slot(const Caller& caller, const SlotWrite& write);
  void delete_slot(const Caller& caller, const std::string& name, std::optional<int64_t> expected_version);

  // Admins and trusted plugins write any stat of anyone; a player writes only their own stats that
  // player_writable_stats lists.
  // `request_id` set: the update is applied once. A replay with the same id and changes (a retry
  // after an ambiguous failure) changes nothing and answers as the first did: the updated stats
  // only, as they were after it. The same id with other changes is INVALID_ARGUMENT.
  StatSheet update_stats(const Caller& caller, const std::string& player_id,
                         const std::vector<StatChange>& changes, const std::string& request_id = {});
  StatSheet stats(const Caller& caller, const std::string& player_id, const std::vector<std::string>& names);

  const Limits& limits() const { return limits_; }

 private:
  // The player a request names: the caller's own when empty; another needs `others_may`. A trusted
  // plugin names the player, and reaches only calls with `plugin_may`.
  std::string subject(const Caller& caller, const std::string& player_id, bool others_may, const char* what,
                      bool plugin_may = false);
  // Charges one write to a signed-in caller; RESOURCE_EXHAUSTED past max_writes_per_player_per_minute.
  void charge_write(const Caller& caller);
  // `field`: named in the ABORTED message; `record`: told to the ConflictObserver.
  template <class Attempt>
  auto with_retries(const char* field, const char* record, Attempt&& attempt);
  int64_t page_size(int64_t requested, const char* field) const;

  Limits limits_;
  std::set<std::string> reserved_keys_;  // of limits_.reserved_names
  Profiles& profiles_;
  Slots& slots_;
  Stats& stats_;
  Clock now_;
  ConflictObserver on_conflict_;
  WriteCounter* writes_;
};

// The public view of a profile: what another player may see.
Profile public_view(const Profile& profile);

}  // namespace gameverse::playerdata
