// The player-data domain: profiles with a unique display name, save slots with versions and
// quotas, and int64 stats. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gameverse/domain_error.hpp>

namespace gameverse::playerdata {

// A refusal with the status it maps to; the message names the field and the limit.
using PlayerDataError = gameverse::DomainError;

// Thrown by a repository when a write met another one: a version that moved on, or a key that a
// create-only write found. The service reads again and retries, or tells the caller.
class WriteConflict : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Limits {
  int64_t min_display_name_chars = 3;
  int64_t max_display_name_chars = 24;
  int64_t name_change_cooldown_ms = 24LL * 3600 * 1000;
  std::vector<std::string> reserved_names;  // compared by name key
  // Stats players may write themselves: names, or prefixes ending in '*'. Others are written by
  // admins and trusted plugins only.
  std::vector<std::string> player_writable_stats;
  int64_t max_writes_per_player_per_minute = 600;  // 0: no limit
  int64_t max_avatar_bytes = 256;
  // Hosts avatar URLs may name (lowercase, exact; no port). Empty: avatar URLs are refused and
  // avatars are asset ids only, so that no player's client fetches from a host another player chose.
  std::vector<std::string> allowed_avatar_hosts;
  int64_t max_metadata_fields = 32;
  int64_t max_metadata_key_bytes = 64;
  int64_t max_metadata_value_bytes = 1024;
  int64_t max_metadata_bytes = 8192;  // keys and values together
  int64_t max_slots_per_player = 10;
  int64_t max_slot_bytes = 256 * 1024;
  int64_t max_slot_bytes_per_player = 1024 * 1024;
  // Stats a player has that admins and trusted plugins write (those player_writable_stats does not
  // list), and, bounded apart so that a player filling theirs blocks no other writer, the stats
  // player_writable_stats lists.
  int64_t max_stats_per_player = 256;
  int64_t max_player_writable_stats = 64;
  int64_t max_stats_per_request = 64;
  int64_t max_page_size = 100;
  int64_t max_write_attempts = 64;  // optimistic tries before ABORTED
};

enum class Visibility { kPrivate = 1, kPublic = 2 };

struct MetadataValue {
  std::string value;
  Visibility visibility = Visibility::kPrivate;
  bool operator==(const MetadataValue&) const = default;
};

enum class AvatarKind { kNone = 0, kUrl = 1, kAssetId = 2 };

struct Avatar {
  AvatarKind kind = AvatarKind::kNone;
  std::string value;
  bool operator==(const Avatar&) const = default;
};

struct Profile {
  std::string player_id;
  std::string display_name;      // empty: none claimed
  std::string name_key;          // name_key(display_name): unique; empty with it
  std::string name_search_key;   // what ListPlayers matches prefixes against; empty with it
  int32_t name_key_version = 0;  // kNameKeyVersion of the algorithm name_key was made with
  int64_t name_changed_unix_ms = 0;
  Avatar avatar;
  std::map<std::string, MetadataValue> metadata;
  int64_t created_unix_ms = 0;
  int64_t version = 0;  // the store's; 0: not stored yet
};

struct NameEntry {
  std::string player_id;
  std::string display_name;
  // Withheld by a moderator: nobody may claim the name (the player it was taken from included)
  // until withheld_until_unix_ms (0: for good).
  bool withheld = false;
  std::string withheld_reason;
  int64_t withheld_until_unix_ms = 0;
  int64_t version = 0;  // the store's
};

// What a profile write does to name records besides claiming the new name.
struct NameWrite {
  // Set: the old name is kept as this withheld record instead of being released.
  std::optional<NameEntry> withhold_old;
  // The new name's record is written over this version (an expired withheld record); 0: it is
  // created only.
  int64_t claimed_version = 0;
};

struct NamePage {
  std::vector<NameEntry> names;
  std::string next_cursor;
};

struct Slot {
  std::string player_id;
  std::string name;
  std::string data;
  int64_t size_bytes = 0;
  // Taken from the player's slot counter (Usage::last_slot_version): it never repeats for a
  // player, so a version read before a delete never matches the slot created after it.
  int64_t version = 0;
  int64_t record_version = 0;  // the store's, what the write of this slot is conditioned on
  int64_t updated_unix_ms = 0;
};

struct SlotPage {
  std::vector<Slot> slots;  // without data
  std::string next_cursor;
};

// What a player's slots hold; version 0: never written.
struct Usage {
  int64_t slot_count = 0;
  int64_t total_bytes = 0;
  int64_t last_slot_version = 0;  // the last version given to any of the player's slots; only grows
  int64_t version = 0;
};

// An update that carried a request id, as it came out: a replay answers with it.
struct AppliedUpdate {
  std::string request_id;
  uint64_t fingerprint = 0;               // of the changes, so that a reused id with others is refused
  std::map<std::string, int64_t> values;  // the updated stats after the update
};

struct StatSheet {
  std::map<std::string, int64_t> values;
  std::vector<AppliedUpdate> recent;  // the last kRecentStatUpdates updates with a request id, oldest first
  int64_t version = 0;                // 0: never written
};

// How many request ids a player's stats remember: a replay after more updates than this is applied
// again.
inline constexpr size_t kRecentStatUpdates = 32;

struct StatChange {
  enum class Kind { kIncrement = 1, kSet = 2 };
  std::string name;
  Kind kind = Kind::kIncrement;
  int64_t value = 0;
};

// Who calls: the principal the host's gate verified, or a plugin calling with its own trust.
struct Caller {
  std::string player_id;
  std::vector<std::string> roles;
  std::string trusted_plugin = {};  // set: a plugin in trusted_plugins, with no player behind it
  // Set: a plugin in trusted_plugins calling for this player (with their principal). It writes the
  // player's own stats, all of them, and nobody else's.
  std::string for_trusted_plugin = {};
  bool staff() const;  // moderator, admin or the host's operator
  bool admin() const;  // admin or the operator
};

}  // namespace gameverse::playerdata
