// The chat's records in the host's document store: channels, per-channel heads and events,
// members, blocks, send idempotency and per-host presence. Every change that gives out a seq is
// one atomic batch with the head's version, retried on conflict.
#pragma once

#include <gameverse/sdk/store.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gameverse/chat/records/v1/records.pb.h"

namespace gameverse::chat {

namespace rec = gameverse::chat::records::v1;

inline constexpr const char* kChannels = "channels";
inline constexpr const char* kHeads = "heads";
inline constexpr const char* kEvents = "events";
inline constexpr const char* kMembers = "members";
inline constexpr const char* kBlocks = "blocks";
inline constexpr const char* kSent = "sent";
inline constexpr const char* kPresence = "presence";
inline constexpr const char* kEphemeralOwner = "ephemeral";

class ChatStore {
 public:
  ChatStore(sdk::Store store, int max_conflict_retries)
      : store_(store), max_conflict_retries_(max_conflict_retries) {}

  std::optional<sdk::Record<rec::ChannelRecord>> channel(const std::string& id) const;
  std::optional<sdk::Record<rec::MemberRecord>> member(const std::string& channel,
                                                       const std::string& player) const;
  uint64_t head(const std::string& channel) const;
  std::optional<sdk::Record<rec::EventRecord>> event(const std::string& channel, uint64_t seq) const;
  bool blocked(const std::string& player, const std::string& other) const;

  // Events with seq in [first, last], in order; those swept (ephemeral) are absent.
  std::vector<rec::EventRecord> events(const std::string& channel, uint64_t first, uint64_t last) const;

  // Gives the event the next seq of `channel` and stores it, with whatever `build` adds to the
  // same batch (it may read; it runs again on a conflict). `build` returns false to give up (its
  // reason thrown by it as sdk::Error). ABORTED after max_conflict_retries conflicts.
  rec::EventRecord append(const std::string& channel, bool ephemeral, rec::EventRecord event,
                          const std::function<void(sdk::Store::Batch&, rec::EventRecord&)>& build) const;

  // Runs `attempt` until it commits without a conflict (ABORTED / ALREADY_EXISTS from the store),
  // with jittered backoff; ABORTED naming `what` after max_conflict_retries.
  void with_retries(const std::string& what, const std::function<void()>& attempt) const;

  sdk::Store& raw() { return store_; }
  const sdk::Store& raw() const { return store_; }

  static std::string member_key(const std::string& channel, const std::string& player) {
    return channel + "/" + player;
  }

 private:
  sdk::Store store_;
  int max_conflict_retries_;
};

}  // namespace gameverse::chat
