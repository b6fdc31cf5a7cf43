// gameverse.chat.v1.Chat: maps each call to the ChatService use case and its result back to
// protobuf, announces stored events through pub/sub, and runs the Subscribe streams: fed live on
// every host, refilled from the store on a gap, and moved across a reload of the plugin.
#include <gameverse/sdk/domain_error.hpp>
#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "domain/channel.hpp"
#include "domain/chat_service.hpp"
#include "domain/text.hpp"
#include "gameverse/chat/records/v1/records.pb.h"
#include "gameverse/chat/v1/chat.pb.h"
#include "infrastructure/store_repository.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::chat::v1;
namespace rec = gameverse::chat::records::v1;
using namespace gameverse::chat;

// Every stored event is announced here to every host as a ChatEvent carrying only its channel_id
// and seq. Anything in-process or with access to the pub/sub backend can publish on this topic, so
// an announcement is only a hint that the channel has news: what subscribers get, and any kick or
// ban acted on, is read from the store, and never past the channel's stored head.
constexpr const char* kEventsTopic = "gameverse.chat.v1.events";
constexpr uint32_t kReplayPage = 200;
constexpr int64_t kSendIdRetentionMs = 10 * 60 * 1000;
// A replay whose client takes nothing for this long ends, with the cursor to resume from.
constexpr std::chrono::milliseconds kReplayStallLimit(10000);
// How often replays waiting for their client try again (on a timer: none holds a pool thread).
constexpr std::chrono::milliseconds kReplayRetry(20);

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

pb::ChatEvent to_pb(const std::string& channel, const Event& e) {
  pb::ChatEvent out;
  out.set_channel_id(channel);
  out.set_seq(e.seq);
  out.set_type(static_cast<pb::EventType>(e.type));
  out.set_sender_id(e.sender_id);
  out.set_text(e.text);
  out.set_sent_unix_ms(e.sent_unix_ms);
  out.set_target_seq(e.target_seq);
  out.set_edited(e.edited);
  out.set_deleted(e.deleted);
  out.set_moderation(e.moderation ? static_cast<pb::ModerationAction>(*e.moderation)
                                  : pb::MODERATION_ACTION_UNSPECIFIED);
  out.set_subject_id(e.subject_id);
  out.set_cursor(encode_cursor(e.seq));
  out.set_client_message_id(e.client_message_id);
  return out;
}

pb::Channel channel_pb(const ChannelView& view) {
  const Channel& c = view.channel;
  pb::Channel out;
  out.set_id(view.id);
  out.set_kind(static_cast<pb::ChannelKind>(c.kind));
  out.set_name(c.name);
  out.set_retention(static_cast<pb::Retention>(c.retention));
  out.set_owner_id(c.owner_id);
  out.set_member_count(c.member_count);
  out.set_created_unix_ms(c.created_unix_ms);
  out.set_head_cursor(encode_cursor(view.head));
  return out;
}

pb::Member member_pb(const std::string& player, const Member& m) {
  pb::Member out;
  out.set_player_id(player);
  out.set_role(static_cast<pb::Role>(m.role));
  out.set_muted_until_unix_ms(m.muted_until_unix_ms);
  out.set_banned(m.banned);
  out.set_joined_unix_ms(m.joined_unix_ms);
  return out;
}

// One Subscribe stream.
struct Subscriber {
  Subscriber(EventStream s, std::string c, std::string p, std::string a)
      : stream(std::move(s)), channel(std::move(c)), player(std::move(p)), address(std::move(a)) {}
  EventStream stream;
  const std::string channel, player, address;
  std::mutex mu;
  uint64_t position = 0;          // the last seq sent, or the cursor it started after
  bool global_moderator = false;  // the token carried a global moderator role (access re-checks)
  bool live = false;              // replay over: the channel's feed delivers to it
  bool ended = false;             // finished or detached: nothing more is written
  bool caught_up_sent = false;
  // The last time a waiting replay's client took something (zero: the replay is not waiting).
  std::chrono::steady_clock::time_point stalled_since{};
};

// The live side of one channel on this host: events delivered in seq order to its live subscribers.
struct Feed {
  explicit Feed(std::string c) : channel(std::move(c)) {}
  const std::string channel;
  std::mutex fill_mu;  // one deliverer at a time: a drain of announcements, the head check
  bool initialized = false;
  std::mutex hint_mu;
  uint64_t announced = 0;  // the highest seq announced and not yet looked at (0: none); a hint only
  bool draining = false;   // a drain is queued or running
  std::mutex mu;           // delivered and subscribers
  uint64_t delivered = 0;  // every seq up to here went to the live subscribers; never past the stored head
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

class ChatPlugin final : public sdk::Plugin {
 public:
  explicit ChatPlugin(sdk::InitContext& init)
      : host_(init.host),
        repository_(init.host.store()),
        counters_(init.host.cache()),
        service_(repository_, counters_, make_limits(init.host), make_filter(init.host), environment()),
        max_subscribers_per_host_(static_cast<size_t>(init.host.config_int("max_subscribers_per_host"))),
        max_subscribers_per_player_(static_cast<size_t>(init.host.config_int("max_subscribers_per_player"))),
        max_subscribers_per_address_(
            static_cast<size_t>(init.host.config_int("max_subscribers_per_address"))),
        count_subscribers_by_address_(init.host.config_bool("count_subscribers_by_address")),
        max_response_bytes_(static_cast<size_t>(init.host.config_int("max_response_bytes"))),
        max_replay_events_(static_cast<uint64_t>(init.host.config_int("max_replay_events"))),
        ephemeral_retention_ms_(init.host.config_int("ephemeral_retention_s") * 1000),
        presence_heartbeat_ms_(init.host.config_int("presence_heartbeat_ms")),
        delivered_(
            init.host.counter("gameverse_chat_deliveries_total", "Events written to Subscribe streams")),
        refilled_(init.host.counter(
            "gameverse_chat_refilled_total",
            "Events a feed read from the store because their announcement did not come in order")),
        subscribers_gauge_(
            init.host.gauge("gameverse_chat_subscribers", "Subscribe streams open on this host")) {
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
    replay_timer_ = init.host.start_timer(
        kReplayRetry, kReplayRetry, [this] { retry_replays(); }, sdk::Run::kBlocking);
    const auto recheck_every = std::chrono::milliseconds(init.host.config_int("access_recheck_interval_ms"));
    access_timer_ = init.host.start_timer(
        recheck_every, recheck_every, [this] { recheck_access(); }, sdk::Run::kBlocking);
    const auto sweep_every =
        std::chrono::milliseconds(std::clamp<int64_t>(ephemeral_retention_ms_ / 4, 1000, 60000));
    sweep_timer_ = init.host.start_timer(
        sweep_every, sweep_every, [this] { sweep(); }, sdk::Run::kBlocking);
  }

  ~ChatPlugin() override {
    head_timer_.cancel();
    presence_timer_.cancel();
    replay_timer_.cancel();
    access_timer_.cancel();
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
    for (const char* collection : kCollections) b.collection(collection);
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
        .config_int(
            "changes_per_player_per_10s", 20,
            "Channel and membership changes (CreateChannel, OpenDirect, Join, AddMember, Leave, "
            "Moderate, Block, Unblock) one player may make in 10 seconds; more are RESOURCE_EXHAUSTED",
            sdk::between(1, 1000000))
        .config_int("max_channels_owned_per_player", 100,
                    "Rooms and groups one player may create; they stay after their members leave",
                    sdk::between(1, 1000000))
        .config_int("reads_per_player_per_10s", 30,
                    "ListOnline calls and Subscribe opens one player may make in 10 seconds; more are "
                    "RESOURCE_EXHAUSTED",
                    sdk::between(1, 1000000))
        .config_int("max_replay_events", 10000,
                    "Events a Subscribe replays at most: a cursor further behind the newest event is "
                    "FAILED_PRECONDITION (page History instead)",
                    sdk::between(1, 100000000))
        .config_bool("count_subscribers_by_address", true,
                     "Whether max_subscribers_per_address applies; set false behind an L7 load balancer "
                     "other than the host's own HTTP gateway (every stream then has the balancer's "
                     "address) and rely on max_subscribers_per_player")
        .config_bool("staff_read_direct_channels", false,
                     "Whether global moderators and admins may read direct channels (by default they read "
                     "rooms and groups only)")
        .config_int("access_recheck_interval_ms", 10000,
                    "How often the streams of group and direct channels here check that their player may "
                    "still read (removed, or left, on another host)",
                    sdk::between(100, 3600000))
        .config_int("max_conflict_retries", 16,
                    "Attempts at a change meeting concurrent changes to the same channel, then ABORTED",
                    sdk::between(1, 1000));
  }

  // ---- channels and members ----

  sdk::Status create_channel(sdk::CallContext& context, const pb::CreateChannelRequest& request,
                             pb::Channel& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      std::optional<ChannelKind> kind;
      if (request.kind() == pb::CHANNEL_KIND_ROOM) kind = ChannelKind::kRoom;
      if (request.kind() == pb::CHANNEL_KIND_GROUP) kind = ChannelKind::kGroup;
      std::optional<Retention> retention;
      if (request.retention() == pb::RETENTION_PERSISTENT) retention = Retention::kPersistent;
      if (request.retention() == pb::RETENTION_EPHEMERAL) retention = Retention::kEphemeral;
      const bool retention_valid = retention || request.retention() == pb::RETENTION_UNSPECIFIED;
      reply = channel_pb(service_.create_channel(who, kind, request.name(), retention, retention_valid));
    });
  }

  sdk::Status open_direct(sdk::CallContext& context, const pb::OpenDirectRequest& request,
                          pb::Channel& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] { reply = channel_pb(service_.open_direct(who, request.player_id())); });
  }

  sdk::Status get_channel(sdk::CallContext& context, const pb::GetChannelRequest& request,
                          pb::Channel& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] { reply = channel_pb(service_.get_channel(who, request.channel_id())); });
  }

  sdk::Status join(sdk::CallContext& context, const pb::JoinRequest& request, pb::Channel& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] { reply = channel_pb(service_.join(who, request.channel_id())); });
  }

  sdk::Status add_member(sdk::CallContext& context, const pb::MemberRequest& request, pb::Member& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      reply =
          member_pb(request.player_id(), service_.add_member(who, request.channel_id(), request.player_id()));
    });
  }

  sdk::Status leave(sdk::CallContext& context, const pb::LeaveRequest& request, pb::LeaveResponse&) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      service_.leave(who, request.channel_id());
      end_streams_of(request.channel_id(), who.player_id);  // other hosts' access re-check ends theirs
    });
  }

  sdk::Status list_members(sdk::CallContext& context, const pb::ListMembersRequest& request,
                           pb::ListMembersResponse& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      auto page = service_.list_members(who, request.channel_id(), request.page_token(), request.page_size());
      for (const auto& m : page.items) *reply.add_members() = member_pb(m.player_id, m.member);
      reply.set_next_page_token(page.next_cursor);
    });
  }

  sdk::Status list_online(sdk::CallContext& context, const pb::ListOnlineRequest& request,
                          pb::ListOnlineResponse& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      const std::string& channel = request.channel_id();
      for (const std::string& id : service_.list_online(who, channel, local_online(channel), instance_id_)) {
        reply.add_player_ids(id);
      }
    });
  }

  sdk::Status list_my_channels(sdk::CallContext& context, const pb::ListMyChannelsRequest&,
                               pb::ListMyChannelsResponse& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      for (const ChannelView& channel : service_.list_my_channels(who))
        *reply.add_channels() = channel_pb(channel);
    });
  }

  // ---- messages ----

  sdk::Status send(sdk::CallContext& context, const pb::SendRequest& request, pb::ChatEvent& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      const Event stored =
          service_.send(who, request.channel_id(), request.text(), request.client_message_id());
      reply = announce(request.channel_id(), stored);
    });
  }

  sdk::Status edit(sdk::CallContext& context, const pb::EditRequest& request, pb::ChatEvent& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      reply = announce(request.channel_id(),
                       service_.edit(who, request.channel_id(), request.seq(), request.text()));
    });
  }

  sdk::Status erase(sdk::CallContext& context, const pb::DeleteRequest& request, pb::ChatEvent& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      reply = announce(request.channel_id(), service_.erase(who, request.channel_id(), request.seq()));
    });
  }

  sdk::Status history(sdk::CallContext& context, const pb::HistoryRequest& request,
                      pb::HistoryResponse& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      const Direction direction =
          request.direction() == pb::DIRECTION_NEWER ? Direction::kNewer : Direction::kOlder;
      const HistoryPage page =
          service_.history(who, request.channel_id(), request.cursor(), direction, request.page_size());
      for (const Event& e : page.events) *reply.add_events() = to_pb(request.channel_id(), e);
      reply.set_next_cursor(page.next_cursor);
    });
  }

  // ---- moderation and blocks ----

  sdk::Status moderate(sdk::CallContext& context, const pb::ModerateRequest& request, pb::Member& reply) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      std::optional<Moderation> action;
      if (request.action() != pb::MODERATION_ACTION_UNSPECIFIED &&
          pb::ModerationAction_IsValid(request.action())) {
        action = static_cast<Moderation>(request.action());
      }
      std::optional<Role> role;
      if (request.role() == pb::ROLE_MEMBER) role = Role::kMember;
      if (request.role() == pb::ROLE_MODERATOR) role = Role::kModerator;
      const ModerationResult result = service_.moderate(who, request.channel_id(), request.player_id(),
                                                        action, request.mute_seconds(), role);
      announce(request.channel_id(), result.event);
      if (action == Moderation::kKick || action == Moderation::kBan) {
        end_streams_of(request.channel_id(), request.player_id());
      }
      reply = member_pb(request.player_id(), result.member);
    });
  }

  sdk::Status block(sdk::CallContext& context, const pb::BlockRequest& request, pb::BlockResponse&) {
    const Caller who = caller(context);
    return sdk::answer([&] {
      service_.block(who, request.player_id());
      // A direct stream between the two ends now.
      end_streams_of(direct_id(who.player_id, request.player_id()), request.player_id());
    });
  }

  sdk::Status unblock(sdk::CallContext& context, const pb::BlockRequest& request, pb::BlockResponse&) {
    const Caller who = caller(context);
    return sdk::answer([&] { service_.unblock(who, request.player_id()); });
  }
  // ---- Subscribe ----

  std::unique_ptr<sdk::StreamSession> subscribe_open(sdk::CallContext& context,
                                                     const pb::SubscribeRequest& request,
                                                     EventStream stream) {
    const Caller who = caller(context);
    check(check_channel_id("channel_id", request.channel_id()));
    std::optional<uint64_t> cursor;
    if (!request.cursor().empty()) {
      cursor = decode_cursor(request.cursor());
      if (!cursor) throw invalid("cursor: not a cursor of this service");
    }
    auto sub = std::make_shared<Subscriber>(stream, request.channel_id(), who.player_id,
                                            std::string(context.peer_address()));
    sub->global_moderator = who.global_moderator;
    admit(sub, false);
    try {
      host_.run_blocking([this, sub, cursor] { start(sub, cursor, true); });
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
    sub->global_moderator = state.global_moderator();
    admit(sub, true);
    const uint64_t position = state.position();
    try {
      host_.run_blocking([this, sub, position] { start(sub, position, false); });
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
      state.set_global_moderator(sub->global_moderator);
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

  static ChatLimits make_limits(const sdk::Host& host) {
    ChatLimits limits;
    limits.max_message_bytes = static_cast<size_t>(host.config_int("max_message_bytes"));
    limits.max_message_chars = static_cast<size_t>(host.config_int("max_message_chars"));
    limits.messages_per_player_per_10s = host.config_int("messages_per_player_per_10s");
    limits.max_channels_per_player = static_cast<size_t>(host.config_int("max_channels_per_player"));
    limits.max_members_per_channel = static_cast<uint32_t>(host.config_int("max_members_per_channel"));
    limits.max_blocks_per_player = static_cast<size_t>(host.config_int("max_blocks_per_player"));
    limits.max_conflict_retries = static_cast<int>(host.config_int("max_conflict_retries"));
    limits.changes_per_player_per_10s = host.config_int("changes_per_player_per_10s");
    limits.max_channels_owned_per_player =
        static_cast<size_t>(host.config_int("max_channels_owned_per_player"));
    limits.staff_read_direct_channels = host.config_bool("staff_read_direct_channels");
    limits.reads_per_player_per_10s = host.config_int("reads_per_player_per_10s");
    return limits;
  }

  static ChatEnvironment environment() {
    ChatEnvironment env;
    env.now_unix_ms = [] { return sdk::now_unix_ms(); };
    env.new_group_id = [] { return random_hex(12); };
    env.back_off = [](int tries) {
      // Jittered, growing: concurrent writers to one head spread out.
      thread_local std::minstd_rand random(std::random_device{}());
      const int ceiling_us = 200 << std::min(tries, 6);
      std::this_thread::sleep_for(std::chrono::microseconds(random() % static_cast<unsigned>(ceiling_us)));
    };
    return env;
  }

  static Caller caller_of(const sdk::Principal& p) {
    if (p.user_id.empty())
      throw sdk::Error(sdk::StatusCode::kUnauthenticated, "chat needs a signed-in player");
    return {p.user_id, sdk::meets_role(p, "moderator") || sdk::has_role(p, "admin")};
  }
  static Caller caller(const sdk::CallContext& context) { return caller_of(context.principal()); }

  // Tells every host, this one included, that `channel` has the stored event `stored`: the
  // announcement carries its channel and seq only, and each host reads the event from the store
  // (the subscription's drain runs on the pool, so the sender's reply does not wait for it).
  pb::ChatEvent announce(const std::string& channel, const Event& stored) {
    pb::ChatEvent hint;
    hint.set_channel_id(channel);
    hint.set_seq(stored.seq);
    const std::string bytes = hint.SerializeAsString();
    try {
      host_.publish(kEventsTopic, bytes);
    } catch (const sdk::Error& e) {
      // Stored all the same: other hosts' head checks find it.
      host_.warn("chat: could not announce an event of " + channel + ": " + std::string(e.what()));
      announced(bytes);  // this host's subscribers still get it
    }
    return to_pb(channel, stored);
  }

  // ---- live delivery ----

  std::shared_ptr<Feed> find_feed(const std::string& channel) {
    std::lock_guard lock(feeds_mu_);
    auto it = feeds_.find(channel);
    return it == feeds_.end() ? nullptr : it->second;
  }

  // An announcement from any host, on the host's delivery thread: only a hint that the channel's
  // feed should look at the store, noted on the feed (one number, however many arrive), which a job
  // on the pool drains. Nothing of the payload but the channel and seq is used.
  void announced(std::string_view payload) {
    pb::ChatEvent hint;
    if (!hint.ParseFromArray(payload.data(), static_cast<int>(payload.size())) || hint.seq() == 0) return;
    auto feed = find_feed(hint.channel_id());
    if (!feed) return;
    bool schedule = false;
    {
      std::lock_guard lock(feed->hint_mu);
      feed->announced = std::max(feed->announced, hint.seq());
      schedule = !std::exchange(feed->draining, true);
    }
    if (schedule) schedule_drain(feed);
  }

  void schedule_drain(const std::shared_ptr<Feed>& feed) {
    try {
      host_.run_blocking_with_status(
          [this, feed](gv_status_code status) {
            if (status == GV_STATUS_OK) return drain(*feed);
            std::lock_guard lock(feed->hint_mu);  // not run (the plugin stops)
            feed->draining = false;
          },
          nullptr);
    } catch (const sdk::Error&) {
      std::lock_guard lock(
          feed->hint_mu);  // the pool is full: the next announcement or head check tries again
      feed->draining = false;
    }
  }

  void drain(Feed& feed) {
    for (;;) {
      uint64_t announced;
      {
        std::lock_guard lock(feed.hint_mu);
        announced = std::exchange(feed.announced, 0);
        if (announced == 0) {
          feed.draining = false;
          return;
        }
      }
      try {
        std::lock_guard fill(feed.fill_mu);
        if (!feed.initialized) continue;                // its start reads the head after these were stored
        if (announced <= delivered_of(feed)) continue;  // a repeat, or the head check was first
        catch_up(feed, announced, false);
      } catch (const sdk::Error& e) {
        host_.warn("chat: could not read new events of " + feed.channel + ": " + std::string(e.what()));
      }
    }
  }

  static uint64_t delivered_of(Feed& feed) {
    std::lock_guard lock(feed.mu);
    return feed.delivered;
  }

  static bool removes_subject(const Event& e) {
    return e.type == EventType::kModeration &&
           (e.moderation == Moderation::kKick || e.moderation == Moderation::kBan);
  }

  // Under fill_mu: delivers the stored events after the feed's place up to `limit`, capped at the
  // head read here (an announcement of a seq the store does not have moves nothing), a page at a
  // time. A kick or ban goes out and then ends its subject's streams here, before what follows it.
  // `missed`: counted as events whose announcement did not come.
  void catch_up(Feed& feed, uint64_t limit, bool missed) {
    const uint64_t last = std::min(limit, service_.head(feed.channel));
    for (uint64_t from = delivered_of(feed) + 1; from <= last; from += kReplayPage) {
      const uint64_t to = std::min(last, from + kReplayPage - 1);
      Batch batch;
      const std::vector<Event> events = service_.events(feed.channel, from, to);
      if (missed && !events.empty()) refilled_.record(static_cast<double>(events.size()));
      for (const Event& e : events) {
        batch.add(e.seq, framed(to_pb(feed.channel, e).SerializeAsString()));
        if (removes_subject(e)) {
          fan_out(feed, batch, e.seq);
          batch = Batch();
          end_streams_of(feed.channel, e.subject_id);
        }
      }
      fan_out(feed, batch, to);  // what is absent was swept
    }
  }

  // Marks every seq up to `through` delivered and writes the batch's events after each live
  // subscriber's place (a suffix of the batch's bytes). The subscribers are copied under the lock
  // and written to outside it, so cancelling or detaching a stream never waits for a fan-out.
  void fan_out(Feed& feed, const Batch& batch, uint64_t through) {
    std::vector<std::shared_ptr<Subscriber>> subscribers;
    {
      std::lock_guard lock(feed.mu);
      if (through <= feed.delivered) return;
      feed.delivered = through;
      if (batch.empty()) return;
      subscribers = feed.subscribers;
    }
    std::vector<std::shared_ptr<Subscriber>> slow;
    size_t sent = 0;
    for (const auto& sub : subscribers) {
      std::lock_guard sub_lock(sub->mu);
      if (sub->ended || !sub->live || batch.last() <= sub->position) continue;
      const size_t from = batch.first_after(sub->position);
      const size_t written = batch.write_from(sub->stream, from, max_response_bytes_);
      if (written > 0) sub->position = batch.seqs[from + written - 1];
      sent += written;
      if (from + written < batch.seqs.size()) slow.push_back(sub);
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
      if (count_subscribers_by_address_ && per_address_[sub->address] >= max_subscribers_per_address_) {
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

  // On the pool: checks access, replays from the cursor, then goes live.
  void start(const std::shared_ptr<Subscriber>& sub, std::optional<uint64_t> cursor, bool opened) {
    std::shared_ptr<Feed> feed;
    try {
      if (opened) service_.charge_subscribe(sub->player);
      // A resumed stream is checked again too: its player may have been removed meanwhile.
      service_.check_subscribe({sub->player, sub->global_moderator}, sub->channel);
      feed = attach_feed(sub);
      if (!feed) return;  // ended meanwhile
      const uint64_t head = service_.head(sub->channel);
      if (cursor && *cursor > head) {
        return end(sub, sdk::Status(sdk::StatusCode::kInvalidArgument,
                                    "cursor: ahead of the channel's newest event"));
      }
      if (opened && cursor && head - *cursor > max_replay_events_) {
        return end(sub, sdk::Status(
                            sdk::StatusCode::kFailedPrecondition,
                            "cursor: more than max_replay_events (" + std::to_string(max_replay_events_) +
                                ") behind the newest event; page History, or subscribe from a later cursor"));
      }
      {
        std::lock_guard lock(sub->mu);
        sub->position = cursor.value_or(head);
      }
      replay(sub, feed);
    } catch (const ChatError& e) {
      end(sub, sdk::status_of(e));
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
      const uint64_t head = service_.head(sub->channel);
      std::lock_guard lock(feed->mu);
      feed->delivered = head;
      feed->initialized = true;
    }
    return feed;
  }

  // Sends what the store holds after the subscriber's place, page by page, until the feed has
  // delivered nothing past it; then the feed takes over, with no gap and no repeat. When the
  // host's queue for the stream is full the replay is parked with its page and retried on a timer,
  // so it holds no pool thread while its client is slow; a client that takes nothing for
  // kReplayStallLimit is ended with the cursor to resume from.
  void replay(const std::shared_ptr<Subscriber>& sub, const std::shared_ptr<Feed>& feed_ptr) {
    Feed& feed = *feed_ptr;
    for (;;) {
      uint64_t position;
      {
        std::lock_guard lock(sub->mu);
        if (sub->ended) return;
        position = sub->position;
      }
      const uint64_t head = service_.head(sub->channel);
      if (head > position) {
        const uint64_t to = std::min(head, position + kReplayPage);
        Batch batch;
        for (const Event& e : service_.events(sub->channel, position + 1, to)) {
          batch.add(e.seq, framed(to_pb(sub->channel, e).SerializeAsString()));
        }
        std::lock_guard lock(sub->mu);
        if (sub->ended) return;
        const size_t from = batch.first_after(sub->position);
        const size_t written = batch.write_from(sub->stream, from, max_response_bytes_);
        if (written > 0) sub->position = batch.seqs[from + written - 1];
        if (from + written < batch.seqs.size()) {
          const auto now = std::chrono::steady_clock::now();
          if (written > 0 || sub->stalled_since == std::chrono::steady_clock::time_point()) {
            sub->stalled_since = now;
          }
          std::lock_guard parked(parked_mu_);
          parked_.push_back({sub, feed_ptr, std::move(batch), to});
          return;
        }
        sub->stalled_since = {};
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

  // On the retry timer: each parked replay writes what its client has room for; one whose page
  // went out goes on reading on the pool; one whose client took nothing for too long ends.
  void retry_replays() {
    std::vector<Parked> parked;
    {
      std::lock_guard lock(parked_mu_);
      parked.swap(parked_);
    }
    const auto now = std::chrono::steady_clock::now();
    for (Parked& p : parked) {
      bool resume = false, give_up = false;
      {
        std::lock_guard lock(p.sub->mu);
        if (p.sub->ended) continue;
        const size_t from = p.batch.first_after(p.sub->position);
        const size_t written = p.batch.write_from(p.sub->stream, from, max_response_bytes_);
        if (written > 0) {
          p.sub->position = p.batch.seqs[from + written - 1];
          p.sub->stalled_since = now;
        }
        if (from + written >= p.batch.seqs.size()) {
          p.sub->position = std::max(p.sub->position, p.through);
          p.sub->stalled_since = {};
          resume = true;
        } else if (p.sub->stream.cancelled() || now - p.sub->stalled_since > kReplayStallLimit) {
          p.sub->ended = true;
          p.sub->stream.finish(sdk::Status(sdk::StatusCode::kResourceExhausted,
                                           "too slow: the client read nothing of the replay for " +
                                               std::to_string(kReplayStallLimit.count()) +
                                               " ms; resume from cursor " + encode_cursor(p.sub->position)));
          give_up = true;
        }
      }
      if (give_up) {
        forget(p.sub);
      } else if (resume) {
        try {
          host_.run_blocking([this, sub = p.sub, feed = p.feed] { replay(sub, feed); });
        } catch (const sdk::Error&) {
          p.batch = Batch();  // the pool is full: the next retry goes on
          std::lock_guard lock(parked_mu_);
          parked_.push_back(std::move(p));
        }
      } else {
        std::lock_guard lock(parked_mu_);
        parked_.push_back(std::move(p));
      }
    }
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
        catch_up(*feed, UINT64_MAX, true);
      } catch (const sdk::Error& e) {
        host_.warn("chat: head check of " + feed->channel + " failed: " + std::string(e.what()));
      }
    }
  }

  // Ends the streams of group and direct channels whose player may no longer read them: removed
  // or left on another host, or kicked while the event's delivery here failed.
  void recheck_access() {
    std::vector<std::shared_ptr<Subscriber>> subs;
    {
      std::lock_guard lock(subs_mu_);
      for (const auto& sub : subscribers_) {
        if (kind_of(sub->channel) != ChannelKind::kRoom) subs.push_back(sub);
      }
    }
    // One check per (channel, player, role): a player's several streams share its answer.
    std::map<std::tuple<std::string, std::string, bool>, std::optional<sdk::Status>> refusals;
    for (const auto& sub : subs) {
      auto [it, fresh] = refusals.try_emplace({sub->channel, sub->player, sub->global_moderator});
      if (fresh) {
        try {
          service_.check_subscribe({sub->player, sub->global_moderator}, sub->channel);
        } catch (const ChatError& e) {
          it->second = sdk::status_of(e);
        } catch (const sdk::Error& e) {
          host_.warn("chat: access re-check of " + sub->channel + " failed: " + std::string(e.what()));
          return;
        }
      }
      if (it->second) end(sub, *it->second);
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
    HostPresence presence;
    presence.host_id = instance_id_;
    {
      std::lock_guard lock(subs_mu_);
      if (!presence_dirty_ && now - presence_written_ms_ < presence_heartbeat_ms_) return;
      presence_dirty_ = false;
      for (const auto& sub : subscribers_) presence.players_by_channel[sub->channel].insert(sub->player);
    }
    presence.expires_unix_ms = now + 3 * presence_heartbeat_ms_;
    try {
      repository_.write_presence(presence);
      presence_written_ms_ = now;
    } catch (const sdk::Error& e) {
      std::lock_guard lock(subs_mu_);
      presence_dirty_ = true;
      host_.warn("chat: could not write this host's presence: " + std::string(e.what()));
    }
  }

  // Drops ephemeral events past their retention, send ids past theirs, and hosts long silent.
  void sweep() { repository_.sweep(sdk::now_unix_ms(), ephemeral_retention_ms_, kSendIdRetentionMs); }

  sdk::Host host_;
  StoreRepository repository_;
  CacheCounters counters_;
  ChatService service_;
  std::string instance_id_;
  size_t max_subscribers_per_host_, max_subscribers_per_player_, max_subscribers_per_address_;
  bool count_subscribers_by_address_;
  size_t max_response_bytes_;
  uint64_t max_replay_events_;
  int64_t ephemeral_retention_ms_;
  int64_t presence_heartbeat_ms_;
  sdk::Metric delivered_, refilled_, subscribers_gauge_;

  // A replay waiting for its client: the page it is writing, read up to `through`.
  struct Parked {
    std::shared_ptr<Subscriber> sub;
    std::shared_ptr<Feed> feed;
    Batch batch;
    uint64_t through = 0;
  };
  std::mutex parked_mu_;
  std::vector<Parked> parked_;  // at most one per stream

  std::mutex feeds_mu_;
  std::unordered_map<std::string, std::shared_ptr<Feed>> feeds_;
  std::mutex subs_mu_;
  std::set<std::shared_ptr<Subscriber>> subscribers_;
  std::unordered_map<const Subscriber*, std::shared_ptr<Feed>> feed_of_;
  std::unordered_map<std::string, size_t> per_player_, per_address_;
  bool presence_dirty_ = true;
  int64_t presence_written_ms_ = 0;

  sdk::Subscription announcements_;
  sdk::Timer head_timer_, presence_timer_, replay_timer_, access_timer_, sweep_timer_;
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
