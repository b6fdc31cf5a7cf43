// Channels, members and events as the chat's rules see them, the ids and cursors that name
// them, and who may do what. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gameverse::chat {

enum class ChannelKind { kRoom = 1, kGroup = 2, kDirect = 3 };
enum class Role { kMember = 1, kModerator = 2, kOwner = 3 };

// "room:<name>", "group:<id>", "dm:<a>:<b>" (a < b): the kind is in the id.
std::optional<ChannelKind> kind_of(std::string_view channel_id);
std::string room_id(std::string_view name);
std::string group_id(std::string_view random_id);
std::string direct_id(std::string_view a, std::string_view b);
// The other player of a direct channel, or empty when `player` is not one of its two.
std::string direct_peer(std::string_view channel_id, std::string_view player);
// Empty when `channel_id` is well formed, else what is wrong (naming the field).
std::string check_channel_id(std::string_view field, std::string_view channel_id);

// An opaque cursor naming a place in a channel's sequence: after event `seq` (0: before the first).
std::string encode_cursor(uint64_t seq);
// nullopt for a cursor this service did not make.
std::optional<uint64_t> decode_cursor(std::string_view cursor);

// The store key of event `seq` of a channel: ordered by seq within the channel.
std::string event_key(std::string_view channel_id, uint64_t seq);
// The key prefix shared by events [first, first + 100) when first is a multiple of 100: a page of
// events is at most two listings.
std::string event_block_prefix(std::string_view channel_id, uint64_t first);
std::optional<uint64_t> seq_of_event_key(std::string_view key);

// What a caller may do in a channel, from their membership and their global roles.
struct Standing {
  bool member = false;
  bool banned = false;
  Role role = Role::kMember;
  int64_t muted_until_unix_ms = 0;
  bool global_moderator = false;  // the token's "moderator" or "admin" role
};

bool may_moderate(const Standing& actor);
// A moderator acts on members below their own role; a global moderator on anyone.
bool may_moderate_member(const Standing& actor, const Standing& subject);
bool muted(const Standing& s, int64_t now_unix_ms);

}  // namespace gameverse::chat
