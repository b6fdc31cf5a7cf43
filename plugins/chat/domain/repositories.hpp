// What the chat's use cases need from storage and the cache; the infrastructure implements it over
// the host's store and cache, the tests in memory.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "domain/model.hpp"

namespace gameverse::chat {

// Versions as the store has them: an exact version, or one of these.
inline constexpr int64_t kCreateOnly = 0;
inline constexpr int64_t kAnyVersion = -1;

template <class T>
struct Versioned {
  T value;
  int64_t version = 0;
};

template <class T>
struct Page {
  std::vector<T> items;
  std::string next_cursor;  // empty on the last page
};

// Everything one change writes, applied all together or not at all.
struct ChangeSet {
  struct HeadWrite {
    std::string channel_id;
    uint64_t seq = 0;
    int64_t expected_version = kCreateOnly;
  };
  struct ChannelWrite {
    std::string channel_id;
    Channel channel;
    int64_t expected_version = kCreateOnly;
  };
  struct MemberWrite {
    std::string channel_id;
    std::string player_id;
    Member member;
    int64_t expected_version = kCreateOnly;
    bool erase = false;  // the record goes (at expected_version)
  };
  struct EventWrite {
    std::string channel_id;
    Event event;
    int64_t expected_version = kCreateOnly;
    bool ephemeral = false;  // swept after the ephemeral retention
  };
  struct SentWrite {  // a send's idempotency record, created only
    std::string key;
    uint64_t seq = 0;
    int64_t sent_unix_ms = 0;
    uint64_t text_digest = 0;
  };
  std::optional<HeadWrite> head;
  std::vector<ChannelWrite> channels;
  std::vector<MemberWrite> members;
  std::vector<EventWrite> events;
  std::optional<SentWrite> sent;
};

// What a send with a client_message_id stored: its seq, and a digest of the text it sent (0: not
// recorded) so that a different text under the same id is refused rather than answered.
struct SentRecord {
  uint64_t seq = 0;
  uint64_t text_digest = 0;
};

// Who holds a Subscribe stream on one host, until when that holds.
struct HostPresence {
  std::string host_id;
  int64_t expires_unix_ms = 0;
  std::map<std::string, std::set<std::string>> players_by_channel;
};

class ChatRepository {
 public:
  virtual ~ChatRepository() = default;
  virtual std::optional<Versioned<Channel>> channel(const std::string& id) = 0;
  virtual std::optional<Versioned<Member>> member(const std::string& channel, const std::string& player) = 0;
  // The channel's last seq given out (0: none) and the head's version (kCreateOnly: no head yet).
  virtual Versioned<uint64_t> head(const std::string& channel) = 0;
  virtual std::optional<Versioned<Event>> event(const std::string& channel, uint64_t seq) = 0;
  // Events with seq in [first, last], in order; those swept (ephemeral) are absent.
  virtual std::vector<Event> events(const std::string& channel, uint64_t first, uint64_t last) = 0;
  // The seq a send with this idempotency key was given.
  virtual std::optional<SentRecord> sent(const std::string& key) = 0;
  // false on a conflict (a version moved on, a create-only key exists): nothing was written.
  virtual bool commit(const ChangeSet& changes) = 0;

  // The channels `player` has joined (own_only: only those the player joined or created, not those
  // another player added them to); stops listing once more than `stop_after` are found.
  virtual std::vector<std::string> memberships(const std::string& player, size_t stop_after,
                                               bool own_only) = 0;
  // How many channels `player` created (owns); stops counting once more than `stop_after` are found.
  virtual size_t channels_owned(const std::string& player, size_t stop_after) = 0;
  virtual Page<MemberView> members(const std::string& channel, const std::string& cursor, uint32_t limit) = 0;

  virtual bool blocked(const std::string& player, const std::string& other) = 0;
  // How many players `player` blocks; stops counting once more than `stop_after` are found.
  virtual size_t blocks(const std::string& player, size_t stop_after) = 0;
  virtual void block(const std::string& player, const std::string& other, int64_t since_unix_ms) = 0;
  virtual void unblock(const std::string& player, const std::string& other) = 0;

  // Every host's presence, a page at a time.
  virtual Page<HostPresence> presence(const std::string& cursor, uint32_t limit) = 0;
};

// Counters that expire: the rate limits.
class Counters {
 public:
  virtual ~Counters() = default;
  // Adds one to `key` (created with `ttl_seconds`) and returns the new count.
  virtual int64_t increment(const std::string& key, int64_t ttl_seconds) = 0;
};

}  // namespace gameverse::chat
