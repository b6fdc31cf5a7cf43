// gameverse.chat.v1.Chat: channels, messages with a per-channel sequence, history, moderation,
// presence, and Subscribe streams fed live on every host through pub/sub, refilled from the store
// on a gap, and moved across a reload of the plugin.
#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "domain/channel.hpp"
#include "domain/reorder.hpp"
#include "domain/text.hpp"
#include "gameverse/chat/records/v1/records.pb.h"
#include "gameverse/chat/v1/chat.pb.h"
#include "infrastructure/chat_store.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::chat::v1;
namespace rec = gameverse::chat::records::v1;
using namespace gameverse::chat;

// Every stored event is announced here, as a serialized ChatEvent, to the subscribers on every host.
constexpr const char* kEventsTopic = "gameverse.chat.v1.events";
constexpr uint32_t kDefaultPageSize = 50;
constexpr uint32_t kMaxPageSize = 200;
constexpr uint32_t kReplayPage = 200;
constexpr int kMaxEditsPerMessage = 20;
constexpr int64_t kSendIdRetentionMs = 10 * 60 * 1000;
constexpr size_t kMaxOnlineListed = 1000;
// Events held while an earlier seq is missing; past this the gap is read from the store at once.
constexpr size_t kMaxPending = 256;
// How long a replay waits for a client that takes nothing before it ends the stream.
constexpr std::chrono::milliseconds kReplayStallLimit(10000);
// Announcements waiting for a feed's drain at most; beyond, they are read from the store.
constexpr size_t kMaxInbox = 100000;

std::string random_hex(int bytes) {
  std::random_device random;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    const unsigned v = random() & 0xFF;
    out += kHex[v >> 4];
    out += kHex[v & 15];
  }
  return out;
}

sdk::Error invalid(const std::string& problem) {
  return sdk::Error(sdk::StatusCode::kInvalidArgument, problem);
}
void check(const std::string& problem) {
  if (!problem.empty()) throw invalid(problem);
}

// A message serialized once per channel and written as it is to every subscriber: what the SDK's
// stream needs of a message, over bytes that are already a ChatEvent.
struct Serialized {
  std::string_view bytes;
  size_t ByteSizeLong() const { return bytes.size(); }
  uint8_t* SerializeWithCachedSizesToArray(uint8_t* out) const {
    std::memcpy(out, bytes.data(), bytes.size());
    return out + bytes.size();
  }
  bool SerializeToString(std::string* out) const {
    out->assign(bytes);
    return true;
  }
};
using EventStream = sdk::ServerStream<Serialized>;

// A serialized ChatEvent as an element of SubscribeResponse.events (field 1, length-delimited):
// a response is its events' frames one after another, so any run of them is a response too.
std::string framed(std::string_view event) {
  std::string out;
  out.reserve(event.size() + 6);
  out += '\x0A';
  for (size_t n = event.size();; n >>= 7) {
    if (n < 0x80) {
      out += static_cast<char>(n);
      break;
    }
    out += static_cast<char>((n & 0x7F) | 0x80);
  }
  out += event;
  return out;
}

// Events in seq order, framed once, for every subscriber: each gets the part after its place.
struct Batch {
  std::string bytes;
  std::vector<uint64_t> seqs;
  std::vector<size_t> offsets;
  void add(uint64_t seq, std::string_view frame) {
    seqs.push_back(seq);
    offsets.push_back(bytes.size());
    bytes += frame;
  }
  bool empty() const { return seqs.empty(); }
  uint64_t last() const { return seqs.back(); }
  size_t first_after(uint64_t position) const {
    return static_cast<size_t>(std::upper_bound(seqs.begin(), seqs.end(), position) - seqs.begin());
  }
  size_t end_of(size_t index) const { return index + 1 < offsets.size() ? offsets[index + 1] : bytes.size(); }

  // Writes events [from, end) in responses of at most max_bytes each (a larger event goes alone),
  // sliced from the same bytes. Returns how many it wrote before a write failed.
  size_t write_from(const EventStream& stream, size_t from, size_t max_bytes) const {
    size_t start = from;
    while (start < seqs.size()) {
      size_t end = start + 1;
      while (end < seqs.size() && end_of(end) - offsets[start] <= max_bytes) ++end;
      const std::string_view part =
          std::string_view(bytes).substr(offsets[start], end_of(end - 1) - offsets[start]);
      if (!stream.write(Serialized{part})) break;
      start = end;
    }
    return start - from;
  }
};

pb::ChatEvent to_pb(const std::string& channel, const rec::EventRecord& e) {
  pb::ChatEvent out;
  out.set_channel_id(channel);
  out.set_seq(e.seq());
  out.set_type(static_cast<pb::EventType>(e.type()));
  out.set_sender_id(e.sender_id());
  out.set_text(e.text());
  out.set_sent_unix_ms(e.sent_unix_ms());
  out.set_target_seq(e.target_seq());
  out.set_edited(e.edited());
  out.set_deleted(e.deleted());
  out.set_moderation(static_cast<pb::ModerationAction>(e.moderation()));
  out.set_subject_id(e.subject_id());
  out.set_cursor(encode_cursor(e.seq()));
  out.set_client_message_id(e.client_message_id());
  return out;
}

pb::Channel channel_pb(const std::string& id, const rec::ChannelRecord& c, uint64_t head) {
  pb::Channel out;
  out.set_id(id);
  out.set_kind(static_cast<pb::ChannelKind>(c.kind()));
  out.set_name(c.name());
  out.set_retention(static_cast<pb::Retention>(c.retention()));
  out.set_owner_id(c.owner_id());
  out.set_member_count(c.member_count());
  out.set_created_unix_ms(c.created_unix_ms());
  out.set_head_cursor(encode_cursor(head));
  return out;
}

pb::Member member_pb(const std::string& player, const rec::MemberRecord& m) {
  pb::Member out;
  out.set_player_id(player);
  out.set_role(static_cast<pb::Role>(m.role()));
  out.set_muted_until_unix_ms(m.muted_until_unix_ms());
  out.set_banned(m.banned());
  out.set_joined_unix_ms(m.joined_unix_ms());
  return out;
}

// One Subscribe stream.
struct Subscriber {
  Subscriber(EventStream s, std::string c, std::string p, std::string a)
      : stream(std::move(s)), channel(std::move(c)), player(std::move(p)), address(std::move(a)) {}
  EventStream stream;
  const std::string channel, player, address;
  std::mutex mu;
  uint64_t position = 0;  // the last seq sent, or the cursor it started after
  bool live = false;      // replay over: the channel's feed delivers to it
  bool ended = false;     // finished or detached: nothing more is written
  bool caught_up_sent = false;
};

// The live side of one channel on this host: events delivered in seq order to its live subscribers.
struct Feed {
  explicit Feed(std::string c) : channel(std::move(c)) {}
  const std::string channel;
  std::mutex fill_mu;  // one deliverer at a time: pub/sub, a sender here, the head check
  bool initialized = false;
  Reorder<std::string> pending;  // framed events ahead of a missing seq (under fill_mu)
  std::mutex inbox_mu;
  std::vector<std::pair<uint64_t, std::string>> inbox;  // announced, not yet drained
  bool draining = false;                                // a drain is queued or running
  std::mutex mu;                                        // delivered and subscribers
  uint64_t delivered = 0;                               // every seq up to here went to the live subscribers
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  size_t users = 0;  // subscribers live or replaying (under the plugin's feeds_mu_)
};

class ChatPlugin;

class SubscriberSession final : public sdk::StreamSession {
 public:
  SubscriberSession(ChatPlugin& plugin, std::shared_ptr<Subscriber> s)
      : plugin_(plugin), sub_(std::move(s)) {}
  std::string detach() override;
  void on_cancel() override;

 private:
  ChatPlugin& plugin_;
  std::shared_ptr<Subscriber> sub_;
};

// Thrown inside a send's batch when its client_message_id was sent already.
struct AlreadySent {
  uint64_t seq;
};

class ChatPlugin final : public sdk::Plugin {
 public:
  explicit ChatPlugin(sdk::InitContext& init)
      : host_(init.host),
        store_(init.host.store(), static_cast<int>(init.host.config_int("max_conflict_retries"))),
        max_message_bytes_(static_cast<size_t>(init.host.config_int("max_message_bytes"))),
        max_message_chars_(static_cast<size_t>(init.host.config_int("max_message_chars"))),
        messages_per_player_per_10s_(init.host.config_int("messages_per_player_per_10s")),
        max_channels_per_player_(static_cast<size_t>(init.host.config_int("max_channels_per_player"))),
        max_members_per_channel_(static_cast<uint32_t>(init.host.config_int("max_members_per_channel"))),
        max_blocks_per_player_(static_cast<size_t>(init.host.config_int("max_blocks_per_player"))),
        max_subscribers_per_host_(static_cast<size_t>(init.host.config_int("max_subscribers_per_host"))),
        max_subscribers_per_player_(static_cast<size_t>(init.host.config_int("max_subscribers_per_player"))),
        max_subscribers_per_address_(
            static_cast<size_t>(init.host.config_int("max_subscribers_per_address"))),
        max_response_bytes_(static_cast<size_t>(init.host.config_int("max_response_bytes"))),
        ephemeral_retention_ms_(init.host.config_int("ephemeral_retention_s") * 1000),
        presence_heartbeat_ms_(init.host.config_int("presence_heartbeat_ms")),
        delivered_(
            init.host.counter("gameverse_chat_deliveries_total", "Events written to Subscribe streams")),
        refilled_(init.host.counter(
            "gameverse_chat_refilled_total",
            "Events a feed read from the store because their announcement did not come in order")),
        subscribers_gauge_(
            init.host.gauge("gameverse_chat_subscribers", "Subscribe streams open on this host")) {
    filter_ = make_filter(init.host);
    rec::SavedState saved;
    if (!init.previous_state.empty() &&
        saved.ParseFromArray(init.previous_state.data(), static_cast<int>(init.previous_state.size())) &&
        !saved.instance_id().empty()) {
      instance_id_ = saved.instance_id();  // the same host: the same presence document
    } else {
      instance_id_ = random_hex(16);
    }
    announcements_ = init.host.subscribe(
        kEventsTopic, [this](std::string_view, std::string_view payload) { announced(payload); },
        sdk::Run::kInline);
    const auto head_check = std::chrono::milliseconds(init.host.config_int("head_check_interval_ms"));
    head_timer_ = init.host.start_timer(
        head_check, head_check, [this] { check_heads(); }, sdk::Run::kBlocking);
    const auto presence_tick = std::chrono::milliseconds(std::min<int64_t>(presence_heartbeat_ms_, 250));
    presence_timer_ = init.host.start_timer(
        presence_tick, presence_tick, [this] { heartbeat(); }, sdk::Run::kBlocking);
    const auto sweep_every =
        std::chrono::milliseconds(std::clamp<int64_t>(ephemeral_retention_ms_ / 4, 1000, 60000));
    sweep_timer_ = init.host.start_timer(
        sweep_every, sweep_every, [this] { sweep(); }, sdk::Run::kBlocking);
  }

  ~ChatPlugin() override {
    head_timer_.cancel();
    presence_timer_.cancel();
    sweep_timer_.cancel();
    announcements_.cancel();
    std::vector<std::shared_ptr<Subscriber>> all;
    {
      std::lock_guard lock(subs_mu_);
      all.assign(subscribers_.begin(), subscribers_.end());
    }
    for (const auto& sub : all) {
      std::lock_guard lock(sub->mu);
      if (!sub->ended) {
        sub->stream.finish(sdk::Status(
            sdk::StatusCode::kUnavailable,
            "the chat service stopped; subscribe again from cursor " + encode_cursor(sub->position)));
      }
      sub->ended = true;
    }
  }

  std::string save_state() override {
    rec::SavedState saved;
    saved.set_instance_id(instance_id_);
    return saved.SerializeAsString();
  }

  static void describe(sdk::PluginBuilder<ChatPlugin>& b) {
    b.service("gameverse.chat.v1.Chat")
        .blocking("CreateChannel", &ChatPlugin::create_channel, sdk::kAuthenticated)
        .blocking("OpenDirect", &ChatPlugin::open_direct, sdk::kAuthenticated)
        .blocking("GetChannel", &ChatPlugin::get_channel, sdk::kAuthenticated)
        .blocking("Join", &ChatPlugin::join, sdk::kAuthenticated)
        .blocking("Leave", &ChatPlugin::leave, sdk::kAuthenticated)
        .blocking("AddMember", &ChatPlugin::add_member, sdk::kAuthenticated)
        .blocking("ListMembers", &ChatPlugin::list_members, sdk::kAuthenticated)
        .blocking("ListOnline", &ChatPlugin::list_online, sdk::kAuthenticated)
        .blocking("ListMyChannels", &ChatPlugin::list_my_channels, sdk::kAuthenticated)
        .blocking("Send", &ChatPlugin::send, sdk::kAuthenticated)
        .blocking("Edit", &ChatPlugin::edit, sdk::kAuthenticated)
        .blocking("Delete", &ChatPlugin::erase, sdk::kAuthenticated)
        .blocking("History", &ChatPlugin::history, sdk::kAuthenticated)
        .server_stream_movable("Subscribe", &ChatPlugin::subscribe_open, &ChatPlugin::subscribe_resume,
                               sdk::kAuthenticated)
        .blocking("Moderate", &ChatPlugin::moderate, sdk::kAuthenticated)
        .blocking("Block", &ChatPlugin::block, sdk::kAuthenticated)
        .blocking("Unblock", &ChatPlugin::unblock, sdk::kAuthenticated);
    b.collection(kChannels)
        .collection(kHeads)
        .collection(kEvents)
        .collection(kMembers)
        .collection(kBlocks)
        .collection(kSent)
        .collection(kPresence);
    b.config_int("max_message_bytes", 4096, "A message's text at most, in bytes of UTF-8",
                 sdk::between(16, 65536))
        .config_int("max_message_chars", 1000, "A message's text at most, in code points",
                    sdk::between(1, 65536))
        .config_int(
            "messages_per_player_per_10s", 20,
            "Messages, edits and deletes one player may send in 10 seconds; more are RESOURCE_EXHAUSTED",
            sdk::between(1, 1000000))
        .config_string("word_filter", "", "Words filtered from messages, comma-separated (at most 1000)")
        .config_string("word_filter_action", "mask",
                       "What a filtered word does: mask it with * or reject the message",
                       sdk::one_of({"mask", "reject"}))
        .config_int("max_channels_per_player", 100,
                    "Channels one player may be a member of (rooms, groups, direct)", sdk::between(1, 100000))
        .config_int("max_members_per_channel", 10000, "Members of one room or group at most",
                    sdk::between(2, 10000000))
        .config_int("max_blocks_per_player", 1000, "Players one player may block", sdk::between(1, 100000))
        .config_int("max_subscribers_per_host", 20000, "Subscribe streams open on this host at once",
                    sdk::between(1, 1000000))
        .config_int("max_subscribers_per_player", 8, "Subscribe streams one player may hold on this host",
                    sdk::between(1, 100000))
        .config_int("max_subscribers_per_address", 256,
                    "Subscribe streams one client address may hold on this host", sdk::between(1, 1000000))
        .config_int(
            "max_response_bytes", 262144,
            "A Subscribe response carries events up to this many bytes (one larger event goes alone); "
            "keep it within the host's [server] max_message_bytes and the clients' receive limit",
            sdk::between(1024, 67108864))
        .config_int("ephemeral_retention_s", 300,
                    "How long an ephemeral channel keeps its events: the window a reconnecting client has",
                    sdk::between(1, 86400))
        .config_int(
            "head_check_interval_ms", 1000,
            "How often each channel with subscribers here checks its head, in case an announcement was lost",
            sdk::between(10, 600000))
        .config_int(
            "presence_heartbeat_ms", 5000,
            "How often this host writes who is subscribed here; a host silent for 3 of these is offline",
            sdk::between(50, 600000))
        .config_int("max_conflict_retries", 16,
                    "Attempts at a change meeting concurrent changes to the same channel, then ABORTED",
                    sdk::between(1, 1000));
  }

  // ---- channels and members ----

  sdk::Status create_channel(sdk::CallContext& context, const pb::CreateChannelRequest& request,
                             pb::Channel& reply) {
    const std::string player = caller(context);
    rec::ChannelRecord channel;
    std::string id;
    if (request.kind() == pb::CHANNEL_KIND_ROOM) {
      check(check_identifier("name", request.name(), 64));
      id = room_id(request.name());
    } else if (request.kind() == pb::CHANNEL_KIND_GROUP) {
      check(check_text("name", request.name(), {256, 64, false}));
      id = group_id(random_hex(12));
    } else {
      throw invalid("kind: ROOM or GROUP (a direct channel opens with OpenDirect)");
    }
    if (request.retention() != pb::RETENTION_UNSPECIFIED && request.retention() != pb::RETENTION_PERSISTENT &&
        request.retention() != pb::RETENTION_EPHEMERAL) {
      throw invalid("retention: PERSISTENT or EPHEMERAL");
    }
    check_channel_count(player);
    channel.set_kind(request.kind() == pb::CHANNEL_KIND_ROOM ? static_cast<uint32_t>(ChannelKind::kRoom)
                                                             : static_cast<uint32_t>(ChannelKind::kGroup));
    channel.set_name(request.name());
    channel.set_retention(request.retention() == pb::RETENTION_EPHEMERAL ? pb::RETENTION_EPHEMERAL
                                                                         : pb::RETENTION_PERSISTENT);
    channel.set_owner_id(player);
    channel.set_member_count(1);
    channel.set_created_unix_ms(sdk::now_unix_ms());
    sdk::Store::Batch batch;
    batch.put(kChannels, id, channel, sdk::Store::kCreateOnly, player);
    batch.put(kMembers, ChatStore::member_key(id, player), joined_member(Role::kOwner),
              sdk::Store::kCreateOnly, player);
    try {
      store_.raw().commit(batch);
    } catch (const sdk::Error& e) {
      if (e.code() == sdk::StatusCode::kAlreadyExists || e.code() == sdk::StatusCode::kAborted) {
        return {sdk::StatusCode::kAlreadyExists, "name: the room '" + request.name() + "' exists; Join it"};
      }
      throw;
    }
    reply = channel_pb(id, channel, 0);
    return sdk::Status::ok();
  }

  sdk::Status open_direct(sdk::CallContext& context, const pb::OpenDirectRequest& request,
                          pb::Channel& reply) {
    const std::string player = caller(context);
    check(check_identifier("player_id", request.player_id(), 128));
    check(check_identifier("caller", player, 128));
    if (request.player_id() == player) throw invalid("player_id: a direct channel is with another player");
    if (store_.blocked(player, request.player_id()) || store_.blocked(request.player_id(), player)) {
      return {sdk::StatusCode::kPermissionDenied, "one of the two players blocked the other"};
    }
    const std::string id = direct_id(player, request.player_id());
    if (auto existing = store_.channel(id)) {
      reply = channel_pb(id, existing->value, store_.head(id));
      return sdk::Status::ok();
    }
    check_channel_count(player);
    rec::ChannelRecord channel;
    channel.set_kind(static_cast<uint32_t>(ChannelKind::kDirect));
    channel.set_retention(pb::RETENTION_PERSISTENT);
    channel.set_owner_id(player);
    channel.set_member_count(2);
    channel.set_created_unix_ms(sdk::now_unix_ms());
    sdk::Store::Batch batch;
    batch.put(kChannels, id, channel, sdk::Store::kCreateOnly, player);
    batch.put(kMembers, ChatStore::member_key(id, player), joined_member(Role::kMember),
              sdk::Store::kAnyVersion, player);
    batch.put(kMembers, ChatStore::member_key(id, request.player_id()), joined_member(Role::kMember),
              sdk::Store::kAnyVersion, request.player_id());
    try {
      store_.raw().commit(batch);
    } catch (const sdk::Error& e) {
      if (e.code() != sdk::StatusCode::kAlreadyExists && e.code() != sdk::StatusCode::kAborted) throw;
      auto existing = store_.channel(id);  // the other opened it at the same time
      if (!existing) throw;
      channel = existing->value;
    }
    reply = channel_pb(id, channel, store_.head(id));
    return sdk::Status::ok();
  }

  sdk::Status get_channel(sdk::CallContext& context, const pb::GetChannelRequest& request,
                          pb::Channel& reply) {
    const std::string player = caller(context);
    auto channel = load_channel(request.channel_id());
    require_read(context, request.channel_id(), channel.value, player);
    reply = channel_pb(request.channel_id(), channel.value, store_.head(request.channel_id()));
    return sdk::Status::ok();
  }

  sdk::Status join(sdk::CallContext& context, const pb::JoinRequest& request, pb::Channel& reply) {
    const std::string player = caller(context);
    auto channel = load_channel(request.channel_id());
    if (channel.value.kind() != static_cast<uint32_t>(ChannelKind::kRoom)) {
      return {sdk::StatusCode::kPermissionDenied,
              "channel_id: only rooms are joined freely; a group's owner or moderators add members"};
    }
    add(request.channel_id(), player);
    reply = channel_pb(request.channel_id(), load_channel(request.channel_id()).value,
                       store_.head(request.channel_id()));
    return sdk::Status::ok();
  }

  sdk::Status add_member(sdk::CallContext& context, const pb::MemberRequest& request, pb::Member& reply) {
    const std::string player = caller(context);
    check(check_identifier("player_id", request.player_id(), 128));
    auto channel = load_channel(request.channel_id());
    if (channel.value.kind() == static_cast<uint32_t>(ChannelKind::kDirect)) {
      return {sdk::StatusCode::kFailedPrecondition, "channel_id: a direct channel has its two players only"};
    }
    if (!may_moderate(standing(context, request.channel_id(), player))) {
      return {sdk::StatusCode::kPermissionDenied, "only the channel's owner or moderators add members"};
    }
    reply = member_pb(request.player_id(), add(request.channel_id(), request.player_id()));
    return sdk::Status::ok();
  }

  sdk::Status leave(sdk::CallContext& context, const pb::LeaveRequest& request, pb::LeaveResponse&) {
    const std::string player = caller(context);
    auto channel = load_channel(request.channel_id());
    if (channel.value.kind() == static_cast<uint32_t>(ChannelKind::kDirect)) {
      return {sdk::StatusCode::kFailedPrecondition,
              "channel_id: a direct channel cannot be left; Block the player"};
    }
    store_.with_retries("leaving " + request.channel_id(), [&] {
      auto member = store_.member(request.channel_id(), player);
      if (!member || !member->value.joined()) return;
      auto current = load_channel(request.channel_id());
      sdk::Store::Batch batch;
      put_departure(batch, request.channel_id(), player, *member);
      current.value.set_member_count(current.value.member_count() > 0 ? current.value.member_count() - 1 : 0);
      batch.put(kChannels, request.channel_id(), current.value, current.version, current.owner);
      store_.raw().commit(batch);
    });
    return sdk::Status::ok();
  }

  sdk::Status list_members(sdk::CallContext& context, const pb::ListMembersRequest& request,
                           pb::ListMembersResponse& reply) {
    const std::string player = caller(context);
    auto channel = load_channel(request.channel_id());
    require_read(context, request.channel_id(), channel.value, player);
    if (request.page_size() > 500) throw invalid("page_size: at most 500");
    if (request.page_token().size() > 1024) throw invalid("page_token: not a token of this service");
    sdk::Store::Query query;
    query.collection = kMembers;
    query.key_prefix = request.channel_id() + "/";
    query.cursor = request.page_token();
    query.limit = request.page_size() == 0 ? 100 : request.page_size();
    auto page = store_.raw().list<rec::MemberRecord>(query);
    for (const auto& record : page.records) {
      *reply.add_members() = member_pb(record.key.substr(query.key_prefix.size()), record.value);
    }
    reply.set_next_page_token(page.next_cursor);
    return sdk::Status::ok();
  }

  sdk::Status list_online(sdk::CallContext& context, const pb::ListOnlineRequest& request,
                          pb::ListOnlineResponse& reply) {
    const std::string player = caller(context);
    auto channel = load_channel(request.channel_id());
    require_read(context, request.channel_id(), channel.value, player);
    std::set<std::string> online = local_online(request.channel_id());
    const int64_t now = sdk::now_unix_ms();
    sdk::Store::Query query;
    query.collection = kPresence;
    query.limit = 1000;
    for (;;) {
      auto page = store_.raw().list<rec::PresenceRecord>(query);
      for (const auto& host : page.records) {
        if (host.key == instance_id_ || host.value.expires_unix_ms() < now) continue;
        for (const auto& subscribed : host.value.channels()) {
          if (subscribed.channel_id() != request.channel_id()) continue;
          online.insert(subscribed.player_ids().begin(), subscribed.player_ids().end());
        }
      }
      if (page.next_cursor.empty() || online.size() >= kMaxOnlineListed) break;
      query.cursor = page.next_cursor;
    }
    for (const std::string& id : online) {
      if (static_cast<size_t>(reply.player_ids_size()) >= kMaxOnlineListed) break;
      reply.add_player_ids(id);
    }
    return sdk::Status::ok();
  }

  sdk::Status list_my_channels(sdk::CallContext& context, const pb::ListMyChannelsRequest&,
                               pb::ListMyChannelsResponse& reply) {
    const std::string player = caller(context);
    for (const std::string& id : memberships(player)) {
      if (auto channel = store_.channel(id))
        *reply.add_channels() = channel_pb(id, channel->value, store_.head(id));
    }
    return sdk::Status::ok();
  }

  // ---- messages ----

  sdk::Status send(sdk::CallContext& context, const pb::SendRequest& request, pb::ChatEvent& reply) {
    const std::string player = caller(context);
    check(check_text("text", request.text(), {max_message_bytes_, max_message_chars_, true}));
    if (request.client_message_id().size() > 64) throw invalid("client_message_id: at most 64 bytes");
    if (!request.client_message_id().empty())
      check(check_identifier("client_message_id", request.client_message_id(), 64));
    auto channel = load_channel(request.channel_id());
    require_send(context, request.channel_id(), channel.value, player);
    const std::string sent_key = request.client_message_id().empty() ? std::string()
                                                                     : request.channel_id() + "/" + player +
                                                                           "/" + request.client_message_id();
    if (!sent_key.empty()) {
      if (auto earlier = store_.raw().get<rec::SentRecord>(kSent, sent_key)) {
        return replay_sent(request.channel_id(), earlier->value.seq(), reply);
      }
    }
    charge_rate(player);
    WordFilter::Result filtered = filter_.apply(request.text());
    if (filtered.rejected) {
      return {sdk::StatusCode::kInvalidArgument, "text: contains a filtered word ('" + filtered.word + "')"};
    }
    rec::EventRecord event;
    event.set_type(pb::EVENT_TYPE_MESSAGE);
    event.set_sender_id(player);
    event.set_text(filtered.text);
    event.set_sent_unix_ms(sdk::now_unix_ms());
    event.set_client_message_id(request.client_message_id());
    rec::EventRecord stored;
    try {
      stored = store_.append(request.channel_id(), ephemeral(channel.value), event,
                             [&](sdk::Store::Batch& batch, rec::EventRecord& e) {
                               if (sent_key.empty()) return;
                               if (auto earlier = store_.raw().get<rec::SentRecord>(kSent, sent_key)) {
                                 throw AlreadySent{earlier->value.seq()};
                               }
                               rec::SentRecord sent;
                               sent.set_seq(e.seq());
                               sent.set_sent_unix_ms(e.sent_unix_ms());
                               batch.put(kSent, sent_key, sent, sdk::Store::kCreateOnly, kSent);
                             });
    } catch (const AlreadySent& earlier) {
      return replay_sent(request.channel_id(), earlier.seq, reply);
    }
    reply = announce(request.channel_id(), stored);
    return sdk::Status::ok();
  }

  sdk::Status edit(sdk::CallContext& context, const pb::EditRequest& request, pb::ChatEvent& reply) {
    const std::string player = caller(context);
    check(check_text("text", request.text(), {max_message_bytes_, max_message_chars_, true}));
    if (request.seq() == 0) throw invalid("seq: the message to edit");
    auto channel = load_channel(request.channel_id());
    require_send(context, request.channel_id(), channel.value, player);
    charge_rate(player);
    WordFilter::Result filtered = filter_.apply(request.text());
    if (filtered.rejected) {
      return {sdk::StatusCode::kInvalidArgument, "text: contains a filtered word ('" + filtered.word + "')"};
    }
    const bool moderator = may_moderate(standing(context, request.channel_id(), player));
    rec::EventRecord event;
    event.set_type(pb::EVENT_TYPE_EDIT);
    event.set_sender_id(player);
    event.set_text(filtered.text);
    event.set_sent_unix_ms(sdk::now_unix_ms());
    event.set_target_seq(request.seq());
    const rec::EventRecord stored =
        store_.append(request.channel_id(), ephemeral(channel.value), event,
                      [&](sdk::Store::Batch& batch, rec::EventRecord& e) {
                        auto target = editable(request.channel_id(), request.seq(), player, moderator);
                        if (target.value.edit_seqs_size() >= kMaxEditsPerMessage) {
                          throw sdk::Error(sdk::StatusCode::kFailedPrecondition,
                                           "seq: a message is edited " + std::to_string(kMaxEditsPerMessage) +
                                               " times at most");
                        }
                        target.value.set_text(e.text());
                        target.value.set_edited(true);
                        target.value.add_edit_seqs(e.seq());
                        batch.put(kEvents, target.key, target.value, target.version, target.owner);
                      });
    reply = announce(request.channel_id(), stored);
    return sdk::Status::ok();
  }

  sdk::Status erase(sdk::CallContext& context, const pb::DeleteRequest& request, pb::ChatEvent& reply) {
    const std::string player = caller(context);
    if (request.seq() == 0) throw invalid("seq: the message to delete");
    auto channel = load_channel(request.channel_id());
    require_read(context, request.channel_id(), channel.value, player);
    const bool moderator = may_moderate(standing(context, request.channel_id(), player));
    if (!moderator) charge_rate(player);
    rec::EventRecord event;
    event.set_type(pb::EVENT_TYPE_DELETE);
    event.set_sender_id(player);
    event.set_sent_unix_ms(sdk::now_unix_ms());
    event.set_target_seq(request.seq());
    const rec::EventRecord stored =
        store_.append(request.channel_id(), ephemeral(channel.value), event,
                      [&](sdk::Store::Batch& batch, rec::EventRecord&) {
                        auto target = editable(request.channel_id(), request.seq(), player, moderator);
                        // The text goes from the message and from each of its edits.
                        for (uint64_t edit_seq : target.value.edit_seqs()) {
                          if (auto e = store_.event(request.channel_id(), edit_seq)) {
                            e->value.clear_text();
                            batch.put(kEvents, e->key, e->value, e->version, e->owner);
                          }
                        }
                        target.value.clear_text();
                        target.value.set_deleted(true);
                        batch.put(kEvents, target.key, target.value, target.version, target.owner);
                      });
    reply = announce(request.channel_id(), stored);
    return sdk::Status::ok();
  }

  sdk::Status history(sdk::CallContext& context, const pb::HistoryRequest& request,
                      pb::HistoryResponse& reply) {
    const std::string player = caller(context);
    if (request.page_size() > kMaxPageSize)
      throw invalid("page_size: at most " + std::to_string(kMaxPageSize));
    const uint64_t page = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
    std::optional<uint64_t> at;
    if (!request.cursor().empty()) {
      at = decode_cursor(request.cursor());
      if (!at) throw invalid("cursor: not a cursor of this service");
    }
    auto channel = load_channel(request.channel_id());
    require_read(context, request.channel_id(), channel.value, player);
    const uint64_t head = store_.head(request.channel_id());
    if (at && *at > head) throw invalid("cursor: ahead of the channel's newest event");
    uint64_t first = 0, last = 0;
    if (request.direction() == pb::DIRECTION_NEWER) {
      first = at.value_or(0) + 1;
      last = std::min(head, first + page - 1);
      if (last < head) reply.set_next_cursor(encode_cursor(last));
    } else {
      last = at.value_or(head);
      first = last > page ? last - page + 1 : 1;
      if (first > 1) reply.set_next_cursor(encode_cursor(first - 1));
    }
    if (first > last) return sdk::Status::ok();
    for (const rec::EventRecord& e : store_.events(request.channel_id(), first, last)) {
      *reply.add_events() = to_pb(request.channel_id(), e);
    }
    return sdk::Status::ok();
  }

  // ---- moderation and blocks ----

  sdk::Status moderate(sdk::CallContext& context, const pb::ModerateRequest& request, pb::Member& reply) {
    const std::string player = caller(context);
    check(check_identifier("player_id", request.player_id(), 128));
    auto channel = load_channel(request.channel_id());
    if (channel.value.kind() == static_cast<uint32_t>(ChannelKind::kDirect)) {
      return {sdk::StatusCode::kFailedPrecondition,
              "channel_id: a direct channel has no moderation; Block the player"};
    }
    const auto action = request.action();
    if (action == pb::MODERATION_ACTION_UNSPECIFIED || !pb::ModerationAction_IsValid(action)) {
      throw invalid("action: MUTE, UNMUTE, KICK, BAN, UNBAN or SET_ROLE");
    }
    if (action == pb::MODERATION_ACTION_MUTE &&
        (request.mute_seconds() < 1 || request.mute_seconds() > 2592000)) {
      throw invalid("mute_seconds: 1 to 2592000 (30 days)");
    }
    if (action == pb::MODERATION_ACTION_SET_ROLE && request.role() != pb::ROLE_MEMBER &&
        request.role() != pb::ROLE_MODERATOR) {
      throw invalid("role: MEMBER or MODERATOR");
    }
    const Standing actor = standing(context, request.channel_id(), player);
    if (action == pb::MODERATION_ACTION_SET_ROLE
            ? !(actor.global_moderator || (actor.member && actor.role == Role::kOwner))
            : !may_moderate(actor)) {
      return {sdk::StatusCode::kPermissionDenied, action == pb::MODERATION_ACTION_SET_ROLE
                                                      ? "only the channel's owner sets roles"
                                                      : "only the channel's owner or moderators moderate"};
    }
    if (request.player_id() == player) throw invalid("player_id: moderators do not moderate themselves");
    rec::MemberRecord result;
    rec::EventRecord event;
    event.set_type(pb::EVENT_TYPE_MODERATION);
    event.set_sender_id(player);
    event.set_sent_unix_ms(sdk::now_unix_ms());
    event.set_moderation(action);
    event.set_subject_id(request.player_id());
    const rec::EventRecord stored = store_.append(
        request.channel_id(), ephemeral(channel.value), event,
        [&](sdk::Store::Batch& batch, rec::EventRecord&) {
          auto member = store_.member(request.channel_id(), request.player_id());
          Standing subject;
          if (member) {
            subject.member = member->value.joined();
            subject.role = static_cast<Role>(std::max<uint32_t>(1, member->value.role()));
          }
          if (!may_moderate_member(actor, subject)) {
            throw sdk::Error(sdk::StatusCode::kPermissionDenied,
                             "player_id: has a role as high as the moderator's");
          }
          rec::MemberRecord m = member ? member->value : rec::MemberRecord();
          if (m.role() == 0) m.set_role(static_cast<uint32_t>(Role::kMember));
          const bool was_joined = m.joined();
          switch (action) {
            case pb::MODERATION_ACTION_MUTE:
              m.set_muted_until_unix_ms(sdk::now_unix_ms() + request.mute_seconds() * 1000LL);
              break;
            case pb::MODERATION_ACTION_UNMUTE: m.set_muted_until_unix_ms(0); break;
            case pb::MODERATION_ACTION_KICK:
              if (!was_joined) throw sdk::Error(sdk::StatusCode::kNotFound, "player_id: not a member");
              m.set_joined(false);
              break;
            case pb::MODERATION_ACTION_BAN:
              m.set_banned(true);
              m.set_joined(false);
              break;
            case pb::MODERATION_ACTION_UNBAN: m.set_banned(false); break;
            case pb::MODERATION_ACTION_SET_ROLE:
              if (!was_joined) throw sdk::Error(sdk::StatusCode::kNotFound, "player_id: not a member");
              m.set_role(static_cast<uint32_t>(request.role() == pb::ROLE_MODERATOR ? Role::kModerator
                                                                                    : Role::kMember));
              break;
            default: break;
          }
          if (!m.joined()) m.set_role(static_cast<uint32_t>(Role::kMember));
          const std::string key = ChatStore::member_key(request.channel_id(), request.player_id());
          const int64_t version = member ? member->version : sdk::Store::kCreateOnly;
          if (!m.joined() && !m.banned() && m.muted_until_unix_ms() == 0) {
            if (member) batch.erase(kMembers, key, version);
          } else {
            batch.put(kMembers, key, m, version, request.player_id());
          }
          if (was_joined && !m.joined()) {
            auto current = load_channel(request.channel_id());
            current.value.set_member_count(current.value.member_count() > 0 ? current.value.member_count() - 1
                                                                            : 0);
            batch.put(kChannels, request.channel_id(), current.value, current.version, current.owner);
          }
          result = m;
        });
    announce(request.channel_id(), stored);
    if (action == pb::MODERATION_ACTION_KICK || action == pb::MODERATION_ACTION_BAN) {
      end_streams_of(request.channel_id(), request.player_id());
    }
    reply = member_pb(request.player_id(), result);
    return sdk::Status::ok();
  }

  sdk::Status block(sdk::CallContext& context, const pb::BlockRequest& request, pb::BlockResponse&) {
    const std::string player = caller(context);
    check(check_identifier("player_id", request.player_id(), 128));
    if (request.player_id() == player) throw invalid("player_id: players do not block themselves");
    sdk::Store::Query query;
    query.collection = kBlocks;
    query.key_prefix = player + "/";
    query.limit = static_cast<uint32_t>(std::min<size_t>(max_blocks_per_player_ + 1, 1000));
    size_t count = 0;
    for (;;) {
      auto page = store_.raw().list(query);
      count += page.objects.size();
      if (page.next_cursor.empty() || count > max_blocks_per_player_) break;
      query.cursor = page.next_cursor;
    }
    if (count >= max_blocks_per_player_ && !store_.blocked(player, request.player_id())) {
      return {sdk::StatusCode::kResourceExhausted, "max_blocks_per_player (" +
                                                       std::to_string(max_blocks_per_player_) +
                                                       ") reached; unblock someone first"};
    }
    rec::BlockRecord record;
    record.set_since_unix_ms(sdk::now_unix_ms());
    store_.raw().put(kBlocks, player + "/" + request.player_id(), record, sdk::Store::kAnyVersion, player);
    // A direct stream between the two ends now.
    end_streams_of(direct_id(player, request.player_id()), request.player_id());
    return sdk::Status::ok();
  }

  sdk::Status unblock(sdk::CallContext& context, const pb::BlockRequest& request, pb::BlockResponse&) {
    const std::string player = caller(context);
    check(check_identifier("player_id", request.player_id(), 128));
    store_.raw().erase(kBlocks, player + "/" + request.player_id());
    return sdk::Status::ok();
  }

  // ---- Subscribe ----

  std::unique_ptr<sdk::StreamSession> subscribe_open(sdk::CallContext& context,
                                                     const pb::SubscribeRequest& request,
                                                     EventStream stream) {
    const std::string player = caller(context);
    check(check_channel_id("channel_id", request.channel_id()));
    std::optional<uint64_t> cursor;
    if (!request.cursor().empty()) {
      cursor = decode_cursor(request.cursor());
      if (!cursor) throw invalid("cursor: not a cursor of this service");
    }
    const sdk::Principal principal = context.principal();
    auto sub = std::make_shared<Subscriber>(stream, request.channel_id(), player,
                                            std::string(context.peer_address()));
    admit(sub, false);
    try {
      host_.run_blocking([this, sub, cursor, principal] { start(sub, cursor, &principal); });
    } catch (const sdk::Error& e) {
      end(sub, e.status());
    }
    return std::make_unique<SubscriberSession>(*this, sub);
  }

  std::unique_ptr<sdk::StreamSession> subscribe_resume(std::string_view detached, EventStream stream) {
    rec::DetachedSubscriber state;
    if (!state.ParseFromArray(detached.data(), static_cast<int>(detached.size()))) {
      throw sdk::Error(sdk::StatusCode::kInternal,
                       "a Subscribe stream handed over at a reload could not be read");
    }
    auto sub =
        std::make_shared<Subscriber>(stream, state.channel_id(), state.player_id(), state.peer_address());
    sub->position = state.position();
    sub->caught_up_sent = state.caught_up_sent();
    admit(sub, true);
    const uint64_t position = state.position();
    try {
      host_.run_blocking([this, sub, position] { start(sub, position, nullptr); });
    } catch (const sdk::Error& e) {
      end(sub, e.status());
    }
    return std::make_unique<SubscriberSession>(*this, sub);
  }

  std::string detach(const std::shared_ptr<Subscriber>& sub) {
    rec::DetachedSubscriber state;
    {
      std::lock_guard lock(sub->mu);
      sub->ended = true;
      state.set_channel_id(sub->channel);
      state.set_player_id(sub->player);
      state.set_position(sub->position);
      state.set_caught_up_sent(sub->caught_up_sent);
      state.set_peer_address(sub->address);
    }
    forget(sub);
    return state.SerializeAsString();
  }

  void end(const std::shared_ptr<Subscriber>& sub, const sdk::Status& status) {
    {
      std::lock_guard lock(sub->mu);
      if (!sub->ended) sub->stream.finish(status);
      sub->ended = true;
    }
    forget(sub);
  }

 private:
  static rec::MemberRecord joined_member(Role role) {
    rec::MemberRecord m;
    m.set_role(static_cast<uint32_t>(role));
    m.set_joined(true);
    m.set_joined_unix_ms(sdk::now_unix_ms());
    return m;
  }

  static WordFilter make_filter(const sdk::Host& host) {
    const std::vector<std::string> words = sdk::split_list(host.config_string("word_filter"));
    if (words.size() > 1000)
      throw sdk::Error(sdk::StatusCode::kInvalidArgument, "word_filter: at most 1000 words");
    try {
      return WordFilter(words, host.config_string("word_filter_action") == "reject" ? FilterAction::kReject
                                                                                    : FilterAction::kMask);
    } catch (const std::invalid_argument& e) {
      throw sdk::Error(sdk::StatusCode::kInvalidArgument, e.what());
    }
  }

  static std::string caller(const sdk::CallContext& context) {
    std::string player = context.principal().user_id;
    if (player.empty()) throw sdk::Error(sdk::StatusCode::kUnauthenticated, "chat needs a signed-in player");
    return player;
  }

  static bool global_moderator(const sdk::Principal& p) {
    return sdk::meets_role(p, "moderator") || sdk::has_role(p, "admin");
  }

  static bool ephemeral(const rec::ChannelRecord& c) { return c.retention() == pb::RETENTION_EPHEMERAL; }

  sdk::Record<rec::ChannelRecord> load_channel(const std::string& id) const {
    check(check_channel_id("channel_id", id));
    auto channel = store_.channel(id);
    if (!channel) throw sdk::Error(sdk::StatusCode::kNotFound, "channel_id: no channel '" + id + "'");
    return std::move(*channel);
  }

  Standing standing_of(const sdk::Principal& principal, const std::string& channel,
                       const std::string& player) const {
    Standing s;
    s.global_moderator = global_moderator(principal);
    if (auto m = store_.member(channel, player)) {
      s.member = m->value.joined();
      s.banned = m->value.banned();
      s.role = static_cast<Role>(std::max<uint32_t>(1, m->value.role()));
      s.muted_until_unix_ms = m->value.muted_until_unix_ms();
    }
    return s;
  }
  Standing standing(const sdk::CallContext& context, const std::string& channel,
                    const std::string& player) const {
    return standing_of(context.principal(), channel, player);
  }

  // Reading a room: anyone signed in and not banned; a group or direct channel: its members.
  void require_read_as(const sdk::Principal& principal, const std::string& id,
                       const rec::ChannelRecord& channel, const std::string& player) const {
    const Standing s = standing_of(principal, id, player);
    if (s.global_moderator) return;
    if (s.banned) throw sdk::Error(sdk::StatusCode::kPermissionDenied, "banned from " + id);
    if (channel.kind() != static_cast<uint32_t>(ChannelKind::kRoom) && !s.member) {
      throw sdk::Error(sdk::StatusCode::kPermissionDenied, "only members read " + id);
    }
  }
  void require_read(const sdk::CallContext& context, const std::string& id, const rec::ChannelRecord& channel,
                    const std::string& player) const {
    require_read_as(context.principal(), id, channel, player);
  }

  void require_send(const sdk::CallContext& context, const std::string& id, const rec::ChannelRecord& channel,
                    const std::string& player) const {
    const Standing s = standing(context, id, player);
    if (s.banned) throw sdk::Error(sdk::StatusCode::kPermissionDenied, "banned from " + id);
    if (!s.member) throw sdk::Error(sdk::StatusCode::kPermissionDenied, "channel_id: Join " + id + " first");
    if (muted(s, sdk::now_unix_ms())) {
      throw sdk::Error(sdk::StatusCode::kPermissionDenied,
                       "muted in " + id + " for " +
                           std::to_string((s.muted_until_unix_ms - sdk::now_unix_ms()) / 1000 + 1) + " s");
    }
    if (channel.kind() == static_cast<uint32_t>(ChannelKind::kDirect)) {
      const std::string peer = direct_peer(id, player);
      if (store_.blocked(player, peer) || store_.blocked(peer, player)) {
        throw sdk::Error(sdk::StatusCode::kPermissionDenied, "one of the two players blocked the other");
      }
    }
  }

  void charge_rate(const std::string& player) {
    const int64_t window = sdk::now_unix_ms() / 10000;
    const int64_t used =
        host_.cache().increment("rate/" + player + "/" + std::to_string(window), 1, std::chrono::seconds(20));
    if (used > messages_per_player_per_10s_) {
      throw sdk::Error(sdk::StatusCode::kResourceExhausted, "over messages_per_player_per_10s (" +
                                                                std::to_string(messages_per_player_per_10s_) +
                                                                "); retry in a few seconds");
    }
  }

  std::vector<std::string> memberships(const std::string& player) const {
    std::vector<std::string> out;
    sdk::Store::Query query;
    query.collection = kMembers;
    query.owner = player;
    query.limit = 500;
    for (;;) {
      auto page = store_.raw().list<rec::MemberRecord>(query);
      for (const auto& record : page.records) {
        if (!record.value.joined()) continue;
        out.push_back(record.key.substr(0, record.key.size() - player.size() - 1));
      }
      if (page.next_cursor.empty() || out.size() > max_channels_per_player_) break;
      query.cursor = page.next_cursor;
    }
    return out;
  }

  void check_channel_count(const std::string& player) const {
    if (memberships(player).size() >= max_channels_per_player_) {
      throw sdk::Error(sdk::StatusCode::kResourceExhausted, "max_channels_per_player (" +
                                                                std::to_string(max_channels_per_player_) +
                                                                ") reached; leave a channel first");
    }
  }

  // Makes `player` a member; returns the membership. Idempotent for a member already.
  rec::MemberRecord add(const std::string& channel_id, const std::string& player) {
    rec::MemberRecord out;
    bool counted = false;
    store_.with_retries("joining " + channel_id, [&] {
      auto member = store_.member(channel_id, player);
      if (member && member->value.banned()) {
        throw sdk::Error(sdk::StatusCode::kPermissionDenied, "banned from " + channel_id);
      }
      if (member && member->value.joined()) {
        out = member->value;
        return;
      }
      if (!counted) {
        check_channel_count(player);
        counted = true;
      }
      auto channel = load_channel(channel_id);
      if (channel.value.member_count() >= max_members_per_channel_) {
        throw sdk::Error(
            sdk::StatusCode::kResourceExhausted,
            "max_members_per_channel (" + std::to_string(max_members_per_channel_) + ") reached");
      }
      rec::MemberRecord m = member ? member->value : rec::MemberRecord();
      m.set_role(static_cast<uint32_t>(Role::kMember));
      m.set_joined(true);
      m.set_joined_unix_ms(sdk::now_unix_ms());
      channel.value.set_member_count(channel.value.member_count() + 1);
      sdk::Store::Batch batch;
      batch.put(kMembers, ChatStore::member_key(channel_id, player), m,
                member ? member->version : sdk::Store::kCreateOnly, player);
      batch.put(kChannels, channel_id, channel.value, channel.version, channel.owner);
      store_.raw().commit(batch);
      out = m;
    });
    return out;
  }

  // A member leaves: the record stays while it remembers a ban or mute.
  static void put_departure(sdk::Store::Batch& batch, const std::string& channel, const std::string& player,
                            const sdk::Record<rec::MemberRecord>& member) {
    rec::MemberRecord m = member.value;
    m.set_joined(false);
    m.set_role(static_cast<uint32_t>(Role::kMember));
    const std::string key = ChatStore::member_key(channel, player);
    if (m.banned() || m.muted_until_unix_ms() > sdk::now_unix_ms()) {
      batch.put(kMembers, key, m, member.version, player);
    } else {
      batch.erase(kMembers, key, member.version);
    }
  }

  // The message an edit or delete names, when `player` may change it.
  sdk::Record<rec::EventRecord> editable(const std::string& channel, uint64_t seq, const std::string& player,
                                         bool moderator) const {
    auto target = store_.event(channel, seq);
    if (!target || target->value.type() != pb::EVENT_TYPE_MESSAGE) {
      throw sdk::Error(sdk::StatusCode::kNotFound,
                       "seq: no message " + std::to_string(seq) + " in " + channel);
    }
    if (target->value.deleted()) {
      throw sdk::Error(sdk::StatusCode::kFailedPrecondition,
                       "seq: message " + std::to_string(seq) + " was deleted");
    }
    if (target->value.sender_id() != player && !moderator) {
      throw sdk::Error(sdk::StatusCode::kPermissionDenied,
                       "only its author or a moderator changes a message");
    }
    return std::move(*target);
  }

  sdk::Status replay_sent(const std::string& channel, uint64_t seq, pb::ChatEvent& reply) {
    auto event = store_.event(channel, seq);
    if (!event)
      return {sdk::StatusCode::kAlreadyExists,
              "client_message_id: sent already, as seq " + std::to_string(seq)};
    reply = to_pb(channel, event->value);
    return sdk::Status::ok();
  }

  // Publishes a stored event to every host, this one included: the subscription delivers it on the
  // pool, so the sender's reply does not wait for the fan-out.
  pb::ChatEvent announce(const std::string& channel, const rec::EventRecord& stored) {
    pb::ChatEvent event = to_pb(channel, stored);
    const std::string bytes = event.SerializeAsString();
    try {
      host_.publish(kEventsTopic, bytes);
    } catch (const sdk::Error& e) {
      // Stored all the same: other hosts' head checks find it.
      host_.warn("chat: could not announce an event of " + channel + ": " + std::string(e.what()));
      announced(bytes);  // this host's subscribers still get it
    }
    return event;
  }

  // ---- live delivery ----

  std::shared_ptr<Feed> find_feed(const std::string& channel) {
    std::lock_guard lock(feeds_mu_);
    auto it = feeds_.find(channel);
    return it == feeds_.end() ? nullptr : it->second;
  }

  // An announcement from any host, on the host's delivery thread: queued on its channel's feed,
  // which a job on the pool drains. Under load one drain takes many events, and each subscriber
  // gets them in one write.
  void announced(std::string_view payload) {
    pb::ChatEvent event;
    if (!event.ParseFromArray(payload.data(), static_cast<int>(payload.size())) || event.seq() == 0) return;
    if (auto feed = find_feed(event.channel_id())) {
      bool schedule = false;
      {
        std::lock_guard lock(feed->inbox_mu);
        // A backlog past the bound is dropped: the gap is read from the store.
        if (feed->inbox.size() < kMaxInbox) feed->inbox.emplace_back(event.seq(), framed(payload));
        schedule = !std::exchange(feed->draining, true);
      }
      if (schedule) schedule_drain(feed);
    }
    if (event.type() == pb::EVENT_TYPE_MODERATION && (event.moderation() == pb::MODERATION_ACTION_KICK ||
                                                      event.moderation() == pb::MODERATION_ACTION_BAN)) {
      std::string channel = event.channel_id(), subject = event.subject_id();
      try {
        host_.run_blocking([this, channel, subject] { end_streams_of(channel, subject); });
      } catch (const sdk::Error&) {
        // The pool is full: the kicked player's stream here reads on until it ends by itself.
      }
    }
  }

  void schedule_drain(const std::shared_ptr<Feed>& feed) {
    try {
      host_.run_blocking_with_status(
          [this, feed](gv_status_code status) {
            if (status == GV_STATUS_OK) return drain(*feed);
            std::lock_guard lock(feed->inbox_mu);  // not run (the plugin stops)
            feed->draining = false;
          },
          nullptr);
    } catch (const sdk::Error&) {
      std::lock_guard lock(feed->inbox_mu);  // the pool is full: the next announcement tries again
      feed->draining = false;
    }
  }

  void drain(Feed& feed) {
    for (;;) {
      std::vector<std::pair<uint64_t, std::string>> batch;
      {
        std::lock_guard lock(feed.inbox_mu);
        if (feed.inbox.empty()) {
          feed.draining = false;
          return;
        }
        batch.swap(feed.inbox);
      }
      std::lock_guard fill(feed.fill_mu);
      if (!feed.initialized) continue;  // its start reads the head after these were stored
      const uint64_t delivered = delivered_of(feed);
      for (auto& [seq, bytes] : batch) feed.pending.add(seq, std::move(bytes), delivered);
      drain_pending(feed);
      const auto gap = feed.pending.gap(delivered_of(feed));
      if (gap && feed.pending.size() > kMaxPending) {
        // A gap that many events wait behind: read it now rather than at the next head check.
        try {
          refill(feed, gap->first, gap->second);
        } catch (const sdk::Error& e) {
          host_.warn("chat: could not read events of " + feed.channel +
                     " to fill a gap: " + std::string(e.what()));
        }
        drain_pending(feed);
      }
    }
  }

  static uint64_t delivered_of(Feed& feed) {
    std::lock_guard lock(feed.mu);
    return feed.delivered;
  }

  // Under fill_mu: what is next in order goes out, as one batch.
  void drain_pending(Feed& feed) {
    Batch batch;
    for (const auto& [seq, frame] : feed.pending.take_ready(delivered_of(feed))) batch.add(seq, frame);
    if (!batch.empty()) fan_out(feed, batch);
  }

  void refill(Feed& feed, uint64_t first, uint64_t last) {
    for (uint64_t from = first; from <= last; from += kReplayPage) {
      const uint64_t to = std::min(last, from + kReplayPage - 1);
      Batch batch;
      for (const rec::EventRecord& e : store_.events(feed.channel, from, to)) {
        batch.add(e.seq(), framed(to_pb(feed.channel, e).SerializeAsString()));
      }
      refilled_.record(static_cast<double>(batch.seqs.size()));
      if (!batch.empty()) fan_out(feed, batch);
      std::lock_guard lock(feed.mu);
      feed.delivered = std::max(feed.delivered, to);  // what is absent was swept
    }
  }

  // Writes the batch's events after each live subscriber's place (a suffix of the batch's bytes).
  void fan_out(Feed& feed, const Batch& batch) {
    std::vector<std::shared_ptr<Subscriber>> slow;
    size_t sent = 0;
    {
      std::lock_guard lock(feed.mu);
      if (batch.last() <= feed.delivered) return;
      feed.delivered = batch.last();
      for (const auto& sub : feed.subscribers) {
        std::lock_guard sub_lock(sub->mu);
        if (sub->ended || !sub->live || batch.last() <= sub->position) continue;
        const size_t from = batch.first_after(sub->position);
        const size_t written = batch.write_from(sub->stream, from, max_response_bytes_);
        if (written > 0) sub->position = batch.seqs[from + written - 1];
        sent += written;
        if (from + written < batch.seqs.size()) slow.push_back(sub);
      }
    }
    if (sent > 0) delivered_.record(static_cast<double>(sent));
    for (const auto& sub : slow) too_slow(sub);
  }

  void too_slow(const std::shared_ptr<Subscriber>& sub) {
    uint64_t position;
    {
      std::lock_guard lock(sub->mu);
      position = sub->position;
    }
    end(sub, sdk::Status(
                 sdk::StatusCode::kResourceExhausted,
                 "too slow: the stream fell too far behind; resume from cursor " + encode_cursor(position)));
  }

  // Counts the stream against the host's, the player's and the address's limits.
  void admit(const std::shared_ptr<Subscriber>& sub, bool resumed) {
    std::lock_guard lock(subs_mu_);
    if (!resumed) {
      if (subscribers_.size() >= max_subscribers_per_host_) {
        throw sdk::Error(
            sdk::StatusCode::kResourceExhausted,
            "max_subscribers_per_host (" + std::to_string(max_subscribers_per_host_) + ") reached");
      }
      if (per_player_[sub->player] >= max_subscribers_per_player_) {
        throw sdk::Error(sdk::StatusCode::kResourceExhausted,
                         "max_subscribers_per_player (" + std::to_string(max_subscribers_per_player_) +
                             ") reached; close another Subscribe stream");
      }
      if (per_address_[sub->address] >= max_subscribers_per_address_) {
        throw sdk::Error(
            sdk::StatusCode::kResourceExhausted,
            "max_subscribers_per_address (" + std::to_string(max_subscribers_per_address_) + ") reached");
      }
    }
    subscribers_.insert(sub);
    ++per_player_[sub->player];
    ++per_address_[sub->address];
    presence_dirty_ = true;
    subscribers_gauge_.record(static_cast<double>(subscribers_.size()));
  }

  // On the pool: checks access (a new stream), replays from the cursor, then goes live.
  void start(const std::shared_ptr<Subscriber>& sub, std::optional<uint64_t> cursor,
             const sdk::Principal* principal) {
    std::shared_ptr<Feed> feed;
    try {
      if (principal != nullptr) {
        auto channel = store_.channel(sub->channel);
        if (!channel) {
          return end(
              sub, sdk::Status(sdk::StatusCode::kNotFound, "channel_id: no channel '" + sub->channel + "'"));
        }
        require_read_as(*principal, sub->channel, channel->value, sub->player);
      }
      feed = attach_feed(sub);
      if (!feed) return;  // ended meanwhile
      const uint64_t head = store_.head(sub->channel);
      if (cursor && *cursor > head) {
        return end(sub, sdk::Status(sdk::StatusCode::kInvalidArgument,
                                    "cursor: ahead of the channel's newest event"));
      }
      {
        std::lock_guard lock(sub->mu);
        sub->position = cursor.value_or(head);
      }
      replay(sub, *feed);
    } catch (const sdk::Error& e) {
      end(sub, e.status());
    }
  }

  std::shared_ptr<Feed> attach_feed(const std::shared_ptr<Subscriber>& sub) {
    std::shared_ptr<Feed> feed;
    {
      std::lock_guard lock(subs_mu_);
      if (!subscribers_.contains(sub)) return nullptr;  // cancelled or detached before it started
      std::lock_guard feeds_lock(feeds_mu_);
      auto& slot = feeds_[sub->channel];
      if (!slot) slot = std::make_shared<Feed>(sub->channel);
      feed = slot;
      ++feed->users;
      feed_of_[sub.get()] = feed;
    }
    std::lock_guard fill(feed->fill_mu);
    if (!feed->initialized) {
      const uint64_t head = store_.head(sub->channel);
      std::lock_guard lock(feed->mu);
      feed->delivered = head;
      feed->initialized = true;
    }
    return feed;
  }

  // Sends what the store holds after the subscriber's place, page by page, until the feed has
  // delivered nothing past it; then the feed takes over, with no gap and no repeat.
  void replay(const std::shared_ptr<Subscriber>& sub, Feed& feed) {
    // The replay writes faster than a network drains: when the host's queue for the stream is
    // full it waits for the client, and gives up only when the client takes nothing for a while.
    auto stalled_since = std::chrono::steady_clock::time_point();
    for (;;) {
      uint64_t position;
      {
        std::lock_guard lock(sub->mu);
        if (sub->ended) return;
        position = sub->position;
      }
      const uint64_t head = store_.head(sub->channel);
      if (head > position) {
        const uint64_t to = std::min(head, position + kReplayPage);
        Batch batch;
        for (const rec::EventRecord& e : store_.events(sub->channel, position + 1, to)) {
          batch.add(e.seq(), framed(to_pb(sub->channel, e).SerializeAsString()));
        }
        std::unique_lock lock(sub->mu);
        if (sub->ended) return;
        const size_t from = batch.first_after(sub->position);
        const size_t written = batch.write_from(sub->stream, from, max_response_bytes_);
        if (written > 0) sub->position = batch.seqs[from + written - 1];
        if (from + written < batch.seqs.size()) {
          const auto now = std::chrono::steady_clock::now();
          if (written > 0 || stalled_since == std::chrono::steady_clock::time_point()) stalled_since = now;
          if (sub->stream.cancelled() || now - stalled_since > kReplayStallLimit) {
            sub->ended = true;
            sub->stream.finish(sdk::Status(sdk::StatusCode::kResourceExhausted,
                                           "too slow: the client read nothing of the replay for " +
                                               std::to_string(kReplayStallLimit.count()) +
                                               " ms; resume from cursor " + encode_cursor(sub->position)));
            break;
          }
          lock.unlock();
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
        stalled_since = {};
        sub->position = std::max(sub->position, to);  // what is absent was swept
        continue;
      }
      std::lock_guard lock(feed.mu);
      std::lock_guard sub_lock(sub->mu);
      if (sub->ended) break;
      if (feed.delivered > sub->position) continue;  // the feed is ahead: read on from the store
      sub->live = true;
      if (!sub->caught_up_sent) {
        pb::ChatEvent caught_up;
        caught_up.set_channel_id(sub->channel);
        caught_up.set_type(pb::EVENT_TYPE_CAUGHT_UP);
        caught_up.set_cursor(encode_cursor(sub->position));
        const std::string frame = framed(caught_up.SerializeAsString());
        sub->stream.write(Serialized{frame});
        sub->caught_up_sent = true;
      }
      feed.subscribers.push_back(sub);
      return;
    }
    forget(sub);
  }

  // Drops the stream from the counts and its feed (the feed goes with its last subscriber).
  void forget(const std::shared_ptr<Subscriber>& sub) {
    std::shared_ptr<Feed> feed;
    {
      std::lock_guard lock(subs_mu_);
      if (subscribers_.erase(sub) == 0) return;
      if (--per_player_[sub->player] == 0) per_player_.erase(sub->player);
      if (--per_address_[sub->address] == 0) per_address_.erase(sub->address);
      auto it = feed_of_.find(sub.get());
      if (it != feed_of_.end()) {
        feed = it->second;
        feed_of_.erase(it);
      }
      presence_dirty_ = true;
      subscribers_gauge_.record(static_cast<double>(subscribers_.size()));
    }
    if (!feed) return;
    {
      std::lock_guard lock(feed->mu);
      auto& subs = feed->subscribers;
      subs.erase(std::remove(subs.begin(), subs.end(), sub), subs.end());
    }
    std::lock_guard lock(feeds_mu_);
    if (--feed->users == 0) feeds_.erase(feed->channel);
  }

  // Ends the streams of `player` on `channel` (kicked, banned, blocked) on this host; other hosts
  // end theirs when the moderation event reaches them.
  void end_streams_of(const std::string& channel, const std::string& player) {
    std::vector<std::shared_ptr<Subscriber>> ending;
    {
      std::lock_guard lock(subs_mu_);
      for (const auto& sub : subscribers_) {
        if (sub->channel == channel && sub->player == player) ending.push_back(sub);
      }
    }
    for (const auto& sub : ending) {
      end(sub, sdk::Status(sdk::StatusCode::kPermissionDenied, "removed from " + channel));
    }
  }

  // Each feed's head, in case an announcement was lost (the last one of a burst has no successor
  // to reveal the gap).
  void check_heads() {
    std::vector<std::shared_ptr<Feed>> feeds;
    {
      std::lock_guard lock(feeds_mu_);
      for (const auto& [channel, feed] : feeds_) feeds.push_back(feed);
    }
    for (const auto& feed : feeds) {
      try {
        std::lock_guard fill(feed->fill_mu);
        if (!feed->initialized) continue;
        const uint64_t head = store_.head(feed->channel);
        const uint64_t delivered = delivered_of(*feed);
        if (head > delivered) refill(*feed, delivered + 1, head);
        drain_pending(*feed);
      } catch (const sdk::Error& e) {
        host_.warn("chat: head check of " + feed->channel + " failed: " + std::string(e.what()));
      }
    }
  }

  std::set<std::string> local_online(const std::string& channel) {
    std::set<std::string> out;
    std::lock_guard lock(subs_mu_);
    for (const auto& sub : subscribers_) {
      if (sub->channel == channel) out.insert(sub->player);
    }
    return out;
  }

  // Writes who is subscribed here when it changed, and at least every presence_heartbeat_ms.
  void heartbeat() {
    const int64_t now = sdk::now_unix_ms();
    rec::PresenceRecord record;
    {
      std::lock_guard lock(subs_mu_);
      if (!presence_dirty_ && now - presence_written_ms_ < presence_heartbeat_ms_) return;
      presence_dirty_ = false;
      std::map<std::string, std::set<std::string>> by_channel;
      for (const auto& sub : subscribers_) by_channel[sub->channel].insert(sub->player);
      for (const auto& [channel, players] : by_channel) {
        auto* entry = record.add_channels();
        entry->set_channel_id(channel);
        for (const auto& p : players) entry->add_player_ids(p);
      }
    }
    record.set_expires_unix_ms(now + 3 * presence_heartbeat_ms_);
    try {
      store_.raw().put(kPresence, instance_id_, record);
      presence_written_ms_ = now;
    } catch (const sdk::Error& e) {
      std::lock_guard lock(subs_mu_);
      presence_dirty_ = true;
      host_.warn("chat: could not write this host's presence: " + std::string(e.what()));
    }
  }

  // Drops ephemeral events past their retention, send ids past theirs, and hosts long silent.
  void sweep() {
    const int64_t now = sdk::now_unix_ms();
    const auto drop_older = [&](const char* collection, const char* owner, int64_t max_age_ms) {
      sdk::Store::Query query;
      query.collection = collection;
      query.owner = owner;
      query.limit = 500;
      for (int pages = 0; pages < 100; ++pages) {
        auto page = store_.raw().list(query);
        sdk::Store::Batch batch;
        for (const auto& object : page.objects) {
          if (object.created_unix_ms < now - max_age_ms) batch.erase(collection, object.key, object.version);
        }
        if (!batch.empty()) {
          try {
            store_.raw().commit(batch);
          } catch (const sdk::Error&) {
            // Another host swept them, or one changed: the next sweep sees.
          }
        }
        if (page.next_cursor.empty()) break;
        query.cursor = page.next_cursor;
      }
    };
    drop_older(kEvents, kEphemeralOwner, ephemeral_retention_ms_);
    drop_older(kSent, kSent, kSendIdRetentionMs);
    sdk::Store::Query query;
    query.collection = kPresence;
    query.limit = 1000;
    auto page = store_.raw().list<rec::PresenceRecord>(query);
    for (const auto& host : page.records) {
      if (host.value.expires_unix_ms() < now - 60000) {
        try {
          store_.raw().erase(kPresence, host.key, host.version);
        } catch (const sdk::Error&) {
        }
      }
    }
  }

  sdk::Host host_;
  ChatStore store_;
  WordFilter filter_;
  std::string instance_id_;
  size_t max_message_bytes_, max_message_chars_;
  int64_t messages_per_player_per_10s_;
  size_t max_channels_per_player_;
  uint32_t max_members_per_channel_;
  size_t max_blocks_per_player_;
  size_t max_subscribers_per_host_, max_subscribers_per_player_, max_subscribers_per_address_;
  size_t max_response_bytes_;
  int64_t ephemeral_retention_ms_;
  int64_t presence_heartbeat_ms_;
  sdk::Metric delivered_, refilled_, subscribers_gauge_;

  std::mutex feeds_mu_;
  std::unordered_map<std::string, std::shared_ptr<Feed>> feeds_;
  std::mutex subs_mu_;
  std::set<std::shared_ptr<Subscriber>> subscribers_;
  std::unordered_map<const Subscriber*, std::shared_ptr<Feed>> feed_of_;
  std::unordered_map<std::string, size_t> per_player_, per_address_;
  bool presence_dirty_ = true;
  int64_t presence_written_ms_ = 0;

  sdk::Subscription announcements_;
  sdk::Timer head_timer_, presence_timer_, sweep_timer_;
};

std::string SubscriberSession::detach() {
  return plugin_.detach(sub_);
}

void SubscriberSession::on_cancel() {
  plugin_.end(sub_, sdk::Status(sdk::StatusCode::kCancelled, "cancelled"));
}

}  // namespace

GAMEVERSE_PLUGIN(
    ChatPlugin, "chat", "0.1.0",
    "Chat: rooms, groups and direct messages, history, live streams that resume, moderation, presence")
