// What the service needs from storage. Every write is one atomic batch, conditioned on the versions
// read before it; a write that meets another throws WriteConflict and changes nothing.
#pragma once

#include <optional>
#include <string>

#include "domain/model.hpp"

namespace gameverse::playerdata {

class Profiles {
 public:
  virtual ~Profiles() = default;
  virtual std::optional<Profile> profile(const std::string& player_id) = 0;
  // The player holding a name key, if any.
  virtual std::optional<NameEntry> name(const std::string& name_key) = 0;
  // Writes `after` over `before` (before.version; 0: create only). When the name key changes, the
  // new one is claimed (create-only, or over names.claimed_version) and the old one released or
  // withheld (names.withhold_old), in the same batch.
  virtual void save(const Profile& before, const Profile& after, const NameWrite& names = {}) = 0;
  // Names whose search key begins with `key_prefix`, by search key.
  virtual NamePage names(const std::string& key_prefix, const std::string& cursor, int64_t limit) = 0;
};

class Slots {
 public:
  virtual ~Slots() = default;
  virtual std::optional<Slot> slot(const std::string& player_id, const std::string& name) = 0;
  virtual SlotPage list(const std::string& player_id, const std::string& cursor, int64_t limit) = 0;
  virtual Usage usage(const std::string& player_id) = 0;
  // Puts the slot (with its version, slot.version) over the stored record's `expected_record_version`
  // (0: create only) and `after` over `before.version`.
  virtual void write(const Slot& slot, int64_t expected_record_version, const Usage& before,
                     const Usage& after) = 0;
  virtual void erase(const std::string& player_id, const std::string& name, int64_t record_version,
                     const Usage& before, const Usage& after) = 0;
};

class Stats {
 public:
  virtual ~Stats() = default;
  virtual StatSheet sheet(const std::string& player_id) = 0;
  // Puts `after` over `before.version`; returns the new version.
  virtual int64_t save(const std::string& player_id, const StatSheet& before, const StatSheet& after) = 0;
};

// Counts a player's writes in a window that starts at the first one (the host's cache: shared by
// hosts on Redis, and an entry goes when its window ends, so the table is bounded by the players
// writing in one window).
class WriteCounter {
 public:
  virtual ~WriteCounter() = default;
  // Adds one write of `player_id`; returns the writes in its current window of `window_ms`.
  virtual int64_t add(const std::string& player_id, int64_t window_ms) = 0;
};

}  // namespace gameverse::playerdata
