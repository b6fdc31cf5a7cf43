// The player-data repositories in memory, with the store's rules: versions from 1, a write
// conditioned on a version or on absence, and batches applied whole or not at all. Thread-safe, so
// that domain tests can race writers as the host does.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>

#include "domain/repositories.hpp"

namespace gameverse::playerdata::testing {

class InMemoryStore : public Profiles, public Slots, public Stats {
 public:
  std::optional<Profile> profile(const std::string& player_id) override {
    std::lock_guard lock(mu_);
    auto it = profiles_.find(player_id);
    if (it == profiles_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<NameEntry> name(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = names_.find(key);
    if (it == names_.end()) return std::nullopt;
    return it->second;
  }
  void save(const Profile& before, const Profile& after, const NameWrite& write = {}) override {
    std::lock_guard lock(mu_);
    // The store refuses empty keys.
    if (!after.display_name.empty() && (after.name_key.empty() || after.name_search_key.empty())) {
      throw std::invalid_argument("a name with an empty key");
    }
    auto it = profiles_.find(after.player_id);
    const int64_t current = it == profiles_.end() ? 0 : it->second.version;
    if (current != before.version) throw WriteConflict("profile version moved");
    if (!after.name_search_key.empty() && after.name_search_key != before.name_search_key &&
        index_.contains(after.name_search_key) &&
        index_[after.name_search_key].player_id != after.player_id) {
      throw WriteConflict("search key exists");
    }
    if (after.name_key != before.name_key && !after.name_key.empty()) {
      auto held = names_.find(after.name_key);
      const int64_t name_version = held == names_.end() ? 0 : held->second.version;
      if (name_version != write.claimed_version) throw WriteConflict("name exists");
    }
    if (!before.name_key.empty() && before.name_key != after.name_key) {
      if (write.withhold_old) {
        NameEntry hold = *write.withhold_old;
        hold.version = names_[before.name_key].version + 1;
        names_[before.name_key] = hold;
      } else {
        names_.erase(before.name_key);
      }
    }
    if (!after.name_key.empty()) {
      const int64_t name_version = names_.contains(after.name_key) ? names_[after.name_key].version : 0;
      names_[after.name_key] = {after.player_id, after.display_name, false, {}, 0, name_version + 1};
    }
    if (!before.name_search_key.empty()) {
      auto own = index_.find(before.name_search_key);
      if (own != index_.end() && own->second.player_id == before.player_id) index_.erase(own);
    }
    if (!after.name_search_key.empty())
      index_[after.name_search_key] = {after.player_id, after.display_name, false, {}, 0, 0};
    Profile stored = after;
    stored.version = current + 1;
    profiles_[after.player_id] = stored;
    ++writes;
  }
  NamePage names(const std::string& prefix, const std::string& cursor, int64_t limit) override {
    std::lock_guard lock(mu_);
    NamePage page;
    for (auto it = index_.upper_bound(cursor); it != index_.end(); ++it) {
      if (!it->first.starts_with(prefix)) continue;
      if (static_cast<int64_t>(page.names.size()) == limit) {
        page.next_cursor = std::prev(it)->first;
        break;
      }
      page.names.push_back(it->second);
    }
    return page;
  }

  std::optional<Slot> slot(const std::string& player_id, const std::string& name) override {
    std::lock_guard lock(mu_);
    auto it = slots_.find(player_id + "/" + name);
    if (it == slots_.end()) return std::nullopt;
    return it->second;
  }
  SlotPage list(const std::string& player_id, const std::string& cursor, int64_t limit) override {
    std::lock_guard lock(mu_);
    SlotPage page;
    const std::string prefix = player_id + "/";
    for (auto it = slots_.upper_bound(cursor.empty() ? prefix : cursor); it != slots_.end(); ++it) {
      if (!it->first.starts_with(prefix)) break;
      if (static_cast<int64_t>(page.slots.size()) == limit) {
        page.next_cursor = std::prev(it)->first;
        break;
      }
      Slot s = it->second;
      s.data.clear();
      page.slots.push_back(s);
    }
    return page;
  }
  Usage usage(const std::string& player_id) override {
    std::lock_guard lock(mu_);
    auto it = usage_.find(player_id);
    return it == usage_.end() ? Usage{} : it->second;
  }
  void write(const Slot& slot, int64_t expected_record_version, const Usage& before,
             const Usage& after) override {
    std::lock_guard lock(mu_);
    const std::string key = slot.player_id + "/" + slot.name;
    auto it = slots_.find(key);
    // The store's versions start at 1 again after a delete; the slot's own version is the caller's.
    const int64_t current = it == slots_.end() ? 0 : it->second.record_version;
    if (current != expected_record_version) throw WriteConflict("slot version moved");
    check_usage(slot.player_id, before);
    Slot stored = slot;
    stored.record_version = current + 1;
    slots_[key] = stored;
    put_usage(slot.player_id, after);
    ++writes;
  }
  void erase(const std::string& player_id, const std::string& name, int64_t record_version,
             const Usage& before, const Usage& after) override {
    std::lock_guard lock(mu_);
    auto it = slots_.find(player_id + "/" + name);
    if (it == slots_.end() || it->second.record_version != record_version) {
      throw WriteConflict("slot version moved");
    }
    check_usage(player_id, before);
    slots_.erase(it);
    put_usage(player_id, after);
    ++writes;
  }

  StatSheet sheet(const std::string& player_id) override {
    std::lock_guard lock(mu_);
    auto it = stats_.find(player_id);
    return it == stats_.end() ? StatSheet{} : it->second;
  }
  int64_t save(const std::string& player_id, const StatSheet& before, const StatSheet& after) override {
    std::lock_guard lock(mu_);
    auto it = stats_.find(player_id);
    const int64_t current = it == stats_.end() ? 0 : it->second.version;
    if (current != before.version) throw WriteConflict("stats version moved");
    StatSheet stored = after;
    stored.version = current + 1;
    stats_[player_id] = stored;
    ++writes;
    return stored.version;
  }

  // What every player's slots really hold, to compare with the usage documents.
  Usage counted(const std::string& player_id) {
    std::lock_guard lock(mu_);
    Usage u;
    for (const auto& [key, s] : slots_) {
      if (s.player_id != player_id) continue;
      ++u.slot_count;
      u.total_bytes += s.size_bytes;
    }
    return u;
  }

  int writes = 0;  // committed writes, under mu_

 private:
  void check_usage(const std::string& player_id, const Usage& before) {
    auto it = usage_.find(player_id);
    const int64_t current = it == usage_.end() ? 0 : it->second.version;
    if (current != before.version) throw WriteConflict("usage version moved");
  }
  void put_usage(const std::string& player_id, Usage after) {
    auto it = usage_.find(player_id);
    after.version = (it == usage_.end() ? 0 : it->second.version) + 1;
    usage_[player_id] = after;
  }

  std::mutex mu_;
  std::map<std::string, Profile> profiles_;
  std::map<std::string, NameEntry> names_;
  std::map<std::string, NameEntry> index_;  // by search key
  std::map<std::string, Slot> slots_;
  std::map<std::string, Usage> usage_;
  std::map<std::string, StatSheet> stats_;
};

// Write counts whose windows follow the test's clock.
class InMemoryWriteCounter : public WriteCounter {
 public:
  explicit InMemoryWriteCounter(std::function<int64_t()> now) : now_(std::move(now)) {}
  int64_t add(const std::string& player_id, int64_t window_ms) override {
    std::lock_guard lock(mu_);
    auto& [start, count] = windows_[player_id];
    if (count == 0 || now_() - start >= window_ms) {
      start = now_();
      count = 0;
    }
    return ++count;
  }

 private:
  std::function<int64_t()> now_;
  std::mutex mu_;
  std::map<std::string, std::pair<int64_t, int64_t>> windows_;
};

}  // namespace gameverse::playerdata::testing
