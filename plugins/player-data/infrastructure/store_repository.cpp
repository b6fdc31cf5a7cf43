#include "infrastructure/store_repository.hpp"

#include "gameverse/playerdata/records/v1/records.pb.h"

namespace gameverse::playerdata {

namespace {

namespace stored = records::v1;

constexpr const char* kProfiles = "profiles";
constexpr const char* kNames = "names";
constexpr const char* kNameIndex = "name_index";
constexpr const char* kSlots = "save_slots";
constexpr const char* kUsage = "usage";
constexpr const char* kStats = "stats";

std::string slot_key(const std::string& player_id, const std::string& name) {
  return player_id + "/" + name;
}

// Commits the batch; a write that met another one is WriteConflict, anything else the store's error.
std::vector<int64_t> commit(const sdk::Store& store, const sdk::Store::Batch& batch) {
  try {
    return store.commit(batch);
  } catch (const sdk::Error& e) {
    if (e.code() == sdk::StatusCode::kAborted || e.code() == sdk::StatusCode::kAlreadyExists) {
      throw WriteConflict(e.what());
    }
    throw;
  }
}

stored::ProfileRecord to_record(const Profile& p) {
  stored::ProfileRecord r;
  r.set_display_name(p.display_name);
  r.set_name_key(p.name_key);
  r.set_name_search_key(p.name_search_key);
  r.set_name_changed_unix_ms(p.name_changed_unix_ms);
  r.set_name_key_version(p.name_key_version);
  if (p.avatar.kind == AvatarKind::kUrl) r.set_avatar_url(p.avatar.value);
  if (p.avatar.kind == AvatarKind::kAssetId) r.set_avatar_asset_id(p.avatar.value);
  for (const auto& [key, field] : p.metadata) {
    stored::MetadataRecord& m = (*r.mutable_metadata())[key];
    m.set_value(field.value);
    m.set_is_public(field.visibility == Visibility::kPublic);
  }
  r.set_created_unix_ms(p.created_unix_ms);
  return r;
}

Profile from_record(const sdk::Record<stored::ProfileRecord>& record) {
  const stored::ProfileRecord& r = record.value;
  Profile p;
  p.player_id = record.key;
  p.display_name = r.display_name();
  p.name_key = r.name_key();
  p.name_search_key = r.name_search_key();
  p.name_changed_unix_ms = r.name_changed_unix_ms();
  p.name_key_version = r.name_key_version() == 0 && !r.name_key().empty() ? 1 : r.name_key_version();
  if (!r.avatar_url().empty()) p.avatar = {AvatarKind::kUrl, r.avatar_url()};
  if (!r.avatar_asset_id().empty()) p.avatar = {AvatarKind::kAssetId, r.avatar_asset_id()};
  for (const auto& [key, m] : r.metadata()) {
    p.metadata[key] = {m.value(), m.is_public() ? Visibility::kPublic : Visibility::kPrivate};
  }
  p.created_unix_ms = r.created_unix_ms();
  p.version = record.version;
  return p;
}

}  // namespace

std::optional<Profile> StoreProfiles::profile(const std::string& player_id) {
  auto record = store_.get<stored::ProfileRecord>(kProfiles, player_id);
  if (!record) return std::nullopt;
  return from_record(*record);
}

std::optional<NameEntry> StoreProfiles::name(const std::string& name_key) {
  auto record = store_.get<stored::NameRecord>(kNames, name_key);
  if (!record) return std::nullopt;
  const stored::NameRecord& r = record->value;
  return NameEntry{r.player_id(),       r.display_name(),           r.withheld(),
                   r.withheld_reason(), r.withheld_until_unix_ms(), record->version};
}

void StoreProfiles::save(const Profile& before, const Profile& after, const NameWrite& names) {
  sdk::Store::Batch batch;
  batch.put(kProfiles, after.player_id, to_record(after), before.version, after.player_id);
  if (after.name_key != before.name_key || after.display_name != before.display_name) {
    if (!after.name_key.empty()) {
      stored::NameRecord name;
      name.set_player_id(after.player_id);
      name.set_display_name(after.display_name);
      name.set_key_version(after.name_key_version);
      // A new key is created only: whoever else claims it in the meantime makes this batch fail.
      // The same key with another spelling is the player's own already.
      // A withheld name whose hold has ended is claimed over the version of its record.
      // The same key (made by another algorithm version, or respelled) is written over the player's
      // own record only, at the version read.
      int64_t expected = names.claimed_version ? names.claimed_version : sdk::Store::kCreateOnly;
      if (after.name_key == before.name_key) {
        const auto own = own_version(kNames, after.name_key, after.player_id);
        if (!own) throw WriteConflict("names: the key is held by another player");
        expected = *own;
      }
      batch.put(kNames, after.name_key, name, expected, after.player_id);
    }
    if (!before.name_key.empty() && before.name_key != after.name_key) {
      if (names.withhold_old) {
        const NameEntry& hold = *names.withhold_old;
        stored::NameRecord withheld;
        withheld.set_player_id(hold.player_id);
        withheld.set_display_name(hold.display_name);
        withheld.set_withheld(true);
        withheld.set_withheld_reason(hold.withheld_reason);
        withheld.set_withheld_until_unix_ms(hold.withheld_until_unix_ms);
        withheld.set_key_version(before.name_key_version);
        // Over the player's own record, at the version read (created if it had gone).
        if (const auto version = own_version(kNames, before.name_key, before.player_id)) {
          batch.put(kNames, before.name_key, withheld, *version, hold.player_id);
        }
      } else {
        erase_own(batch, kNames, before.name_key, before.player_id);
      }
    }
    // The index follows the name. A new search key is created only (the same one, respelled, is the
    // player's own); the old one is erased only while it is the player's, at the version read.
    if (!after.name_search_key.empty()) {
      stored::NameRecord entry;
      entry.set_player_id(after.player_id);
      entry.set_display_name(after.display_name);
      entry.set_key_version(after.name_key_version);
      const bool same = after.name_search_key == before.name_search_key;
      batch.put(kNameIndex, after.name_search_key, entry,
                same ? index_version(after.name_search_key, after.player_id) : sdk::Store::kCreateOnly,
                after.player_id);
    }
    if (!before.name_search_key.empty() && before.name_search_key != after.name_search_key) {
      erase_own(batch, kNameIndex, before.name_search_key, before.player_id);
    }
  }
  commit(store_, batch);
}

std::optional<int64_t> StoreProfiles::own_version(const char* collection, const std::string& key,
                                                  const std::string& player_id) {
  auto record = store_.get<stored::NameRecord>(collection, key);
  if (!record) return sdk::Store::kCreateOnly;
  if (record->value.player_id() != player_id) return std::nullopt;
  return record->version;
}

void StoreProfiles::erase_own(sdk::Store::Batch& batch, const char* collection, const std::string& key,
                              const std::string& player_id) {
  const auto version = own_version(collection, key, player_id);
  if (version && *version != sdk::Store::kCreateOnly) batch.erase(collection, key, *version);
}

int64_t StoreProfiles::index_version(const std::string& search_key, const std::string& player_id) {
  auto record = store_.get<stored::NameRecord>(kNameIndex, search_key);
  if (!record) return sdk::Store::kCreateOnly;
  // Another player's entry under the player's own search key: the write fails and is tried again.
  if (record->value.player_id() != player_id) throw WriteConflict("name_index: held by another player");
  return record->version;
}

NamePage StoreProfiles::names(const std::string& key_prefix, const std::string& cursor, int64_t limit) {
  sdk::Store::Query query;
  query.collection = kNameIndex;
  query.key_prefix = key_prefix;
  query.cursor = cursor;
  query.limit = static_cast<uint32_t>(limit);
  auto page = store_.list<stored::NameRecord>(query);
  NamePage out;
  for (const auto& record : page.records) {
    NameEntry entry;
    entry.player_id = record.value.player_id();
    entry.display_name = record.value.display_name();
    out.names.push_back(std::move(entry));
  }
  out.next_cursor = std::move(page.next_cursor);
  return out;
}

std::optional<Slot> StoreSlots::slot(const std::string& player_id, const std::string& name) {
  auto record = store_.get<stored::SlotRecord>(kSlots, slot_key(player_id, name));
  if (!record) return std::nullopt;
  Slot s;
  s.player_id = player_id;
  s.name = name;
  s.size_bytes = static_cast<int64_t>(record->value.data().size());
  s.data = std::move(*record->value.mutable_data());
  s.version = record->value.version();
  s.record_version = record->version;
  s.updated_unix_ms = record->updated_unix_ms;
  return s;
}

SlotPage StoreSlots::list(const std::string& player_id, const std::string& cursor, int64_t limit) {
  sdk::Store::Query query;
  query.collection = kSlots;
  query.key_prefix = player_id + "/";
  query.cursor = cursor;
  query.limit = static_cast<uint32_t>(limit);
  auto page = store_.list<stored::SlotRecord>(query);
  SlotPage out;
  for (const auto& record : page.records) {
    Slot s;
    s.player_id = player_id;
    s.name = record.key.substr(query.key_prefix.size());
    s.size_bytes = static_cast<int64_t>(record.value.data().size());
    s.version = record.value.version();
    s.record_version = record.version;
    s.updated_unix_ms = record.updated_unix_ms;
    out.slots.push_back(std::move(s));
  }
  out.next_cursor = std::move(page.next_cursor);
  return out;
}

Usage StoreSlots::usage(const std::string& player_id) {
  auto record = store_.get<stored::UsageRecord>(kUsage, player_id);
  if (!record) return {};
  return {record->value.slot_count(), record->value.total_bytes(), record->value.last_slot_version(),
          record->version};
}

namespace {
stored::UsageRecord usage_record(const Usage& u) {
  stored::UsageRecord r;
  r.set_slot_count(u.slot_count);
  r.set_total_bytes(u.total_bytes);
  r.set_last_slot_version(u.last_slot_version);
  return r;
}
}  // namespace

void StoreSlots::write(const Slot& slot, int64_t expected_record_version, const Usage& before,
                       const Usage& after) {
  stored::SlotRecord record;
  record.set_version(slot.version);
  record.set_data(slot.data);
  sdk::Store::Batch batch;
  batch.put(kSlots, slot_key(slot.player_id, slot.name), record, expected_record_version, slot.player_id);
  batch.put(kUsage, slot.player_id, usage_record(after), before.version, slot.player_id);
  commit(store_, batch);
}

void StoreSlots::erase(const std::string& player_id, const std::string& name, int64_t record_version,
                       const Usage& before, const Usage& after) {
  sdk::Store::Batch batch;
  batch.erase(kSlots, slot_key(player_id, name), record_version);
  batch.put(kUsage, player_id, usage_record(after), before.version, player_id);
  commit(store_, batch);
}

StatSheet StoreStats::sheet(const std::string& player_id) {
  auto record = store_.get<stored::StatsRecord>(kStats, player_id);
  if (!record) return {};
  StatSheet s;
  s.values = {record->value.values().begin(), record->value.values().end()};
  for (const auto& r : record->value.recent()) {
    s.recent.push_back({r.request_id(), r.fingerprint(), {r.values().begin(), r.values().end()}});
  }
  s.version = record->version;
  return s;
}

int64_t StoreStats::save(const std::string& player_id, const StatSheet& before, const StatSheet& after) {
  stored::StatsRecord r;
  for (const auto& [name, value] : after.values) (*r.mutable_values())[name] = value;
  for (const auto& applied : after.recent) {
    stored::AppliedUpdateRecord& a = *r.add_recent();
    a.set_request_id(applied.request_id);
    a.set_fingerprint(applied.fingerprint);
    for (const auto& [name, value] : applied.values) (*a.mutable_values())[name] = value;
  }
  sdk::Store::Batch batch;
  batch.put(kStats, player_id, r, before.version, player_id);
  return commit(store_, batch).at(0);
}

}  // namespace gameverse::playerdata
