// The chat's entities as its use cases see them: channels, memberships, events, and the refusals
// its rules make. Plain C++: no SDK, no protobuf. Enum values are those of gameverse.chat.v1, which
// the stored records also carry.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <gameverse/domain_error.hpp>

#include "domain/channel.hpp"

namespace gameverse::chat {

// A refusal with the status it maps to and a message that names what is wrong.
using ChatError = gameverse::DomainError;

enum class Retention { kPersistent = 1, kEphemeral = 2 };
enum class EventType { kMessage = 1, kEdit = 2, kDelete = 3, kModeration = 4, kCaughtUp = 5 };
enum class Moderation { kMute = 1, kUnmute = 2, kKick = 3, kBan = 4, kUnban = 5, kSetRole = 6 };
enum class Direction { kOlder = 1, kNewer = 2 };

struct Channel {
  ChannelKind kind = ChannelKind::kRoom;
  std::string name;
  Retention retention = Retention::kPersistent;
  std::string owner_id;
  uint32_t member_count = 0;
  int64_t created_unix_ms = 0;
  bool ephemeral() const { return retention == Retention::kEphemeral; }
};

// A channel with its id and the seq of its newest event.
struct ChannelView {
  std::string id;
  Channel channel;
  uint64_t head = 0;
};

// A player's membership; kept after leaving while it remembers a ban or a mute.
struct Member {
  Role role = Role::kMember;
  int64_t muted_until_unix_ms = 0;
  bool banned = false;
  bool joined = false;  // false: only a ban (or mute) is remembered
  int64_t joined_unix_ms = 0;
  // Made a member by another player (AddMember, OpenDirect): not counted against the player's own
  // max_channels_per_player, so others cannot use up a player's quota.
  bool added_by_other = false;
};

struct MemberView {
  std::string player_id;
  Member member;
};

struct Event {
  uint64_t seq = 0;
  EventType type = EventType::kMessage;
  std::string sender_id;
  std::string text;
  int64_t sent_unix_ms = 0;
  uint64_t target_seq = 0;
  bool edited = false;
  bool deleted = false;
  std::optional<Moderation> moderation;
  std::string subject_id;
  std::vector<uint64_t> edit_seqs;  // a message's edits, whose text goes when it is deleted
  std::string client_message_id;
};

// Who calls: the signed-in player and whether their token carries a global moderator role.
struct Caller {
  std::string player_id;
  bool global_moderator = false;
};

}  // namespace gameverse::chat
