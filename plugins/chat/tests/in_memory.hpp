// The chat's repository and counters in memory, for the domain tests: the same conflict rules as
// the store (versions, create-only keys, all of a change or none of it), no host.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <utility>

#include "domain/repositories.hpp"

namespace gameverse::chat::testing {

class InMemoryRepository final : public ChatRepository {
 public:
  std::optional<Versioned<Channel>> channel(const std::string& id) override { return find(channels_, id); }
  std::optional<Versioned<Member>> member(const std::string& channel, const std::string& player) override {
    return find(members_, {channel, player});
  }
  Versioned<uint64_t> head(const std::string& channel) override {
    auto it = heads_.find(channel);
    return it == heads_.end() ? Versioned<uint64_t>{0, kCreateOnly} : it->second;
  }
  std::optional<Versioned<Event>> event(const std::string& channel, uint64_t seq) override {
    return find(events_, {channel, seq});
  }
  std::vector<Event> events(const std::string& channel, uint64_t first, uint64_t last) override {
    std::vector<Event> out;
    for (auto it = events_.lower_bound({channel, first}); it != events_.end(); ++it) {
      if (it->first.first != channel || it->first.second > last) break;
      out.push_back(it->second.value);
    }
    return out;
  }
  std::optional<SentRecord> sent(const std::string& key) override {
    auto it = sent_.find(key);
    if (it == sent_.end()) return std::nullopt;
    return it->second;
  }

  bool commit(const ChangeSet& c) override {
    ++commits;
    if (conflicts_to_simulate > 0) {
      --conflicts_to_simulate;
      if (before_conflict) before_conflict();  // e.g. another writer takes the head meanwhile
      return false;
    }
    if (c.head && !fits(heads_, c.head->channel_id, c.head->expected_version)) return false;
    for (const auto& w : c.channels) {
      if (!fits(channels_, w.channel_id, w.expected_version)) return false;
    }
    for (const auto& w : c.members) {
      if (!fits(members_, {w.channel_id, w.player_id}, w.expected_version)) return false;
    }
    for (const auto& w : c.events) {
      if (!fits(events_, {w.channel_id, w.event.seq}, w.expected_version)) return false;
    }
    if (c.sent && sent_.contains(c.sent->key)) return false;
    if (c.head) store(heads_, c.head->channel_id, c.head->seq);
    for (const auto& w : c.channels) store(channels_, w.channel_id, w.channel);
    for (const auto& w : c.members) {
      if (w.erase) {
        members_.erase({w.channel_id, w.player_id});
      } else {
        store(members_, {w.channel_id, w.player_id}, w.member);
      }
    }
    for (const auto& w : c.events) store(events_, {w.channel_id, w.event.seq}, w.event);
    if (c.sent) sent_[c.sent->key] = SentRecord{c.sent->seq, c.sent->text_digest};
    return true;
  }

  std::vector<std::string> memberships(const std::string& player, size_t, bool own_only) override {
    std::vector<std::string> out;
    for (const auto& [key, m] : members_) {
      if (key.second == player && m.value.joined && !(own_only && m.value.added_by_other)) {
        out.push_back(key.first);
      }
    }
    return out;
  }
  size_t channels_owned(const std::string& player, size_t) override {
    size_t n = 0;
    for (const auto& [id, c] : channels_) n += c.value.owner_id == player;
    return n;
  }
  Page<MemberView> members(const std::string& channel, const std::string& cursor, uint32_t limit) override {
    Page<MemberView> out;
    for (auto it = members_.upper_bound({channel, cursor}); it != members_.end(); ++it) {
      if (it->first.first != channel) break;
      if (out.items.size() == limit) {
        out.next_cursor = out.items.back().player_id;
        break;
      }
      out.items.push_back({it->first.second, it->second.value});
    }
    return out;
  }
  bool blocked(const std::string& player, const std::string& other) override {
    return blocks_.contains({player, other});
  }
  size_t blocks(const std::string& player, size_t) override {
    size_t n = 0;
    for (const auto& b : blocks_) n += b.first == player;
    return n;
  }
  void block(const std::string& player, const std::string& other, int64_t) override {
    blocks_.insert({player, other});
  }
  void unblock(const std::string& player, const std::string& other) override {
    blocks_.erase({player, other});
  }
  Page<HostPresence> presence(const std::string&, uint32_t) override { return {hosts, {}}; }

  std::vector<HostPresence> hosts;
  int conflicts_to_simulate = 0;
  std::function<void()> before_conflict;
  int commits = 0;

 private:
  template <class K, class V>
  static std::optional<Versioned<V>> find(const std::map<K, Versioned<V>>& m, const K& key) {
    auto it = m.find(key);
    if (it == m.end()) return std::nullopt;
    return it->second;
  }
  template <class K, class V>
  static bool fits(const std::map<K, Versioned<V>>& m, const K& key, int64_t expected) {
    if (expected == kAnyVersion) return true;
    auto it = m.find(key);
    return (it == m.end() ? kCreateOnly : it->second.version) == expected;
  }
  template <class K, class V>
  static void store(std::map<K, Versioned<V>>& m, const K& key, const V& value) {
    auto& slot = m[key];
    slot.value = value;
    ++slot.version;
  }

  std::map<std::string, Versioned<Channel>> channels_;
  std::map<std::string, Versioned<uint64_t>> heads_;
  std::map<std::pair<std::string, std::string>, Versioned<Member>> members_;
  std::map<std::pair<std::string, uint64_t>, Versioned<Event>> events_;
  std::map<std::string, SentRecord> sent_;
  std::set<std::pair<std::string, std::string>> blocks_;
};

class InMemoryCounters final : public Counters {
 public:
  int64_t increment(const std::string& key, int64_t) override { return ++counts[key]; }
  std::map<std::string, int64_t> counts;
};

}  // namespace gameverse::chat::testing
