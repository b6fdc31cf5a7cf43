// The chat's use cases: channels and membership, messages with a per-channel sequence, edits and
// deletes that rewrite history, history pages, moderation, blocks and presence. Each decides who
// may do what and what is stored; the api delivers and announces what it returns. Every refusal
// is a ChatError that names the field at fault. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "domain/repositories.hpp"
#include "domain/text.hpp"

namespace gameverse::chat {

struct ChatLimits {
  size_t max_message_bytes = 4096;
  size_t max_message_chars = 1000;
  int64_t messages_per_player_per_10s = 20;
  size_t max_channels_per_player = 100;
  uint32_t max_members_per_channel = 10000;
  size_t max_blocks_per_player = 1000;
  int max_conflict_retries = 16;
  // Channel and membership changes (create, open, join, add, leave, moderate, block) per player.
  int64_t changes_per_player_per_10s = 20;
  size_t max_channels_owned_per_player = 100;  // rooms and groups a player created
  bool staff_read_direct_channels = false;     // global moderators read direct channels too
  int64_t reads_per_player_per_10s = 30;       // ListOnline calls and Subscribe opens per player
};

// A stable digest of a message's text (FNV-1a, 64 bits; never 0), kept with its client_message_id.
uint64_t text_digest(const std::string& text);

// What the service needs of the world besides storage: the time, fresh ids, a pause between retries.
struct ChatEnvironment {
  std::function<int64_t()> now_unix_ms;
  std::function<std::string()> new_group_id;
  std::function<void(int tries)> back_off;  // before retry `tries + 1` of a change that conflicted
};

struct HistoryPage {
  std::vector<Event> events;
  std::string next_cursor;  // empty on the last page
};

struct ModerationResult {
  Event event;    // the stored moderation event
  Member member;  // the subject's membership after it
};

class ChatService {
 public:
  static constexpr uint32_t kDefaultPageSize = 50;
  static constexpr uint32_t kMaxPageSize = 200;
  static constexpr int kMaxEditsPerMessage = 20;
  static constexpr size_t kMaxOnlineListed = 1000;

  ChatService(ChatRepository& repository, Counters& counters, ChatLimits limits, WordFilter filter,
              ChatEnvironment environment);

  // kind: ROOM or GROUP (nullopt: anything else); retention: nullopt when unspecified;
  // retention_valid false for a value that is neither.
  ChannelView create_channel(const Caller& caller, std::optional<ChannelKind> kind, const std::string& name,
                             std::optional<Retention> retention, bool retention_valid);
  ChannelView open_direct(const Caller& caller, const std::string& player_id);
  ChannelView get_channel(const Caller& caller, const std::string& channel_id);
  ChannelView join(const Caller& caller, const std::string& channel_id);
  Member add_member(const Caller& caller, const std::string& channel_id, const std::string& player_id);
  void leave(const Caller& caller, const std::string& channel_id);
  Page<MemberView> list_members(const Caller& caller, const std::string& channel_id,
                                const std::string& page_token, uint32_t page_size);
  // The players online in the channel: `here` (streams on this host) and every other live host's.
  std::vector<std::string> list_online(const Caller& caller, const std::string& channel_id,
                                       const std::set<std::string>& here, const std::string& this_host_id);
  std::vector<ChannelView> list_my_channels(const Caller& caller);

  Event send(const Caller& caller, const std::string& channel_id, const std::string& text,
             const std::string& client_message_id);
  Event edit(const Caller& caller, const std::string& channel_id, uint64_t seq, const std::string& text);
  Event erase(const Caller& caller, const std::string& channel_id, uint64_t seq);
  // cursor: empty for none (the newest page going older, the first going newer).
  HistoryPage history(const Caller& caller, const std::string& channel_id, const std::string& cursor,
                      Direction direction, uint32_t page_size);

  // action / role: nullopt for a value that is none of them.
  ModerationResult moderate(const Caller& caller, const std::string& channel_id, const std::string& player_id,
                            std::optional<Moderation> action, int64_t mute_seconds, std::optional<Role> role);
  void block(const Caller& caller, const std::string& player_id);
  void unblock(const Caller& caller, const std::string& player_id);

  // A Subscribe stream's access check: the channel exists and the caller may read it.
  void check_subscribe(const Caller& caller, const std::string& channel_id);
  // Meters a new Subscribe stream (reads_per_player_per_10s).
  void charge_subscribe(const std::string& player) { charge_reads(player); }
  uint64_t head(const std::string& channel_id) { return repository_.head(channel_id).value; }
  std::vector<Event> events(const std::string& channel_id, uint64_t first, uint64_t last) {
    return repository_.events(channel_id, first, last);
  }

 private:
  Versioned<Channel> load_channel(const std::string& id);
  Standing standing(const Caller& caller, const std::string& channel, const std::string& player);
  void require_read(const Caller& caller, const std::string& id, const Channel& channel);
  void require_send(const Caller& caller, const std::string& id, const Channel& channel);
  void charge_rate(const std::string& player);
  void charge_changes(const std::string& player);
  void charge_reads(const std::string& player);
  void check_channel_count(const std::string& player);
  // added_by_other: the membership is made by another player (not counted against own limit).
  Member add(const std::string& channel_id, const std::string& player, bool added_by_other);
  // The message an edit (delete: false) or delete (true) names, when `caller` may change it: its
  // author edits and deletes; a moderator who outranks the author, or global staff, deletes.
  Versioned<Event> editable(const Caller& caller, const std::string& channel, uint64_t seq, bool deleting);
  Event replay_sent(const std::string& channel, uint64_t seq);
  std::string filtered(const std::string& text);
  Member joined_member(Role role) const;
  // Runs `attempt` until its change commits (true) without a conflict; ABORTED naming `what` after
  // max_conflict_retries.
  void with_retries(const std::string& what, const std::function<bool()>& attempt);
  // Gives `event` the next seq of `channel` and stores it with what `build` adds to the same change
  // (it may read; it runs again on a conflict).
  Event append(const std::string& channel, bool ephemeral, Event event,
               const std::function<void(ChangeSet&, Event&)>& build);
  ChannelView view(const std::string& id, const Channel& channel);

  ChatRepository& repository_;
  Counters& counters_;
  ChatLimits limits_;
  WordFilter filter_;
  ChatEnvironment environment_;
};

}  // namespace gameverse::chat
