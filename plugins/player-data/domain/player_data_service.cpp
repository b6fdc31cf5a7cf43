#include "domain/player_data_service.hpp"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "domain/names.hpp"
#include "domain/rules.hpp"

namespace gameverse::playerdata {

namespace {

using K = PlayerDataError::Kind;

constexpr int64_t kDefaultPageSize = 20;
constexpr size_t kMaxCursorBytes = 1024;

std::string quoted(const std::string& s) {
  return "'" + s + "'";
}

int64_t metadata_bytes(const std::map<std::string, MetadataValue>& metadata) {
  int64_t total = 0;
  for (const auto& [key, field] : metadata) total += static_cast<int64_t>(key.size() + field.value.size());
  return total;
}

void check_cursor(const std::string& cursor) {
  if (cursor.size() > kMaxCursorBytes) {
    throw PlayerDataError(K::kInvalidArgument, "cursor: at most " + std::to_string(kMaxCursorBytes) +
                                                   " bytes, not " + std::to_string(cursor.size()));
  }
}

// A short random pause between optimistic tries, so that writers that met do not meet again.
void back_off(int attempt) {
  thread_local std::minstd_rand random(std::random_device{}());
  const int ceiling_us = 200 * std::min(attempt, 20);
  std::this_thread::sleep_for(std::chrono::microseconds(random() % static_cast<unsigned>(ceiling_us + 1)));
}

}  // namespace

Profile public_view(const Profile& profile) {
  Profile out;
  out.player_id = profile.player_id;
  out.display_name = profile.display_name;
  out.avatar = profile.avatar;
  for (const auto& [key, field] : profile.metadata) {
    if (field.visibility == Visibility::kPublic) out.metadata.emplace(key, field);
  }
  out.created_unix_ms = profile.created_unix_ms;
  // No version: it moves with every private change too, which would tell others when they happen.
  return out;
}

PlayerDataService::PlayerDataService(Limits limits, Profiles& profiles, Slots& slots, Stats& stats,
                                     Clock now_unix_ms, ConflictObserver on_conflict, WriteCounter* writes)
    : limits_(std::move(limits)),
      reserved_keys_(reserved_keys(limits_.reserved_names)),
      profiles_(profiles),
      slots_(slots),
      stats_(stats),
      now_(std::move(now_unix_ms)),
      on_conflict_(std::move(on_conflict)),
      writes_(writes) {}

std::string PlayerDataService::subject(const Caller& caller, const std::string& player_id, bool others_may,
                                       const char* what, bool plugin_may) {
  if (!caller.trusted_plugin.empty()) {
    if (!plugin_may) {
      throw PlayerDataError(K::kPermissionDenied, "plugin '" + caller.trusted_plugin +
                                                      "' calls with its own trust, which reaches stats only; "
                                                      "call for a player to do this");
    }
    if (player_id.empty()) {
      throw PlayerDataError(K::kInvalidArgument,
                            "player_id: a plugin calling with its own trust names the player");
    }
    check_player_id(player_id, "player_id");
    return player_id;
  }
  if (caller.player_id.empty()) {
    throw PlayerDataError(K::kUnauthenticated,
                          "this call needs the metadata authorization: Bearer <access token>");
  }
  if (player_id.empty() || player_id == caller.player_id) return caller.player_id;
  check_player_id(player_id, "player_id");
  if (!others_may) {
    throw PlayerDataError(K::kPermissionDenied, std::string("player_id: a player ") + what +
                                                    " only their own; leave player_id empty");
  }
  return player_id;
}

void PlayerDataService::charge_write(const Caller& caller) {
  // Trusted plugins have no player to charge; admins (and the operator) do bulk work on purpose.
  if (writes_ == nullptr || limits_.max_writes_per_player_per_minute == 0 || caller.player_id.empty() ||
      caller.admin()) {
    return;
  }
  const int64_t used = writes_->add(caller.player_id, 60'000);
  if (used > limits_.max_writes_per_player_per_minute) {
    throw PlayerDataError(K::kResourceExhausted,
                          "a player makes at most " +
                              std::to_string(limits_.max_writes_per_player_per_minute) +
                              " writes a minute (max_writes_per_player_per_minute); nothing was changed, "
                              "retry within a minute");
  }
}

template <class Attempt>
auto PlayerDataService::with_retries(const char* field, const char* record, Attempt&& attempt) {
  for (int64_t tries = 1;; ++tries) {
    try {
      return attempt();
    } catch (const WriteConflict&) {
      const bool give_up = tries >= limits_.max_write_attempts;
      if (on_conflict_) on_conflict_(record, give_up);
      if (give_up) {
        throw PlayerDataError(K::kAborted, std::string(field) + ": " + std::to_string(tries) +
                                               " tries in a row met concurrent writes (max_write_attempts); "
                                               "nothing was changed, try again");
      }
      back_off(static_cast<int>(tries));
    }
  }
}

int64_t PlayerDataService::page_size(int64_t requested, const char* field) const {
  if (requested == 0) return std::min(kDefaultPageSize, limits_.max_page_size);
  if (requested < 0 || requested > limits_.max_page_size) {
    throw PlayerDataError(K::kInvalidArgument,
                          std::string(field) + ": 1 to " + std::to_string(limits_.max_page_size) +
                              " (max_page_size), or 0 for " + std::to_string(kDefaultPageSize) + "; not " +
                              std::to_string(requested));
  }
  return requested;
}

Profile PlayerDataService::profile(const Caller& caller, const std::string& player_id) {
  const std::string id = subject(caller, player_id, true, "");
  std::optional<Profile> stored = profiles_.profile(id);
  if (id == caller.player_id) {
    if (stored) return *stored;
    Profile empty;
    empty.player_id = id;
    return empty;
  }
  if (!stored) throw PlayerDataError(K::kNotFound, "player_id: no profile for player " + quoted(id));
  return caller.staff() ? *stored : public_view(*stored);
}

Profile PlayerDataService::set_display_name(const Caller& caller, const std::string& display_name) {
  const std::string id = subject(caller, "", false, "");
  const FoldedName name = fold_display_name(display_name, limits_, "display_name");
  if (is_reserved(name, reserved_keys_)) {
    throw PlayerDataError(K::kInvalidArgument, "display_name: " + quoted(name.display) +
                                                   " is reserved (or looks like a reserved name)");
  }
  charge_write(caller);
  const std::string& key = name.key;
  return with_retries("display_name", "profile", [&] {
    const int64_t now = now_();
    std::optional<Profile> stored = profiles_.profile(id);
    Profile before;
    if (stored) {
      before = *stored;
    } else {
      before.player_id = id;
      before.created_unix_ms = now;
    }
    if (before.display_name == name.display) return before;
    if (before.name_changed_unix_ms > 0 &&
        now - before.name_changed_unix_ms < limits_.name_change_cooldown_ms) {
      const int64_t wait_s =
          (before.name_changed_unix_ms + limits_.name_change_cooldown_ms - now + 999) / 1000;
      throw PlayerDataError(K::kFailedPrecondition,
                            "display_name: a name can change once every " +
                                std::to_string(limits_.name_change_cooldown_ms / 1000) +
                                " s (name_change_cooldown_s); the next change is possible in " +
                                std::to_string(wait_s) + " s");
    }
    NameWrite names;
    // A key made by an earlier algorithm is no proof that the player holds this one.
    if (key != before.name_key || before.name_key_version != kNameKeyVersion) {
      std::optional<NameEntry> holder = profiles_.name(key);
      if (holder && holder->withheld) {
        if (holder->withheld_until_unix_ms == 0 || now < holder->withheld_until_unix_ms) {
          throw PlayerDataError(
              K::kAlreadyExists,
              "display_name: " + quoted(name.display) + " is withheld by moderation" +
                  (holder->display_name == name.display
                       ? ""
                       : " (as " + quoted(holder->display_name) + ", which it is too like)"));
        }
        names.claimed_version = holder->version;  // the hold has ended: claimed over it
      } else if (holder && holder->player_id != id) {
        throw PlayerDataError(K::kAlreadyExists,
                              "display_name: " + quoted(name.display) + " is taken" +
                                  (holder->display_name == name.display
                                       ? ""
                                       : " (as " + quoted(holder->display_name) + ", which it is too like)"));
      }
    }
    Profile after = before;
    after.display_name = name.display;
    after.name_key = key;
    after.name_search_key = name.search_key;
    after.name_key_version = kNameKeyVersion;
    after.name_changed_unix_ms = now;
    profiles_.save(before, after, names);
    return *profiles_.profile(id);
  });
}

Profile PlayerDataService::update_profile(const Caller& caller, const ProfileChange& change) {
  const std::string id = subject(caller, "", false, "");
  if (change.avatar) check_avatar(*change.avatar, limits_, "avatar");
  const auto max_fields = static_cast<size_t>(limits_.max_metadata_fields);
  if (change.set_metadata.size() > max_fields) {
    throw PlayerDataError(K::kInvalidArgument, "set_metadata: at most " + std::to_string(max_fields) +
                                                   " fields (max_metadata_fields), not " +
                                                   std::to_string(change.set_metadata.size()));
  }
  if (change.remove_metadata.size() > max_fields) {
    throw PlayerDataError(K::kInvalidArgument, "remove_metadata: at most " + std::to_string(max_fields) +
                                                   " keys (max_metadata_fields), not " +
                                                   std::to_string(change.remove_metadata.size()));
  }
  for (size_t i = 0; i < change.set_metadata.size(); ++i) {
    const auto& [key, field] = change.set_metadata[i];
    const std::string at = "set_metadata[" + std::to_string(i) + "]";
    check_token(key, limits_.max_metadata_key_bytes, at + ".key");
    if (static_cast<int64_t>(field.value.size()) > limits_.max_metadata_value_bytes) {
      throw PlayerDataError(K::kInvalidArgument, at + ".value: at most " +
                                                     std::to_string(limits_.max_metadata_value_bytes) +
                                                     " bytes (max_metadata_value_bytes), not " +
                                                     std::to_string(field.value.size()));
    }
    check_plain_text(field.value, at + ".value");
  }
  for (size_t i = 0; i < change.remove_metadata.size(); ++i) {
    check_token(change.remove_metadata[i], limits_.max_metadata_key_bytes,
                "remove_metadata[" + std::to_string(i) + "]");
  }
  charge_write(caller);
  return with_retries("set_metadata", "profile", [&] {
    std::optional<Profile> stored = profiles_.profile(id);
    Profile before;
    if (stored) {
      before = *stored;
    } else {
      before.player_id = id;
      before.created_unix_ms = now_();
    }
    Profile after = before;
    if (change.avatar) after.avatar = *change.avatar;
    for (const auto& key : change.remove_metadata) after.metadata.erase(key);
    for (const auto& [key, field] : change.set_metadata) after.metadata[key] = field;
    if (static_cast<int64_t>(after.metadata.size()) > limits_.max_metadata_fields &&
        after.metadata.size() > before.metadata.size()) {
      throw PlayerDataError(K::kResourceExhausted, "set_metadata: a profile has at most " +
                                                       std::to_string(limits_.max_metadata_fields) +
                                                       " metadata fields (max_metadata_fields); this makes " +
                                                       std::to_string(after.metadata.size()));
    }
    const int64_t bytes = metadata_bytes(after.metadata);
    if (bytes > limits_.max_metadata_bytes && bytes > metadata_bytes(before.metadata)) {
      throw PlayerDataError(K::kResourceExhausted,
                            "set_metadata: a profile's metadata keys and values hold at most " +
                                std::to_string(limits_.max_metadata_bytes) +
                                " bytes (max_metadata_bytes); this makes " + std::to_string(bytes));
    }
    profiles_.save(before, after);
    return *profiles_.profile(id);
  });
}

Profile PlayerDataService::reset_display_name(const Caller& caller, const std::string& player_id,
                                              const std::string& reason, int64_t withhold_ms,
                                              std::string* released) {
  if (!caller.staff()) {
    throw PlayerDataError(K::kPermissionDenied, "resetting a display name needs the role moderator or admin");
  }
  check_player_id(player_id, "player_id");
  if (withhold_ms < 0) {
    throw PlayerDataError(K::kInvalidArgument,
                          "hold_seconds: 0 (for good) or more, not " + std::to_string(withhold_ms / 1000));
  }
  return with_retries("display_name", "profile", [&] {
    const int64_t now = now_();
    std::optional<Profile> stored = profiles_.profile(player_id);
    if (!stored) throw PlayerDataError(K::kNotFound, "player_id: no profile for player " + quoted(player_id));
    if (released != nullptr) *released = stored->display_name;
    if (stored->display_name.empty()) return *stored;
    Profile after = *stored;
    after.display_name.clear();
    after.name_key.clear();
    after.name_search_key.clear();
    after.name_key_version = 0;
    // The cooldown starts again, and the name stays withheld: the player cannot take it straight back.
    after.name_changed_unix_ms = now;
    NameWrite names;
    names.withhold_old = NameEntry{player_id, stored->display_name, true, reason,
                                   withhold_ms == 0 ? 0 : checked_add(now, withhold_ms, "hold_seconds")};
    profiles_.save(*stored, after, names);
    return *profiles_.profile(player_id);
  });
}

Profile PlayerDataService::clear_profile_fields(const Caller& caller, const std::string& player_id,
                                                bool clear_avatar,
                                                const std::vector<std::string>& remove_metadata) {
  if (!caller.staff()) {
    throw PlayerDataError(K::kPermissionDenied, "clearing profile fields needs the role moderator or admin");
  }
  check_player_id(player_id, "player_id");
  if (static_cast<int64_t>(remove_metadata.size()) > limits_.max_metadata_fields) {
    throw PlayerDataError(K::kInvalidArgument,
                          "remove_metadata: at most " + std::to_string(limits_.max_metadata_fields) +
                              " keys (max_metadata_fields), not " + std::to_string(remove_metadata.size()));
  }
  for (size_t i = 0; i < remove_metadata.size(); ++i) {
    check_token(remove_metadata[i], limits_.max_metadata_key_bytes,
                "remove_metadata[" + std::to_string(i) + "]");
  }
  return with_retries("player_id", "profile", [&] {
    std::optional<Profile> stored = profiles_.profile(player_id);
    if (!stored) throw PlayerDataError(K::kNotFound, "player_id: no profile for player " + quoted(player_id));
    Profile after = *stored;
    if (clear_avatar) after.avatar = {};
    for (const auto& key : remove_metadata) after.metadata.erase(key);
    if (after.avatar == stored->avatar && after.metadata.size() == stored->metadata.size()) return *stored;
    profiles_.save(*stored, after);
    return *profiles_.profile(player_id);
  });
}

NamePage PlayerDataService::list_players(const Caller& caller, const std::string& prefix, int64_t size,
                                         const std::string& cursor) {
  subject(caller, "", false, "");
  const std::string key = prefix_key(prefix, limits_, "prefix");
  const int64_t limit = page_size(size, "page_size");
  check_cursor(cursor);
  return profiles_.names(key, cursor, limit);
}

Slot PlayerDataService::slot(const Caller& caller, const std::string& player_id, const std::string& name) {
  const std::string id = subject(caller, player_id, caller.staff(), "reads the save slots of");
  check_token(name, 64, "name");
  std::optional<Slot> found = slots_.slot(id, name);
  if (!found) throw PlayerDataError(K::kNotFound, "name: no save slot " + quoted(name));
  return *found;
}

SlotPage PlayerDataService::slots(const Caller& caller, const std::string& player_id, int64_t size,
                                  const std::string& cursor, Usage* usage) {
  const std::string id = subject(caller, player_id, caller.staff(), "reads the save slots of");
  const int64_t limit = page_size(size, "page_size");
  check_cursor(cursor);
  SlotPage page = slots_.list(id, cursor, limit);
  if (usage != nullptr) *usage = slots_.usage(id);
  return page;
}

Slot PlayerDataService::write_slot(const Caller& caller, const SlotWrite& write) {
  const std::string id = subject(caller, "", false, "");
  check_token(write.name, 64, "name");
  if (static_cast<int64_t>(write.data.size()) > limits_.max_slot_bytes) {
    throw PlayerDataError(K::kInvalidArgument,
                          "data: a save slot holds at most " + std::to_string(limits_.max_slot_bytes) +
                              " bytes (max_slot_bytes), not " + std::to_string(write.data.size()));
  }
  if (write.expected_version && *write.expected_version < 0) {
    throw PlayerDataError(K::kInvalidArgument, "expected_version: 0 (create only) or a version from 1, not " +
                                                   std::to_string(*write.expected_version));
  }
  charge_write(caller);
  return with_retries("name", "slot", [&] {
    std::optional<Slot> current = slots_.slot(id, write.name);
    if (write.expected_version) {
      const int64_t expected = *write.expected_version;
      if (expected == 0 && current) {
        throw PlayerDataError(K::kAlreadyExists, "expected_version: 0 creates only, and save slot " +
                                                     quoted(write.name) + " exists at version " +
                                                     std::to_string(current->version));
      }
      if (expected > 0 && (!current || current->version != expected)) {
        throw PlayerDataError(K::kAborted, "expected_version: save slot " + quoted(write.name) +
                                               (current ? " is at version " + std::to_string(current->version)
                                                        : std::string(" does not exist")) +
                                               ", not " + std::to_string(expected) + "; nothing was written");
      }
    }
    const Usage before = slots_.usage(id);
    Usage after = before;
    if (current) {
      after.total_bytes -= current->size_bytes;
    } else {
      ++after.slot_count;
    }
    after.total_bytes += static_cast<int64_t>(write.data.size());
    if (after.slot_count > limits_.max_slots_per_player && after.slot_count > before.slot_count) {
      throw PlayerDataError(K::kResourceExhausted, "name: a player has at most " +
                                                       std::to_string(limits_.max_slots_per_player) +
                                                       " save slots (max_slots_per_player); " +
                                                       std::to_string(before.slot_count) + " exist");
    }
    if (after.total_bytes > limits_.max_slot_bytes_per_player && after.total_bytes > before.total_bytes) {
      throw PlayerDataError(
          K::kResourceExhausted,
          "data: a player's save slots hold at most " + std::to_string(limits_.max_slot_bytes_per_player) +
              " bytes (max_slot_bytes_per_player); this write makes " + std::to_string(after.total_bytes));
    }
    // A new version from the player's counter, in the batch that writes the slot: a slot deleted and
    // created again does not start over at 1, so a stale expected_version cannot match it.
    after.last_slot_version = std::max(before.last_slot_version, current ? current->version : 0) + 1;
    Slot slot;
    slot.player_id = id;
    slot.name = write.name;
    slot.data = write.data;
    slot.size_bytes = static_cast<int64_t>(write.data.size());
    slot.version = after.last_slot_version;
    slots_.write(slot, current ? current->record_version : 0, before, after);
    slot.updated_unix_ms = now_();
    return slot;
  });
}

void PlayerDataService::delete_slot(const Caller& caller, const std::string& name,
                                    std::optional<int64_t> expected_version) {
  const std::string id = subject(caller, "", false, "");
  check_token(name, 64, "name");
  if (expected_version && *expected_version < 1) {
    throw PlayerDataError(K::kInvalidArgument,
                          "expected_version: a version from 1, not " + std::to_string(*expected_version));
  }
  charge_write(caller);
  with_retries("name", "slot", [&] {
    std::optional<Slot> current = slots_.slot(id, name);
    if (!current) throw PlayerDataError(K::kNotFound, "name: no save slot " + quoted(name));
    if (expected_version && current->version != *expected_version) {
      throw PlayerDataError(K::kAborted, "expected_version: save slot " + quoted(name) + " is at version " +
                                             std::to_string(current->version) + ", not " +
                                             std::to_string(*expected_version) + "; nothing was deleted");
    }
    const Usage before = slots_.usage(id);
    Usage after = before;
    after.slot_count = std::max<int64_t>(0, after.slot_count - 1);
    after.total_bytes = std::max<int64_t>(0, after.total_bytes - current->size_bytes);
    slots_.erase(id, name, current->record_version, before, after);
    return 0;
  });
}

StatSheet PlayerDataService::update_stats(const Caller& caller, const std::string& player_id,
                                          const std::vector<StatChange>& changes,
                                          const std::string& request_id) {
  const std::string id = subject(caller, player_id, caller.admin(), "changes the stats of", true);
  if (changes.empty() || static_cast<int64_t>(changes.size()) > limits_.max_stats_per_request) {
    throw PlayerDataError(K::kInvalidArgument,
                          "updates: 1 to " + std::to_string(limits_.max_stats_per_request) +
                              " per call (max_stats_per_request), not " + std::to_string(changes.size()));
  }
  for (size_t i = 0; i < changes.size(); ++i) {
    check_token(changes[i].name, 64, "updates[" + std::to_string(i) + "].name");
  }
  if (!request_id.empty()) check_token(request_id, 64, "request_id");
  // FNV-1a over the changes as given.
  uint64_t fingerprint = 14695981039346656037ULL;
  const auto mix = [&](std::string_view bytes) {
    for (const char c : bytes) fingerprint = (fingerprint ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  };
  for (const auto& change : changes) {
    mix(change.name);
    mix(change.kind == StatChange::Kind::kSet ? "\x01=" : "\x01+");
    mix(std::to_string(change.value));
    mix("\x02");
  }
  // A trusted plugin calling for a player writes that player's stats (subject() kept it to their
  // own), so it need not fall back to its own trust and a player id the client chose.
  if (!caller.admin() && caller.trusted_plugin.empty() && caller.for_trusted_plugin.empty()) {
    for (size_t i = 0; i < changes.size(); ++i) {
      if (!player_writable(changes[i].name, limits_)) {
        throw PlayerDataError(K::kPermissionDenied,
                              "updates[" + std::to_string(i) + "].name: stat " + quoted(changes[i].name) +
                                  " is written by admins and trusted plugins; players write only the stats "
                                  "player_writable_stats lists");
      }
    }
  }
  charge_write(caller);
  return with_retries("updates", "stats", [&] {
    const StatSheet before = stats_.sheet(id);
    if (!request_id.empty()) {
      for (const auto& applied : before.recent) {
        if (applied.request_id != request_id) continue;
        if (applied.fingerprint != fingerprint) {
          throw PlayerDataError(
              K::kInvalidArgument,
              "request_id: " + quoted(request_id) + " was used for other updates; give each update its own");
        }
        StatSheet replay;
        replay.values = applied.values;
        replay.version = before.version;
        return replay;
      }
    }
    StatSheet after = before;
    for (size_t i = 0; i < changes.size(); ++i) {
      const StatChange& change = changes[i];
      int64_t& value = after.values[change.name];
      if (change.kind == StatChange::Kind::kSet) {
        value = change.value;
      } else {
        value = checked_add(value, change.value,
                            "updates[" + std::to_string(i) + "].increment of " + quoted(change.name));
      }
    }
    // Two bounds: what players write themselves cannot use up the room of what admins and trusted
    // plugins write about them.
    const auto writable = [&](const StatSheet& sheet) {
      return std::count_if(sheet.values.begin(), sheet.values.end(),
                           [&](const auto& stat) { return player_writable(stat.first, limits_); });
    };
    const int64_t writable_before = writable(before), writable_after = writable(after);
    const int64_t others_before = static_cast<int64_t>(before.values.size()) - writable_before;
    const int64_t others_after = static_cast<int64_t>(after.values.size()) - writable_after;
    if (writable_after > limits_.max_player_writable_stats && writable_after > writable_before) {
      throw PlayerDataError(K::kResourceExhausted,
                            "updates: a player has at most " +
                                std::to_string(limits_.max_player_writable_stats) +
                                " stats that player_writable_stats lists (max_player_writable_stats); this "
                                "makes " +
                                std::to_string(writable_after));
    }
    if (others_after > limits_.max_stats_per_player && others_after > others_before) {
      throw PlayerDataError(K::kResourceExhausted,
                            "updates: a player has at most " + std::to_string(limits_.max_stats_per_player) +
                                " stats written by admins and trusted plugins (max_stats_per_player); this "
                                "makes " +
                                std::to_string(others_after));
    }
    if (!request_id.empty()) {
      AppliedUpdate applied{request_id, fingerprint, {}};
      for (const auto& change : changes) applied.values[change.name] = after.values.at(change.name);
      after.recent.push_back(applied);
      if (after.recent.size() > kRecentStatUpdates) {
        after.recent.erase(
            after.recent.begin(),
            after.recent.begin() + static_cast<std::ptrdiff_t>(after.recent.size() - kRecentStatUpdates));
      }
      StatSheet reply;
      reply.values = std::move(applied.values);
      reply.version = stats_.save(id, before, after);
      return reply;
    }
    after.version = stats_.save(id, before, after);
    after.recent.clear();
    return after;
  });
}

StatSheet PlayerDataService::stats(const Caller& caller, const std::string& player_id,
                                   const std::vector<std::string>& names) {
  const std::string id = subject(caller, player_id, caller.staff(), "reads the stats of", true);
  if (static_cast<int64_t>(names.size()) > limits_.max_stats_per_request) {
    throw PlayerDataError(K::kInvalidArgument,
                          "names: at most " + std::to_string(limits_.max_stats_per_request) +
                              " per call (max_stats_per_request), not " + std::to_string(names.size()));
  }
  for (size_t i = 0; i < names.size(); ++i) check_token(names[i], 64, "names[" + std::to_string(i) + "]");
  StatSheet sheet = stats_.sheet(id);
  if (names.empty()) return sheet;
  StatSheet picked;
  picked.version = sheet.version;
  for (const auto& name : names) {
    auto it = sheet.values.find(name);
    picked.values[name] = it == sheet.values.end() ? 0 : it->second;
  }
  return picked;
}

}  // namespace gameverse::playerdata
