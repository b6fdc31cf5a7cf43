#include "domain/chat_service.hpp"

#include <algorithm>
#include <utility>

namespace gameverse::chat {

namespace {

using Kind = ChatError::Kind;

ChatError invalid(const std::string& problem) {
  return ChatError(Kind::kInvalidArgument, problem);
}
void check(const std::string& problem) {
  if (!problem.empty()) throw invalid(problem);
}

// Thrown inside a send's change when its client_message_id was sent already.
struct AlreadySent {
  SentRecord record;
};

}  // namespace

uint64_t text_digest(const std::string& text) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash == 0 ? 1 : hash;
}

ChatService::ChatService(ChatRepository& repository, Counters& counters, ChatLimits limits, WordFilter filter,
                         ChatEnvironment environment)
    : repository_(repository),
      counters_(counters),
      limits_(limits),
      filter_(std::move(filter)),
      environment_(std::move(environment)) {}

// ---- channels and members ----

ChannelView ChatService::create_channel(const Caller& caller, std::optional<ChannelKind> kind,
                                        const std::string& name, std::optional<Retention> retention,
                                        bool retention_valid) {
  const std::string& player = caller.player_id;
  std::string id;
  if (kind == ChannelKind::kRoom) {
    check(check_identifier("name", name, 64));
    id = room_id(name);
  } else if (kind == ChannelKind::kGroup) {
    check(check_text("name", name, {256, 64, false}));
    id = group_id(environment_.new_group_id());
  } else {
    throw invalid("kind: ROOM or GROUP (a direct channel opens with OpenDirect)");
  }
  if (!retention_valid) throw invalid("retention: PERSISTENT or EPHEMERAL");
  charge_changes(player);
  check_channel_count(player);
  if (repository_.channels_owned(player, limits_.max_channels_owned_per_player) >=
      limits_.max_channels_owned_per_player) {
    throw ChatError(Kind::kResourceExhausted, "max_channels_owned_per_player (" +
                                                  std::to_string(limits_.max_channels_owned_per_player) +
                                                  ") reached: channels created stay");
  }
  Channel channel;
  channel.kind = *kind;
  channel.name = name;
  channel.retention = retention.value_or(Retention::kPersistent);
  channel.owner_id = player;
  channel.member_count = 1;
  channel.created_unix_ms = environment_.now_unix_ms();
  ChangeSet change;
  change.channels.push_back({id, channel, kCreateOnly});
  change.members.push_back({id, player, joined_member(Role::kOwner), kCreateOnly, false});
  if (!repository_.commit(change)) {
    throw ChatError(Kind::kAlreadyExists, "name: the room '" + name + "' exists; Join it");
  }
  return {id, channel, 0};
}

ChannelView ChatService::open_direct(const Caller& caller, const std::string& other) {
  const std::string& player = caller.player_id;
  check(check_identifier("player_id", other, 128));
  check(check_identifier("caller", player, 128));
  if (other == player) throw invalid("player_id: a direct channel is with another player");
  if (repository_.blocked(player, other) || repository_.blocked(other, player)) {
    throw ChatError(Kind::kPermissionDenied, "one of the two players blocked the other");
  }
  const std::string id = direct_id(player, other);
  if (auto existing = repository_.channel(id)) return view(id, existing->value);
  charge_changes(player);
  check_channel_count(player);
  Channel channel;
  channel.kind = ChannelKind::kDirect;
  channel.retention = Retention::kPersistent;
  channel.owner_id = player;
  channel.member_count = 2;
  channel.created_unix_ms = environment_.now_unix_ms();
  ChangeSet change;
  change.channels.push_back({id, channel, kCreateOnly});
  change.members.push_back({id, player, joined_member(Role::kMember), kAnyVersion, false});
  Member invited = joined_member(Role::kMember);
  invited.added_by_other = true;  // the other player's own quota is theirs
  change.members.push_back({id, other, invited, kAnyVersion, false});
  if (!repository_.commit(change)) {
    auto existing = repository_.channel(id);  // the other opened it at the same time
    if (!existing) throw ChatError(Kind::kAborted, "opening " + id + " met a concurrent change; retry");
    channel = existing->value;
  }
  return view(id, channel);
}

ChannelView ChatService::get_channel(const Caller& caller, const std::string& channel_id) {
  auto channel = load_channel(channel_id);
  require_read(caller, channel_id, channel.value);
  return view(channel_id, channel.value);
}

ChannelView ChatService::join(const Caller& caller, const std::string& channel_id) {
  auto channel = load_channel(channel_id);
  if (channel.value.kind != ChannelKind::kRoom) {
    throw ChatError(Kind::kPermissionDenied,
                    "channel_id: only rooms are joined freely; a group's owner or moderators add members");
  }
  charge_changes(caller.player_id);
  add(channel_id, caller.player_id, false);
  return view(channel_id, load_channel(channel_id).value);
}

Member ChatService::add_member(const Caller& caller, const std::string& channel_id,
                               const std::string& player_id) {
  check(check_identifier("player_id", player_id, 128));
  auto channel = load_channel(channel_id);
  if (channel.value.kind == ChannelKind::kDirect) {
    throw ChatError(Kind::kFailedPrecondition, "channel_id: a direct channel has its two players only");
  }
  if (!may_moderate(standing(caller, channel_id, caller.player_id))) {
    throw ChatError(Kind::kPermissionDenied, "only the channel's owner or moderators add members");
  }
  if (repository_.blocked(player_id, caller.player_id)) {
    throw ChatError(Kind::kPermissionDenied, "player_id: has blocked you");
  }
  charge_changes(caller.player_id);
  return add(channel_id, player_id, player_id != caller.player_id);
}

void ChatService::leave(const Caller& caller, const std::string& channel_id) {
  const std::string& player = caller.player_id;
  auto channel = load_channel(channel_id);
  if (channel.value.kind == ChannelKind::kDirect) {
    throw ChatError(Kind::kFailedPrecondition,
                    "channel_id: a direct channel cannot be left; Block the player");
  }
  charge_changes(player);
  with_retries("leaving " + channel_id, [&] {
    auto member = repository_.member(channel_id, player);
    if (!member || !member->value.joined) return true;
    auto current = load_channel(channel_id);
    ChangeSet change;
    // The record stays while it remembers a ban or mute.
    Member m = member->value;
    m.joined = false;
    m.role = Role::kMember;
    const bool remembered = m.banned || m.muted_until_unix_ms > environment_.now_unix_ms();
    change.members.push_back({channel_id, player, m, member->version, !remembered});
    current.value.member_count = current.value.member_count > 0 ? current.value.member_count - 1 : 0;
    change.channels.push_back({channel_id, current.value, current.version});
    return repository_.commit(change);
  });
}

Page<MemberView> ChatService::list_members(const Caller& caller, const std::string& channel_id,
                                           const std::string& page_token, uint32_t page_size) {
  auto channel = load_channel(channel_id);
  require_read(caller, channel_id, channel.value);
  if (page_size > 500) throw invalid("page_size: at most 500");
  if (page_token.size() > 1024) throw invalid("page_token: not a token of this service");
  return repository_.members(channel_id, page_token, page_size == 0 ? 100 : page_size);
}

std::vector<std::string> ChatService::list_online(const Caller& caller, const std::string& channel_id,
                                                  const std::set<std::string>& here,
                                                  const std::string& this_host_id) {
  auto channel = load_channel(channel_id);
  require_read(caller, channel_id, channel.value);
  charge_reads(caller.player_id);  // each call reads every live host's presence
  std::set<std::string> online = here;
  const int64_t now = environment_.now_unix_ms();
  std::string cursor;
  for (;;) {
    auto page = repository_.presence(cursor, 1000);
    for (const auto& host : page.items) {
      if (host.host_id == this_host_id || host.expires_unix_ms < now) continue;
      auto it = host.players_by_channel.find(channel_id);
      if (it != host.players_by_channel.end()) online.insert(it->second.begin(), it->second.end());
    }
    if (page.next_cursor.empty() || online.size() >= kMaxOnlineListed) break;
    cursor = page.next_cursor;
  }
  std::vector<std::string> out;
  for (const std::string& id : online) {
    if (out.size() >= kMaxOnlineListed) break;
    out.push_back(id);
  }
  return out;
}

std::vector<ChannelView> ChatService::list_my_channels(const Caller& caller) {
  std::vector<ChannelView> out;
  for (const std::string& id :
       repository_.memberships(caller.player_id, limits_.max_channels_per_player, false)) {
    if (auto channel = repository_.channel(id)) out.push_back(view(id, channel->value));
  }
  return out;
}

// ---- messages ----

Event ChatService::send(const Caller& caller, const std::string& channel_id, const std::string& text,
                        const std::string& client_message_id) {
  const std::string& player = caller.player_id;
  check(check_text("text", text, {limits_.max_message_bytes, limits_.max_message_chars, true}));
  if (client_message_id.size() > 64) throw invalid("client_message_id: at most 64 bytes");
  if (!client_message_id.empty()) check(check_identifier("client_message_id", client_message_id, 64));
  auto channel = load_channel(channel_id);
  const std::string sent_key =
      client_message_id.empty() ? std::string() : channel_id + "/" + player + "/" + client_message_id;
  const uint64_t digest = text_digest(text);
  // A retry gets its first answer even when the sender was muted since.
  auto earlier_send = [&](const SentRecord& earlier) {
    if (earlier.text_digest != 0 && earlier.text_digest != digest) {
      throw ChatError(Kind::kAlreadyExists, "client_message_id: sent already with a different text, as seq " +
                                                std::to_string(earlier.seq));
    }
    return replay_sent(channel_id, earlier.seq);
  };
  if (!sent_key.empty()) {
    if (auto earlier = repository_.sent(sent_key)) return earlier_send(*earlier);
  }
  require_send(caller, channel_id, channel.value);
  charge_rate(player);
  Event event;
  event.type = EventType::kMessage;
  event.sender_id = player;
  event.text = filtered(text);
  event.sent_unix_ms = environment_.now_unix_ms();
  event.client_message_id = client_message_id;
  try {
    return append(channel_id, channel.value.ephemeral(), event, [&](ChangeSet& change, Event& e) {
      if (sent_key.empty()) return;
      if (auto earlier = repository_.sent(sent_key)) throw AlreadySent{*earlier};
      change.sent = ChangeSet::SentWrite{sent_key, e.seq, e.sent_unix_ms, digest};
    });
  } catch (const AlreadySent& earlier) {
    return earlier_send(earlier.record);
  }
}

Event ChatService::edit(const Caller& caller, const std::string& channel_id, uint64_t seq,
                        const std::string& text) {
  const std::string& player = caller.player_id;
  check(check_text("text", text, {limits_.max_message_bytes, limits_.max_message_chars, true}));
  if (seq == 0) throw invalid("seq: the message to edit");
  auto channel = load_channel(channel_id);
  require_send(caller, channel_id, channel.value);
  charge_rate(player);
  const std::string new_text = filtered(text);
  Event event;
  event.type = EventType::kEdit;
  event.sender_id = player;
  event.text = new_text;
  event.sent_unix_ms = environment_.now_unix_ms();
  event.target_seq = seq;
  const bool ephemeral = channel.value.ephemeral();
  return append(channel_id, ephemeral, event, [&](ChangeSet& change, Event& e) {
    auto target = editable(caller, channel_id, seq, false);
    if (target.value.edit_seqs.size() >= static_cast<size_t>(kMaxEditsPerMessage)) {
      throw ChatError(Kind::kFailedPrecondition,
                      "seq: a message is edited " + std::to_string(kMaxEditsPerMessage) + " times at most");
    }
    target.value.text = e.text;
    target.value.edited = true;
    target.value.edit_seqs.push_back(e.seq);
    change.events.push_back({channel_id, target.value, target.version, ephemeral});
  });
}

Event ChatService::erase(const Caller& caller, const std::string& channel_id, uint64_t seq) {
  const std::string& player = caller.player_id;
  if (seq == 0) throw invalid("seq: the message to delete");
  auto channel = load_channel(channel_id);
  require_read(caller, channel_id, channel.value);
  const bool moderator = may_moderate(standing(caller, channel_id, player));
  if (!moderator) charge_rate(player);
  Event event;
  event.type = EventType::kDelete;
  event.sender_id = player;
  event.sent_unix_ms = environment_.now_unix_ms();
  event.target_seq = seq;
  const bool ephemeral = channel.value.ephemeral();
  return append(channel_id, ephemeral, event, [&](ChangeSet& change, Event&) {
    auto target = editable(caller, channel_id, seq, true);
    // The text goes from the message and from each of its edits.
    for (uint64_t edit_seq : target.value.edit_seqs) {
      if (auto e = repository_.event(channel_id, edit_seq)) {
        e->value.text.clear();
        change.events.push_back({channel_id, e->value, e->version, ephemeral});
      }
    }
    target.value.text.clear();
    target.value.deleted = true;
    change.events.push_back({channel_id, target.value, target.version, ephemeral});
  });
}

HistoryPage ChatService::history(const Caller& caller, const std::string& channel_id,
                                 const std::string& cursor, Direction direction, uint32_t page_size) {
  if (page_size > kMaxPageSize) throw invalid("page_size: at most " + std::to_string(kMaxPageSize));
  const uint64_t page = page_size == 0 ? kDefaultPageSize : page_size;
  std::optional<uint64_t> at;
  if (!cursor.empty()) {
    at = decode_cursor(cursor);
    if (!at) throw invalid("cursor: not a cursor of this service");
  }
  auto channel = load_channel(channel_id);
  require_read(caller, channel_id, channel.value);
  const uint64_t head = repository_.head(channel_id).value;
  if (at && *at > head) throw invalid("cursor: ahead of the channel's newest event");
  HistoryPage out;
  uint64_t first = 0, last = 0;
  if (direction == Direction::kNewer) {
    first = at.value_or(0) + 1;
    last = std::min(head, first + page - 1);
    if (last < head) out.next_cursor = encode_cursor(last);
  } else {
    last = at.value_or(head);
    first = last > page ? last - page + 1 : 1;
    if (first > 1) out.next_cursor = encode_cursor(first - 1);
  }
  if (first > last) return out;
  out.events = repository_.events(channel_id, first, last);
  return out;
}

// ---- moderation and blocks ----

ModerationResult ChatService::moderate(const Caller& caller, const std::string& channel_id,
                                       const std::string& subject_id, std::optional<Moderation> action,
                                       int64_t mute_seconds, std::optional<Role> role) {
  const std::string& player = caller.player_id;
  check(check_identifier("player_id", subject_id, 128));
  auto channel = load_channel(channel_id);
  if (channel.value.kind == ChannelKind::kDirect) {
    throw ChatError(Kind::kFailedPrecondition,
                    "channel_id: a direct channel has no moderation; Block the player");
  }
  if (!action) throw invalid("action: MUTE, UNMUTE, KICK, BAN, UNBAN or SET_ROLE");
  if (action == Moderation::kMute && (mute_seconds < 1 || mute_seconds > 2592000)) {
    throw invalid("mute_seconds: 1 to 2592000 (30 days)");
  }
  if (action == Moderation::kSetRole && !role) throw invalid("role: MEMBER or MODERATOR");
  const Standing actor = standing(caller, channel_id, player);
  const bool sets_role = action == Moderation::kSetRole;
  if (sets_role ? !(actor.global_moderator || (actor.member && actor.role == Role::kOwner))
                : !may_moderate(actor)) {
    throw ChatError(Kind::kPermissionDenied, sets_role ? "only the channel's owner sets roles"
                                                       : "only the channel's owner or moderators moderate");
  }
  if (subject_id == player) throw invalid("player_id: moderators do not moderate themselves");
  charge_changes(player);
  ModerationResult result;
  Event event;
  event.type = EventType::kModeration;
  event.sender_id = player;
  event.sent_unix_ms = environment_.now_unix_ms();
  event.moderation = action;
  event.subject_id = subject_id;
  result.event = append(channel_id, channel.value.ephemeral(), event, [&](ChangeSet& change, Event&) {
    auto member = repository_.member(channel_id, subject_id);
    // Only a ban (kept out ahead of time, or after a kick) names a player the channel does not
    // know; anything else needs a member or a remembered ban or mute, so made-up ids leave no
    // records (bans are metered with the other changes).
    if (!member && action != Moderation::kBan) {
      throw ChatError(Kind::kNotFound, "player_id: not a member of " + channel_id);
    }
    Standing subject;
    if (member) {
      subject.member = member->value.joined;
      subject.role = member->value.role;
    }
    if (!may_moderate_member(actor, subject)) {
      throw ChatError(Kind::kPermissionDenied, "player_id: has a role as high as the moderator's");
    }
    Member m = member ? member->value : Member();
    const bool was_joined = m.joined;
    switch (*action) {
      case Moderation::kMute:
        m.muted_until_unix_ms = environment_.now_unix_ms() + mute_seconds * 1000LL;
        break;
      case Moderation::kUnmute: m.muted_until_unix_ms = 0; break;
      case Moderation::kKick:
        if (!was_joined) throw ChatError(Kind::kNotFound, "player_id: not a member");
        m.joined = false;
        break;
      case Moderation::kBan:
        m.banned = true;
        m.joined = false;
        break;
      case Moderation::kUnban: m.banned = false; break;
      case Moderation::kSetRole:
        if (!was_joined) throw ChatError(Kind::kNotFound, "player_id: not a member");
        m.role = *role == Role::kModerator ? Role::kModerator : Role::kMember;
        break;
    }
    if (!m.joined) m.role = Role::kMember;
    const int64_t version = member ? member->version : kCreateOnly;
    if (!m.joined && !m.banned && m.muted_until_unix_ms == 0) {
      if (member) change.members.push_back({channel_id, subject_id, m, version, true});
    } else {
      change.members.push_back({channel_id, subject_id, m, version, false});
    }
    if (was_joined && !m.joined) {
      auto current = load_channel(channel_id);
      current.value.member_count = current.value.member_count > 0 ? current.value.member_count - 1 : 0;
      change.channels.push_back({channel_id, current.value, current.version});
    }
    result.member = m;
  });
  return result;
}

void ChatService::block(const Caller& caller, const std::string& other) {
  const std::string& player = caller.player_id;
  check(check_identifier("player_id", other, 128));
  if (other == player) throw invalid("player_id: players do not block themselves");
  charge_changes(player);
  const size_t count = repository_.blocks(player, limits_.max_blocks_per_player);
  if (count >= limits_.max_blocks_per_player && !repository_.blocked(player, other)) {
    throw ChatError(Kind::kResourceExhausted, "max_blocks_per_player (" +
                                                  std::to_string(limits_.max_blocks_per_player) +
                                                  ") reached; unblock someone first");
  }
  repository_.block(player, other, environment_.now_unix_ms());
}

void ChatService::unblock(const Caller& caller, const std::string& other) {
  check(check_identifier("player_id", other, 128));
  charge_changes(caller.player_id);
  repository_.unblock(caller.player_id, other);
}

void ChatService::check_subscribe(const Caller& caller, const std::string& channel_id) {
  auto channel = repository_.channel(channel_id);
  if (!channel) throw ChatError(Kind::kNotFound, "channel_id: no channel '" + channel_id + "'");
  require_read(caller, channel_id, channel->value);
}

// ---- rules shared by the use cases ----

Versioned<Channel> ChatService::load_channel(const std::string& id) {
  check(check_channel_id("channel_id", id));
  auto channel = repository_.channel(id);
  if (!channel) throw ChatError(Kind::kNotFound, "channel_id: no channel '" + id + "'");
  return std::move(*channel);
}

Standing ChatService::standing(const Caller& caller, const std::string& channel, const std::string& player) {
  Standing s;
  s.global_moderator = caller.global_moderator;
  if (auto m = repository_.member(channel, player)) {
    s.member = m->value.joined;
    s.banned = m->value.banned;
    s.role = m->value.role;
    s.muted_until_unix_ms = m->value.muted_until_unix_ms;
  }
  return s;
}

// Reading a room: anyone signed in and not banned; a group or direct channel: its members.
void ChatService::require_read(const Caller& caller, const std::string& id, const Channel& channel) {
  const Standing s = standing(caller, id, caller.player_id);
  // Staff read rooms and groups; direct channels stay private unless the operator allows it.
  if (s.global_moderator && (channel.kind != ChannelKind::kDirect || limits_.staff_read_direct_channels))
    return;
  if (s.banned) throw ChatError(Kind::kPermissionDenied, "banned from " + id);
  if (channel.kind != ChannelKind::kRoom && !s.member) {
    throw ChatError(Kind::kPermissionDenied, "only members read " + id);
  }
}

void ChatService::require_send(const Caller& caller, const std::string& id, const Channel& channel) {
  const std::string& player = caller.player_id;
  const Standing s = standing(caller, id, player);
  if (s.banned) throw ChatError(Kind::kPermissionDenied, "banned from " + id);
  if (!s.member) throw ChatError(Kind::kPermissionDenied, "channel_id: Join " + id + " first");
  const int64_t now = environment_.now_unix_ms();
  if (muted(s, now)) {
    throw ChatError(
        Kind::kPermissionDenied,
        "muted in " + id + " for " + std::to_string((s.muted_until_unix_ms - now) / 1000 + 1) + " s");
  }
  if (channel.kind == ChannelKind::kDirect) {
    const std::string peer = direct_peer(id, player);
    if (repository_.blocked(player, peer) || repository_.blocked(peer, player)) {
      throw ChatError(Kind::kPermissionDenied, "one of the two players blocked the other");
    }
  }
}

void ChatService::charge_rate(const std::string& player) {
  const int64_t window = environment_.now_unix_ms() / 10000;
  const int64_t used = counters_.increment("rate/" + player + "/" + std::to_string(window), 20);
  if (used > limits_.messages_per_player_per_10s) {
    throw ChatError(Kind::kResourceExhausted, "over messages_per_player_per_10s (" +
                                                  std::to_string(limits_.messages_per_player_per_10s) +
                                                  "); retry in a few seconds");
  }
}

void ChatService::charge_changes(const std::string& player) {
  const int64_t window = environment_.now_unix_ms() / 10000;
  const int64_t used = counters_.increment("changes/" + player + "/" + std::to_string(window), 20);
  if (used > limits_.changes_per_player_per_10s) {
    throw ChatError(Kind::kResourceExhausted, "over changes_per_player_per_10s (" +
                                                  std::to_string(limits_.changes_per_player_per_10s) +
                                                  "); retry in a few seconds");
  }
}

void ChatService::charge_reads(const std::string& player) {
  const int64_t window = environment_.now_unix_ms() / 10000;
  const int64_t used = counters_.increment("reads/" + player + "/" + std::to_string(window), 20);
  if (used > limits_.reads_per_player_per_10s) {
    throw ChatError(Kind::kResourceExhausted,
                    "over reads_per_player_per_10s (" + std::to_string(limits_.reads_per_player_per_10s) +
                        ": ListOnline calls and Subscribe opens); retry in a few seconds");
  }
}

// Counts the channels the player joined or created themselves: others adding them uses none.
void ChatService::check_channel_count(const std::string& player) {
  if (repository_.memberships(player, limits_.max_channels_per_player, true).size() >=
      limits_.max_channels_per_player) {
    throw ChatError(Kind::kResourceExhausted, "max_channels_per_player (" +
                                                  std::to_string(limits_.max_channels_per_player) +
                                                  ") reached; leave a channel first");
  }
}

// Makes `player` a member; returns the membership. Idempotent for a member already.
Member ChatService::add(const std::string& channel_id, const std::string& player, bool added_by_other) {
  Member out;
  bool counted = false;
  with_retries("joining " + channel_id, [&] {
    auto member = repository_.member(channel_id, player);
    if (member && member->value.banned) throw ChatError(Kind::kPermissionDenied, "banned from " + channel_id);
    if (member && member->value.joined) {
      out = member->value;
      return true;
    }
    if (!counted && !added_by_other) {
      check_channel_count(player);
      counted = true;
    }
    auto channel = load_channel(channel_id);
    if (channel.value.member_count >= limits_.max_members_per_channel) {
      throw ChatError(
          Kind::kResourceExhausted,
          "max_members_per_channel (" + std::to_string(limits_.max_members_per_channel) + ") reached");
    }
    Member m = member ? member->value : Member();
    m.role = Role::kMember;
    m.joined = true;
    m.joined_unix_ms = environment_.now_unix_ms();
    m.added_by_other = added_by_other;
    channel.value.member_count += 1;
    ChangeSet change;
    change.members.push_back({channel_id, player, m, member ? member->version : kCreateOnly, false});
    change.channels.push_back({channel_id, channel.value, channel.version});
    if (!repository_.commit(change)) return false;
    out = m;
    return true;
  });
  return out;
}

Versioned<Event> ChatService::editable(const Caller& caller, const std::string& channel, uint64_t seq,
                                       bool deleting) {
  auto target = repository_.event(channel, seq);
  if (!target || target->value.type != EventType::kMessage) {
    throw ChatError(Kind::kNotFound, "seq: no message " + std::to_string(seq) + " in " + channel);
  }
  if (target->value.deleted) {
    throw ChatError(Kind::kFailedPrecondition, "seq: message " + std::to_string(seq) + " was deleted");
  }
  const std::string& author = target->value.sender_id;
  if (author == caller.player_id) return std::move(*target);
  if (!deleting) {
    // An edit keeps the author's name on the text: nobody rewrites another player's words.
    throw ChatError(Kind::kPermissionDenied, "seq: only its author edits a message; moderators delete it");
  }
  if (!may_moderate_member(standing(caller, channel, caller.player_id),
                           standing({author, false}, channel, author))) {
    throw ChatError(Kind::kPermissionDenied,
                    "seq: only its author, or a moderator above the author's role, deletes a message");
  }
  return std::move(*target);
}

Event ChatService::replay_sent(const std::string& channel, uint64_t seq) {
  auto event = repository_.event(channel, seq);
  if (!event) {
    throw ChatError(Kind::kAlreadyExists, "client_message_id: sent already, as seq " + std::to_string(seq));
  }
  return event->value;
}

std::string ChatService::filtered(const std::string& text) {
  WordFilter::Result result = filter_.apply(text);
  if (result.rejected) throw invalid("text: contains a filtered word ('" + result.word + "')");
  return std::move(result.text);
}

Member ChatService::joined_member(Role role) const {
  Member m;
  m.role = role;
  m.joined = true;
  m.joined_unix_ms = environment_.now_unix_ms();
  return m;
}

void ChatService::with_retries(const std::string& what, const std::function<bool()>& attempt) {
  for (int tries = 0;; ++tries) {
    if (attempt()) return;
    if (tries >= limits_.max_conflict_retries) {
      throw ChatError(Kind::kAborted,
                      what + " met " + std::to_string(tries + 1) + " concurrent changes; retry");
    }
    if (environment_.back_off) environment_.back_off(tries);
  }
}

Event ChatService::append(const std::string& channel, bool ephemeral, Event event,
                          const std::function<void(ChangeSet&, Event&)>& build) {
  Event stored;
  with_retries("a message to " + channel, [&] {
    const auto head = repository_.head(channel);
    stored = event;
    stored.seq = head.value + 1;
    ChangeSet change;
    change.head = ChangeSet::HeadWrite{channel, stored.seq, head.version};
    if (build) build(change, stored);
    change.events.push_back({channel, stored, kCreateOnly, ephemeral});
    return repository_.commit(change);
  });
  return stored;
}

ChannelView ChatService::view(const std::string& id, const Channel& channel) {
  return {id, channel, repository_.head(id).value};
}

}  // namespace gameverse::chat
