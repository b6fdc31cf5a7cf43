// The chat's records in the host's document store: channels, per-channel heads and events,
// members, blocks, send idempotency and per-host presence; and its rate counters in the host's
// cache. A change is one atomic batch; a conflict is reported, not retried, here.
#pragma once

#include <gameverse/sdk/store.hpp>

#include <mutex>
#include <string>

#include "domain/repositories.hpp"

namespace gameverse::chat {

// The store collections the chat declares.
inline constexpr const char* kCollections[] = {"channels", "heads", "events",  "members",
                                               "blocks",   "sent",  "presence"};

class StoreRepository final : public ChatRepository {
 public:
  explicit StoreRepository(sdk::Store store) : store_(store) {}

  std::optional<Versioned<Channel>> channel(const std::string& id) override;
  std::optional<Versioned<Member>> member(const std::string& channel, const std::string& player) override;
  Versioned<uint64_t> head(const std::string& channel) override;
  std::optional<Versioned<Event>> event(const std::string& channel, uint64_t seq) override;
  std::vector<Event> events(const std::string& channel, uint64_t first, uint64_t last) override;
  std::optional<SentRecord> sent(const std::string& key) override;
  bool commit(const ChangeSet& changes) override;
  std::vector<std::string> memberships(const std::string& player, size_t stop_after, bool own_only) override;
  size_t channels_owned(const std::string& player, size_t stop_after) override;
  Page<MemberView> members(const std::string& channel, const std::string& cursor, uint32_t limit) override;
  bool blocked(const std::string& player, const std::string& other) override;
  size_t blocks(const std::string& player, size_t stop_after) override;
  void block(const std::string& player, const std::string& other, int64_t since_unix_ms) override;
  void unblock(const std::string& player, const std::string& other) override;
  Page<HostPresence> presence(const std::string& cursor, uint32_t limit) override;

  // Writes who holds a stream on this host (one document per host).
  void write_presence(const HostPresence& presence);
  // Drops ephemeral events older than `ephemeral_retention_ms`, send ids older than
  // `send_id_retention_ms`, and presence of hosts silent for a minute past their expiry. Each run
  // reads a bounded number of keys per collection and the next run goes on from there, so every key
  // is reached however many there are.
  void sweep(int64_t now_unix_ms, int64_t ephemeral_retention_ms, int64_t send_id_retention_ms);

 private:
  sdk::Store store_;
  std::mutex sweep_mu_;
  std::string events_sweep_cursor_, sent_sweep_cursor_;  // where the last run stopped; empty: the start
};

class CacheCounters final : public Counters {
 public:
  explicit CacheCounters(sdk::Cache cache) : cache_(cache) {}
  int64_t increment(const std::string& key, int64_t ttl_seconds) override;

 private:
  sdk::Cache cache_;
};

}  // namespace gameverse::chat
