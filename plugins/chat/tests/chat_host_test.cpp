// The chat plugin in the real host with the real auth plugin, through real gRPC clients, on SQLite
// and on PostgreSQL (the servers `tools/gv services` starts): ordering and history paging,
// Subscribe's replay from a cursor with no gap or repeat at the seam, moderation, limits, presence,
// a reload of the plugin under live streams, and three hosts sharing PostgreSQL and Redis.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "eventually.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/chat/v1/chat.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "host_process.hpp"
#include "sign_up.hpp"
#include "temp_dir.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::chat::v1;
namespace auth = gameverse::auth::v1;

constexpr const char* kOperatorToken = "chat-test-operator-token-0123456";
constexpr const char* kSigningSeed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

std::string random_suffix() {
  std::random_device random;
  char out[17];
  std::snprintf(out, sizeof out, "%08x%08x", random(), random());
  return out;
}

std::string redis_url() {
  const char* url = std::getenv("GAMEVERSE_TEST_REDIS_URL");
  return url != nullptr ? url : "";
}

struct Player {
  std::string id;
  std::string token;
};

// One host's clients.
struct Node {
  std::unique_ptr<HostProcess> host;
  std::unique_ptr<pb::Chat::Stub> chat;
  std::unique_ptr<auth::Auth::Stub> auth;
};

// Reads a Subscribe stream on its own thread; what it got is checked by the test.
class Reader {
 public:
  Reader(pb::Chat::Stub* chat, const std::string& token, const std::string& channel,
         const std::string& cursor = "") {
    context_.AddMetadata("authorization", "Bearer " + token);
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    pb::SubscribeRequest request;
    request.set_channel_id(channel);
    request.set_cursor(cursor);
    stream_ = chat->Subscribe(&context_, request);
    thread_ = std::thread([this] {
      pb::SubscribeResponse response;
      while (stream_->Read(&response)) {
        std::lock_guard lock(mu_);
        ++responses_;
        for (const auto& event : response.events()) events_.push_back(event);
      }
      std::lock_guard lock(mu_);
      status_ = stream_->Finish();
      ended_ = true;
    });
  }
  ~Reader() {
    context_.TryCancel();
    thread_.join();
  }
  std::vector<pb::ChatEvent> events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  bool caught_up() {
    std::lock_guard lock(mu_);
    for (const auto& e : events_) {
      if (e.type() == pb::EVENT_TYPE_CAUGHT_UP) return true;
    }
    return false;
  }
  // The seqs received, in order (CAUGHT_UP left out).
  std::vector<uint64_t> seqs() {
    std::vector<uint64_t> out;
    for (const auto& e : events()) {
      if (e.type() != pb::EVENT_TYPE_CAUGHT_UP) out.push_back(e.seq());
    }
    return out;
  }
  bool has_seq(uint64_t seq) {
    for (uint64_t s : seqs()) {
      if (s == seq) return true;
    }
    return false;
  }
  bool ended() {
    std::lock_guard lock(mu_);
    return ended_;
  }
  grpc::Status status() {
    std::lock_guard lock(mu_);
    return status_;
  }
  void cancel() { context_.TryCancel(); }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<pb::SubscribeResponse>> stream_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<pb::ChatEvent> events_;
  grpc::Status status_;
  bool ended_ = false;
  size_t responses_ = 0;
};

class ChatThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run with `tools/gv services`";
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + std::string(url) + "\"\n";
    }
    suffix_ = random_suffix();
  }
  void TearDown() override {
    if (HasFailure()) {
      for (auto& node : nodes_) {
        if (node.host) std::cerr << "host log:\n" << node.host->log();
      }
    }
  }

  std::string config(const std::string& chat_config, const std::string& data_dir,
                     const std::string& shared) const {
    return "[host]\nwatch = false\ndata_dir = \"" + data_dir + "\"\n" + store_ + shared +
           "[admin]\ntoken = \"" + kOperatorToken +
           "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
           "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
           "registrations_per_address_per_hour = 100000\nsigning_key = \"" +
           kSigningSeed +
           "\"\ngenerate_keys = false\n[[plugin]]\nname = \"chat\"\npath = \"" GV_PLUGIN_DIR
           "/chat.so\"\n[plugin.config]\n" +
           (chat_config.find("messages_per_player") == std::string::npos
                ? "messages_per_player_per_10s = 100000\n"
                : "") +
           (chat_config.find("presence_heartbeat_ms") == std::string::npos ? "presence_heartbeat_ms = 200\n"
                                                                           : "") +
           (chat_config.find("changes_per_player") == std::string::npos
                ? "changes_per_player_per_10s = 100000\n"
                : "") +
           (chat_config.find("reads_per_player") == std::string::npos ? "reads_per_player_per_10s = 100000\n"
                                                                      : "") +
           chat_config;
  }

  Node& start(const std::string& chat_config = "", const std::string& shared = "") {
    data_dirs_.push_back(std::make_unique<TempDir>());
    Node node;
    node.host =
        std::make_unique<HostProcess>(config(chat_config, data_dirs_.back()->path().string(), shared));
    node.chat = pb::Chat::NewStub(node.host->channel());
    node.auth = auth::Auth::NewStub(node.host->channel());
    nodes_.push_back(std::move(node));
    return nodes_.back();
  }

  pb::Chat::Stub* chat(size_t node = 0) { return nodes_.at(node).chat.get(); }

  std::string id(const std::string& name) const { return name + "-" + suffix_; }

  static void bearer(grpc::ClientContext& context, const std::string& token) {
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  }

  Player sign_up(const std::string& name, const std::string& role = "") {
    const auth::Session session = testing::sign_up(*nodes_.front().auth, id(name), role, kOperatorToken);
    return {session.account().id(), session.access_token()};
  }

  template <class Request, class Response, class Method>
  grpc::Status call(const Player& p, Method method, const Request& request, Response* response,
                    size_t node = 0) {
    grpc::ClientContext context;
    bearer(context, p.token);
    return (chat(node)->*method)(&context, request, response);
  }

  pb::Channel create(const Player& owner, pb::ChannelKind kind, const std::string& name,
                     pb::Retention retention = pb::RETENTION_PERSISTENT) {
    pb::CreateChannelRequest request;
    request.set_kind(kind);
    request.set_name(name);
    request.set_retention(retention);
    pb::Channel channel;
    const grpc::Status status = call(owner, &pb::Chat::Stub::CreateChannel, request, &channel);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return channel;
  }

  grpc::Status join(const Player& p, const std::string& channel, size_t node = 0) {
    pb::JoinRequest request;
    request.set_channel_id(channel);
    pb::Channel out;
    return call(p, &pb::Chat::Stub::Join, request, &out, node);
  }

  grpc::Status send(const Player& p, const std::string& channel, const std::string& text,
                    pb::ChatEvent* out = nullptr, size_t node = 0, const std::string& client_id = "") {
    pb::SendRequest request;
    request.set_channel_id(channel);
    request.set_text(text);
    request.set_client_message_id(client_id);
    pb::ChatEvent ignored;
    return call(p, &pb::Chat::Stub::Send, request, out != nullptr ? out : &ignored, node);
  }

  pb::HistoryResponse history(const Player& p, const std::string& channel, const std::string& cursor,
                              pb::Direction direction, uint32_t page_size = 0,
                              grpc::Status* status_out = nullptr) {
    pb::HistoryRequest request;
    request.set_channel_id(channel);
    request.set_cursor(cursor);
    request.set_direction(direction);
    request.set_page_size(page_size);
    pb::HistoryResponse response;
    const grpc::Status status = call(p, &pb::Chat::Stub::History, request, &response);
    if (status_out != nullptr) {
      *status_out = status;
    } else {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
    return response;
  }

  grpc::Status moderate(const Player& actor, const std::string& channel, const std::string& subject,
                        pb::ModerationAction action, uint32_t mute_seconds = 0,
                        pb::Role role = pb::ROLE_UNSPECIFIED) {
    pb::ModerateRequest request;
    request.set_channel_id(channel);
    request.set_player_id(subject);
    request.set_action(action);
    request.set_mute_seconds(mute_seconds);
    request.set_role(role);
    pb::Member member;
    return call(actor, &pb::Chat::Stub::Moderate, request, &member);
  }

  // Every message of `sent` arrives once, in seq order with no gap.
  static void expect_exactly_once_in_order(Reader& reader, uint64_t first, uint64_t last,
                                           const std::string& who) {
    const std::vector<uint64_t> seqs = reader.seqs();
    ASSERT_FALSE(seqs.empty()) << who << " got nothing";
    std::vector<uint64_t> expected;
    for (uint64_t s = first; s <= last; ++s) expected.push_back(s);
    std::vector<uint64_t> got(seqs.begin(), seqs.end());
    while (!got.empty() && got.back() > last) got.pop_back();
    EXPECT_EQ(got, expected) << who << ": " << seqs.size() << " events";
  }

  std::string store_;
  std::string suffix_;
  std::vector<std::unique_ptr<TempDir>> data_dirs_;
  std::vector<Node> nodes_;
};

TEST_P(ChatThroughTheHost, ConcurrentSendersGetDenseSeqsAndHistoryPagesBothWays) {
  start();
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("lobby"));
  ASSERT_EQ(room.id(), "room:" + id("lobby"));
  ASSERT_TRUE(join(bob, room.id()).ok());
  ASSERT_TRUE(join(bob, room.id()).ok());  // joining again changes nothing
  std::mutex mu;
  std::set<uint64_t> acknowledged;
  std::vector<std::thread> senders;
  for (const Player* p : {&alice, &bob}) {
    senders.emplace_back([&, p] {
      for (int i = 0; i < 60; ++i) {
        pb::ChatEvent event;
        const grpc::Status status = send(*p, room.id(), p->id + " says " + std::to_string(i), &event);
        ASSERT_TRUE(status.ok()) << status.error_message();
        std::lock_guard lock(mu);
        EXPECT_TRUE(acknowledged.insert(event.seq()).second) << "seq " << event.seq() << " given twice";
      }
    });
  }
  for (auto& t : senders) t.join();
  ASSERT_EQ(acknowledged.size(), 120u);
  EXPECT_EQ(*acknowledged.begin(), 1u);
  EXPECT_EQ(*acknowledged.rbegin(), 120u);

  // Newest page first (the default page size), then older pages to the start.
  std::vector<uint64_t> backwards;
  std::string cursor;
  int pages = 0;
  for (;; ++pages) {
    const pb::HistoryResponse page = history(bob, room.id(), cursor, pb::DIRECTION_OLDER);
    if (pages == 0) {
      EXPECT_EQ(page.events_size(), 50);
    }
    for (int i = page.events_size(); i-- > 0;) backwards.push_back(page.events(i).seq());
    if (page.next_cursor().empty()) break;
    cursor = page.next_cursor();
  }
  EXPECT_EQ(pages, 2);
  ASSERT_EQ(backwards.size(), 120u);
  for (size_t i = 0; i < backwards.size(); ++i) EXPECT_EQ(backwards[i], 120 - i);

  // Forward from the start in pages of 7; each event's cursor resumes right after it.
  std::vector<uint64_t> forwards;
  cursor.clear();
  for (;;) {
    const pb::HistoryResponse page = history(alice, room.id(), cursor, pb::DIRECTION_NEWER, 7);
    for (const auto& e : page.events()) forwards.push_back(e.seq());
    if (page.next_cursor().empty()) break;
    cursor = page.next_cursor();
  }
  ASSERT_EQ(forwards.size(), 120u);
  for (size_t i = 0; i < forwards.size(); ++i) EXPECT_EQ(forwards[i], i + 1);
  const pb::HistoryResponse after = history(alice, room.id(), "", pb::DIRECTION_NEWER, 3);
  const pb::HistoryResponse next =
      history(alice, room.id(), after.events(2).cursor(), pb::DIRECTION_NEWER, 3);
  EXPECT_EQ(next.events(0).seq(), 4u);

  grpc::Status status;
  history(alice, room.id(), "c1.ffff", pb::DIRECTION_NEWER, 0, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("cursor"), std::string::npos);
  history(alice, room.id(), "garbage", pb::DIRECTION_NEWER, 0, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  history(alice, room.id(), "", pb::DIRECTION_NEWER, 201, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("page_size"), std::string::npos);
}

TEST_P(ChatThroughTheHost, SubscribeReplaysFromACursorThenGoesLiveWithNoGapAndNoRepeat) {
  start();
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("replay"));
  ASSERT_TRUE(join(bob, room.id()).ok());
  std::string cursor_after_10;
  for (int i = 1; i <= 30; ++i) {
    pb::ChatEvent event;
    ASSERT_TRUE(send(alice, room.id(), "before " + std::to_string(i), &event).ok());
    if (i == 10) cursor_after_10 = event.cursor();
  }
  // Sends go on while the stream replays and switches to live.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> last{30};
  std::thread sender([&] {
    for (int i = 0; !stop && i < 400; ++i) {
      pb::ChatEvent event;
      ASSERT_TRUE(send(alice, room.id(), "during " + std::to_string(i), &event).ok());
      last = event.seq();
    }
  });
  Reader reader(chat(), bob.token, room.id(), cursor_after_10);
  ASSERT_TRUE(eventually([&] { return reader.caught_up(); }, std::chrono::seconds(30)))
      << reader.status().error_message();
  ASSERT_TRUE(eventually([&] { return last > 60; }, std::chrono::seconds(30)));
  stop = true;
  sender.join();
  pb::ChatEvent final_event;
  ASSERT_TRUE(send(alice, room.id(), "last", &final_event).ok());
  ASSERT_TRUE(eventually([&] { return reader.has_seq(final_event.seq()); }, std::chrono::seconds(30)))
      << reader.seqs().size() << " events; " << reader.status().error_message();
  expect_exactly_once_in_order(reader, 11, final_event.seq(), "the subscriber");
  int caught_up = 0;
  for (const auto& e : reader.events()) {
    caught_up += e.type() == pb::EVENT_TYPE_CAUGHT_UP;
    if (e.type() == pb::EVENT_TYPE_MESSAGE) {
      EXPECT_EQ(e.channel_id(), room.id());
    }
  }
  EXPECT_EQ(caught_up, 1);

  // A stream without a cursor starts at now: the next message is its first.
  Reader fresh(chat(), alice.token, room.id());
  ASSERT_TRUE(eventually([&] { return fresh.caught_up(); }));
  pb::ChatEvent next;
  ASSERT_TRUE(send(bob, room.id(), "for the fresh stream", &next).ok());
  ASSERT_TRUE(eventually([&] { return fresh.has_seq(next.seq()); }));
  EXPECT_EQ(fresh.seqs(), std::vector<uint64_t>{next.seq()});

  // A retried send with the same client id is the same message.
  pb::ChatEvent first, again;
  ASSERT_TRUE(send(bob, room.id(), "once", &first, 0, "retry-1").ok());
  ASSERT_TRUE(send(bob, room.id(), "once", &again, 0, "retry-1").ok());
  EXPECT_EQ(first.seq(), again.seq());
}

TEST_P(ChatThroughTheHost, ModeratorsEditDeleteMuteKickAndBanAndTheHistoryShowsIt) {
  start();
  const Player owner = sign_up("owner"), mod = sign_up("mod"), bob = sign_up("bob"), eve = sign_up("eve"),
               staff = sign_up("staff", "moderator");
  const pb::Channel group = create(owner, pb::CHANNEL_KIND_GROUP, "Raid team");
  pb::MemberRequest add;
  add.set_channel_id(group.id());
  pb::Member member;
  for (const Player* p : {&mod, &bob}) {
    add.set_player_id(p->id);
    ASSERT_TRUE(call(owner, &pb::Chat::Stub::AddMember, add, &member).ok());
  }
  // Groups are members only.
  EXPECT_EQ(join(eve, group.id()).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(send(eve, group.id(), "let me in").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status status;
  history(eve, group.id(), "", pb::DIRECTION_OLDER, 0, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  add.set_player_id(eve.id);
  EXPECT_EQ(call(bob, &pb::Chat::Stub::AddMember, add, &member).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(
      moderate(owner, group.id(), mod.id, pb::MODERATION_ACTION_SET_ROLE, 0, pb::ROLE_MODERATOR).ok());
  EXPECT_EQ(moderate(mod, group.id(), owner.id, pb::MODERATION_ACTION_MUTE, 60).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  Reader live(chat(), owner.token, group.id());
  ASSERT_TRUE(eventually([&] { return live.caught_up(); }));
  pb::ChatEvent message, other;
  ASSERT_TRUE(send(bob, group.id(), "first draft", &message).ok());
  ASSERT_TRUE(send(bob, group.id(), "something rude", &other).ok());
  pb::EditRequest edit;
  edit.set_channel_id(group.id());
  edit.set_seq(message.seq());
  edit.set_text("final text");
  pb::ChatEvent edited;
  // Nobody rewrites another player's words, not even the owner.
  EXPECT_EQ(call(owner, &pb::Chat::Stub::Edit, edit, &edited).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  edit.set_text("bob's own edit");
  ASSERT_TRUE(call(bob, &pb::Chat::Stub::Edit, edit, &edited).ok());
  EXPECT_EQ(edited.type(), pb::EVENT_TYPE_EDIT);
  EXPECT_EQ(edited.target_seq(), message.seq());
  // The message a moderator deletes was edited first: the text goes from its edit too.
  pb::EditRequest edit_other;
  edit_other.set_channel_id(group.id());
  edit_other.set_seq(other.seq());
  edit_other.set_text("something even more rude");
  pb::ChatEvent edited_other;
  ASSERT_TRUE(call(bob, &pb::Chat::Stub::Edit, edit_other, &edited_other).ok());
  pb::DeleteRequest remove;
  remove.set_channel_id(group.id());
  remove.set_seq(other.seq());
  pb::ChatEvent removed;
  ASSERT_TRUE(call(mod, &pb::Chat::Stub::Delete, remove, &removed).ok());
  EXPECT_EQ(call(mod, &pb::Chat::Stub::Delete, remove, &removed).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // The history shows the edit and the removal; the removed text is gone.
  const pb::HistoryResponse page = history(owner, group.id(), "", pb::DIRECTION_NEWER);
  std::map<uint64_t, pb::ChatEvent> by_seq;
  for (const auto& e : page.events()) by_seq[e.seq()] = e;
  EXPECT_EQ(by_seq[message.seq()].text(), "bob's own edit");
  EXPECT_TRUE(by_seq[message.seq()].edited());
  EXPECT_TRUE(by_seq[other.seq()].deleted());
  EXPECT_EQ(by_seq[other.seq()].text(), "");
  EXPECT_EQ(by_seq[removed.seq()].type(), pb::EVENT_TYPE_DELETE);
  EXPECT_EQ(by_seq[edited_other.seq()].type(), pb::EVENT_TYPE_EDIT);
  EXPECT_EQ(by_seq[edited_other.seq()].text(), "");
  for (const auto& e : page.events()) EXPECT_EQ(e.text().find("rude"), std::string::npos);
  // The live stream saw the same events, in order: the same seqs, kinds, senders and targets.
  ASSERT_TRUE(eventually([&] { return live.has_seq(removed.seq()); }));
  std::vector<std::tuple<uint64_t, int, std::string, uint64_t>> seen, stored;
  for (const auto& e : live.events()) {
    if (e.type() != pb::EVENT_TYPE_CAUGHT_UP && e.seq() <= removed.seq())
      seen.emplace_back(e.seq(), e.type(), e.sender_id(), e.target_seq());
  }
  for (const auto& e : page.events()) {
    if (e.seq() >= message.seq()) stored.emplace_back(e.seq(), e.type(), e.sender_id(), e.target_seq());
  }
  EXPECT_EQ(seen, stored);

  // Mute, then unmute.
  ASSERT_TRUE(moderate(mod, group.id(), bob.id, pb::MODERATION_ACTION_MUTE, 600).ok());
  status = send(bob, group.id(), "can you hear me");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(status.error_message().find("muted"), std::string::npos);
  ASSERT_TRUE(moderate(mod, group.id(), bob.id, pb::MODERATION_ACTION_UNMUTE).ok());
  ASSERT_TRUE(send(bob, group.id(), "back").ok());

  // Kick ends bob's stream; ban keeps him out.
  Reader bobs(chat(), bob.token, group.id());
  ASSERT_TRUE(eventually([&] { return bobs.caught_up(); }));
  ASSERT_TRUE(moderate(mod, group.id(), bob.id, pb::MODERATION_ACTION_KICK).ok());
  ASSERT_TRUE(eventually([&] { return bobs.ended(); }));
  EXPECT_EQ(bobs.status().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(send(bob, group.id(), "still here?").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(moderate(staff, group.id(), bob.id, pb::MODERATION_ACTION_BAN).ok());  // a global moderator
  add.set_player_id(bob.id);
  EXPECT_EQ(call(owner, &pb::Chat::Stub::AddMember, add, &member).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(moderate(owner, group.id(), bob.id, pb::MODERATION_ACTION_UNBAN).ok());
  ASSERT_TRUE(call(owner, &pb::Chat::Stub::AddMember, add, &member).ok());

  // Moderation events are in the history too.
  int moderation = 0;
  const pb::HistoryResponse newest = history(owner, group.id(), "", pb::DIRECTION_OLDER);
  for (const auto& e : newest.events()) {
    moderation += e.type() == pb::EVENT_TYPE_MODERATION;
  }
  EXPECT_EQ(moderation, 6);  // role, mute, unmute, kick, ban, unban

  // Direct messages: refused once either player blocks the other.
  pb::OpenDirectRequest open;
  open.set_player_id(eve.id);
  pb::Channel direct;
  ASSERT_TRUE(call(bob, &pb::Chat::Stub::OpenDirect, open, &direct).ok());
  ASSERT_TRUE(send(bob, direct.id(), "hi eve").ok());
  ASSERT_TRUE(send(eve, direct.id(), "hi bob").ok());
  EXPECT_EQ(send(owner, direct.id(), "me too").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  pb::BlockRequest block;
  block.set_player_id(bob.id);
  pb::BlockResponse blocked;
  ASSERT_TRUE(call(eve, &pb::Chat::Stub::Block, block, &blocked).ok());
  EXPECT_EQ(send(bob, direct.id(), "hello?").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(bob, &pb::Chat::Stub::OpenDirect, open, &direct).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(call(eve, &pb::Chat::Stub::Unblock, block, &blocked).ok());
  EXPECT_TRUE(send(bob, direct.id(), "hello again").ok());
}

TEST_P(ChatThroughTheHost, LimitsAreEnforcedAndBadInputNamesTheField) {
  start(
      "messages_per_player_per_10s = 5\nmax_message_bytes = 64\nmax_message_chars = 20\nword_filter = "
      "\"darn, "
      "heck\"\nmax_subscribers_per_player = 2\nmax_channels_per_player = 3\n");
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("limits"));
  pb::ChatEvent event;
  ASSERT_TRUE(send(alice, room.id(), "well DARN it", &event).ok());
  EXPECT_EQ(event.text(), "well **** it");
  grpc::Status status = send(alice, room.id(), std::string(21, 'a'));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("text"), std::string::npos);
  status = send(alice, room.id(), std::string(22, 'a').replace(0, 22, "ééééééééééééééééééééééé"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = send(alice, room.id(), "evil \xE2\x80\xAE txt");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("bidirectional"), std::string::npos);
  status = send(alice, room.id(), "bad \xFF utf8");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  status = send(alice, "lobby", "no kind");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("channel_id"), std::string::npos);
  EXPECT_EQ(send(alice, "room:" + id("nowhere"), "hello").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(send(bob, room.id(), "not joined").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  pb::CreateChannelRequest bad_room;
  bad_room.set_kind(pb::CHANNEL_KIND_ROOM);
  bad_room.set_name("a/b");
  pb::Channel out;
  status = call(alice, &pb::Chat::Stub::CreateChannel, bad_room, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("name"), std::string::npos);
  bad_room.set_name(id("limits"));
  EXPECT_EQ(call(bob, &pb::Chat::Stub::CreateChannel, bad_room, &out).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // The rate: 5 in 10 s (one spent above, the refused ones did not count).
  int accepted = 1;
  for (int i = 0; i < 10; ++i) {
    status = send(alice, room.id(), "spam");
    if (status.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_NE(status.error_message().find("messages_per_player_per_10s"), std::string::npos);
    }
  }
  EXPECT_LE(accepted, 10);  // a window boundary may fall inside the loop
  EXPECT_GE(accepted, 5);

  // Channels per player: alice owns one; two more, then no more.
  create(alice, pb::CHANNEL_KIND_GROUP, "one");
  create(alice, pb::CHANNEL_KIND_GROUP, "two");
  pb::CreateChannelRequest more;
  more.set_kind(pb::CHANNEL_KIND_GROUP);
  more.set_name("three");
  status = call(alice, &pb::Chat::Stub::CreateChannel, more, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("max_channels_per_player"), std::string::npos);

  // Subscribers per player: two, the third is refused.
  Reader one(chat(), bob.token, room.id()), two(chat(), bob.token, room.id());
  ASSERT_TRUE(eventually([&] { return one.caught_up() && two.caught_up(); }));
  Reader three(chat(), bob.token, room.id());
  ASSERT_TRUE(eventually([&] { return three.ended(); }));
  EXPECT_EQ(three.status().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  Reader bad_cursor(chat(), alice.token, room.id(), "not-a-cursor");
  ASSERT_TRUE(eventually([&] { return bad_cursor.ended(); }));
  EXPECT_EQ(bad_cursor.status().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad_cursor.status().error_message().find("cursor"), std::string::npos);
}

TEST_P(ChatThroughTheHost, APlayerIsOnlineWhileHoldingAStream) {
  start();
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("presence"));
  const auto online = [&] {
    pb::ListOnlineRequest request;
    request.set_channel_id(room.id());
    pb::ListOnlineResponse response;
    EXPECT_TRUE(call(alice, &pb::Chat::Stub::ListOnline, request, &response).ok());
    return std::set<std::string>(response.player_ids().begin(), response.player_ids().end());
  };
  EXPECT_TRUE(online().empty());
  {
    Reader reader(chat(), bob.token, room.id());
    ASSERT_TRUE(eventually([&] { return reader.caught_up(); }));
    EXPECT_EQ(online(), std::set<std::string>{bob.id});
    reader.cancel();
  }
  EXPECT_TRUE(eventually([&] { return online().empty(); }));
}

// Streams move to the next generation of the plugin: every acknowledged message arrives once, in order.
TEST_P(ChatThroughTheHost, AReloadUnderLiveStreamsLosesNothingAndRepeatsNothing) {
  start();
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("reload"));
  const pb::Channel quiet = create(alice, pb::CHANNEL_KIND_ROOM, id("reload-eph"), pb::RETENTION_EPHEMERAL);
  pb::ChatEvent first;
  ASSERT_TRUE(send(alice, room.id(), "before", &first).ok());
  std::vector<std::unique_ptr<Reader>> readers;
  for (int i = 0; i < 4; ++i) readers.push_back(std::make_unique<Reader>(chat(), bob.token, room.id(), ""));
  // One still replaying from the start when the reload comes.
  readers.push_back(std::make_unique<Reader>(chat(), alice.token, room.id(), "c1.0"));
  Reader ephemeral(chat(), alice.token, quiet.id());
  for (auto& r : readers) ASSERT_TRUE(eventually([&] { return r->caught_up(); }));
  ASSERT_TRUE(eventually([&] { return ephemeral.caught_up(); }));
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::atomic<uint64_t> last{first.seq()};
  std::thread sender([&] {
    for (int i = 0; !stop && i < 100000; ++i) {
      pb::ChatEvent event;
      if (send(alice, room.id(), "during " + std::to_string(i), &event).ok()) {
        last = event.seq();
      } else {
        ++failed;
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return last > first.seq() + 20; }));
  auto admin = gameverse::host::v1::PluginAdmin::NewStub(nodes_[0].host->channel());
  for (int reload = 0; reload < 2; ++reload) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    gameverse::host::v1::ReloadPluginRequest request;
    request.set_name("chat");
    request.set_force(true);
    gameverse::host::v1::OperationResult result;
    const grpc::Status status = admin->ReloadPlugin(&context, request, &result);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const uint64_t at = last;
    ASSERT_TRUE(eventually([&] { return last > at + 20; }));
  }
  stop = true;
  sender.join();
  pb::ChatEvent final_event, final_ephemeral;
  ASSERT_TRUE(send(alice, room.id(), "last", &final_event).ok());
  ASSERT_TRUE(send(alice, quiet.id(), "after the reloads", &final_ephemeral).ok());
  for (size_t i = 0; i < readers.size(); ++i) {
    ASSERT_TRUE(eventually([&] { return readers[i]->has_seq(final_event.seq()); }, std::chrono::seconds(30)))
        << "reader " << i << ": " << readers[i]->seqs().size() << " events, "
        << readers[i]->status().error_message();
    expect_exactly_once_in_order(*readers[i], i == 4 ? 1 : first.seq() + 1, final_event.seq(),
                                 "reader " + std::to_string(i));
  }
  ASSERT_TRUE(eventually([&] { return ephemeral.has_seq(final_ephemeral.seq()); }));
  EXPECT_EQ(failed, 0);
}

// Three hosts on one PostgreSQL and one Redis: messages sent through two of them reach the
// subscribers on all three exactly once and in order; presence is seen from every host.
TEST_P(ChatThroughTheHost, ThreeHostsDeliverEveryMessageOnceInOrderAndSharePresence) {
  if (GetParam() != "postgresql") GTEST_SKIP() << "hosts share a PostgreSQL store";
  if (redis_url().empty()) GTEST_SKIP() << "GAMEVERSE_TEST_REDIS_URL is not set";
  const std::string shared =
      "[redis]\nurl = \"" + redis_url() + "\"\n[cache]\nbackend = \"redis\"\n[pubsub]\nbackend = \"redis\"\n";
  // A lost announcement is caught by the head check within a second.
  for (int i = 0; i < 3; ++i) start("head_check_interval_ms = 500\n", shared);
  const Player alice = sign_up("alice"), bob = sign_up("bob"), carol = sign_up("carol");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("world"));
  ASSERT_TRUE(join(bob, room.id(), 1).ok());
  ASSERT_TRUE(join(carol, room.id(), 2).ok());
  std::vector<std::unique_ptr<Reader>> readers;
  for (size_t node = 0; node < 3; ++node) {
    readers.push_back(std::make_unique<Reader>(chat(node), carol.token, room.id(), ""));
  }
  for (auto& r : readers) ASSERT_TRUE(eventually([&] { return r->caught_up(); }));
  std::atomic<uint64_t> max_seq{0};
  std::vector<std::thread> senders;
  for (size_t node = 0; node < 2; ++node) {
    senders.emplace_back([&, node] {
      const Player& p = node == 0 ? alice : bob;
      for (int i = 0; i < 150; ++i) {
        pb::ChatEvent event;
        const grpc::Status status = send(p, room.id(), "via host " + std::to_string(node), &event, node);
        ASSERT_TRUE(status.ok()) << status.error_message();
        uint64_t seen = max_seq;
        while (event.seq() > seen && !max_seq.compare_exchange_weak(seen, event.seq())) {
        }
      }
    });
  }
  for (auto& t : senders) t.join();
  ASSERT_EQ(max_seq, 300u);
  for (size_t node = 0; node < 3; ++node) {
    ASSERT_TRUE(eventually([&] { return readers[node]->has_seq(300); }, std::chrono::seconds(30)))
        << "host " << node << ": " << readers[node]->seqs().size() << " events";
    expect_exactly_once_in_order(*readers[node], 1, 300, "the subscriber on host " + std::to_string(node));
  }
  // Carol holds streams on all three; host 0 sees her online, and bob once he subscribes on host 1.
  Reader bobs(chat(1), bob.token, room.id());
  ASSERT_TRUE(eventually([&] { return bobs.caught_up(); }));
  const auto online = [&](size_t node) {
    pb::ListOnlineRequest request;
    request.set_channel_id(room.id());
    pb::ListOnlineResponse response;
    EXPECT_TRUE(call(alice, &pb::Chat::Stub::ListOnline, request, &response, node).ok());
    return std::set<std::string>(response.player_ids().begin(), response.player_ids().end());
  };
  EXPECT_TRUE(eventually([&] { return online(0) == std::set<std::string>{bob.id, carol.id}; }));
  EXPECT_TRUE(eventually([&] { return online(2) == std::set<std::string>{bob.id, carol.id}; }));
  bobs.cancel();
  EXPECT_TRUE(eventually([&] { return online(0) == std::set<std::string>{carol.id}; }));
}

// A client that stops reading is ended with RESOURCE_EXHAUSTED naming the cursor to resume from,
// rather than growing the host's memory; from that cursor it misses nothing.
TEST_P(ChatThroughTheHost, ASlowSubscriberIsEndedWithTheCursorToResumeFromAndMissesNothing) {
  // The host queues 16 responses' worth per stream: 256 KiB here.
  start("max_message_chars = 4000\nmax_response_bytes = 8192\n", "[server]\nmax_message_bytes = 16384\n");
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("slow"));
  // A client whose flow-control window stays at 64 KiB (no bandwidth probing to widen it), so
  // what it does not read waits in the host.
  grpc::ChannelArguments args;
  args.SetInt("grpc.http2.bdp_probe", 0);
  args.SetInt("grpc.http2.lookahead_bytes", 65536);
  auto slow_chat = pb::Chat::NewStub(
      grpc::CreateCustomChannel(nodes_[0].host->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  bearer(context, bob.token);
  pb::SubscribeRequest request;
  request.set_channel_id(room.id());
  auto stream = slow_chat->Subscribe(&context, request);
  pb::SubscribeResponse response;
  ASSERT_TRUE(stream->Read(&response));  // caught up; then it reads nothing while 3.6 MB are sent
  ASSERT_EQ(response.events(0).type(), pb::EVENT_TYPE_CAUGHT_UP);
  const std::string text(3000, 'x');
  pb::ChatEvent last;
  for (int i = 0; i < 1200; ++i) ASSERT_TRUE(send(alice, room.id(), text, &last).ok());
  std::vector<uint64_t> seqs;
  while (stream->Read(&response)) {
    for (const auto& e : response.events()) seqs.push_back(e.seq());
  }
  const grpc::Status status = stream->Finish();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  const size_t at = status.error_message().find("resume from cursor ");
  ASSERT_NE(at, std::string::npos) << status.error_message();
  const std::string cursor = status.error_message().substr(at + std::string("resume from cursor ").size());
  ASSERT_FALSE(seqs.empty());
  ASSERT_LT(seqs.size(), 1200u);
  Reader resumed(chat(), bob.token, room.id(), cursor);
  ASSERT_TRUE(eventually([&] { return resumed.has_seq(last.seq()); }, std::chrono::seconds(30)))
      << resumed.status().error_message();
  for (uint64_t s : resumed.seqs()) seqs.push_back(s);
  std::vector<uint64_t> expected;
  for (uint64_t s = 1; s <= last.seq(); ++s) expected.push_back(s);
  EXPECT_EQ(seqs, expected);
}

// Two hosts that share the store but not pub/sub (each has its own in-process bus): no
// announcement crosses, so the second host's subscriber gets every message from its head check and
// gap refills, still once each and in order.
TEST_P(ChatThroughTheHost, WithEveryAnnouncementLostTheHeadCheckStillDeliversInOrder) {
  if (GetParam() != "postgresql") GTEST_SKIP() << "hosts share a PostgreSQL store";
  start("head_check_interval_ms = 100\n");
  start("head_check_interval_ms = 100\n");
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("lossy"));
  Reader far(chat(1), bob.token, room.id());
  ASSERT_TRUE(eventually([&] { return far.caught_up(); }));
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(send(alice, room.id(), "m" + std::to_string(i)).ok());
  ASSERT_TRUE(eventually([&] { return far.has_seq(60); }, std::chrono::seconds(30))) << far.seqs().size();
  expect_exactly_once_in_order(far, 1, 60, "the subscriber on the host that heard nothing");
}

// An ephemeral channel keeps its events for ephemeral_retention_s, then sweeps them; streams go on.
// The retention is long while the event is checked, then shortened (a config reload) to sweep it,
// so a slow machine does not sweep it before it is looked at.
TEST_P(ChatThroughTheHost, AnEphemeralChannelForgetsItsEventsAfterItsRetention) {
  Node& node = start("ephemeral_retention_s = 3600\n");
  const Player alice = sign_up("alice");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("fleeting"), pb::RETENTION_EPHEMERAL);
  EXPECT_EQ(room.retention(), pb::RETENTION_EPHEMERAL);
  ASSERT_TRUE(send(alice, room.id(), "soon gone").ok());
  EXPECT_EQ(history(alice, room.id(), "", pb::DIRECTION_NEWER).events_size(), 1);
  node.host->write_config(config("ephemeral_retention_s = 1\n", data_dirs_.back()->path().string(), ""));
  node.host->signal(SIGHUP);
  ASSERT_TRUE(
      eventually([&] { return history(alice, room.id(), "", pb::DIRECTION_NEWER).events_size() == 0; },
                 std::chrono::seconds(30)));
  // A stream from before the sweep skips what is gone and delivers what comes.
  Reader reader(chat(), alice.token, room.id(), "c1.0");
  ASSERT_TRUE(eventually([&] { return reader.caught_up(); }));
  pb::ChatEvent next;
  ASSERT_TRUE(send(alice, room.id(), "still here", &next).ok());
  EXPECT_EQ(next.seq(), 2u);
  ASSERT_TRUE(eventually([&] { return reader.has_seq(2); }));
  EXPECT_EQ(reader.seqs(), std::vector<uint64_t>{2});
}

// Publishes raw payloads on the chat's events topic straight into Redis, as any holder of Redis
// access (or any plugin in the process) can: one `redis-cli --pipe` run of PUBLISH commands.
void redis_publish(const std::vector<std::string>& payloads) {
  TempDir dir;
  const std::string file = (dir.path() / "publish.resp").string();
  std::string commands;
  auto bulk = [&](const std::string& s) { commands += "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; };
  for (const std::string& payload : payloads) {
    commands += "*3\r\n";
    bulk("PUBLISH");
    bulk("gameverse:topic:gameverse.chat.v1.events");
    bulk(payload);
  }
  FILE* f = std::fopen(file.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(commands.data(), 1, commands.size(), f);
  std::fclose(f);
  const std::string command = "redis-cli -u '" + redis_url() + "' --pipe < '" + file + "' > /dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
}

std::string redis_shared() {
  return "[redis]\nurl = \"" + redis_url() +
         "\"\n[cache]\nbackend = \"redis\"\n[pubsub]\nbackend = \"redis\"\n";
}

// A forged announcement (any text, any sender, a kick of anyone) is only a hint: subscribers get
// the events the store holds, the real event with that seq is not hidden, and nobody is kicked.
TEST_P(ChatThroughTheHost, AForgedAnnouncementDeliversNothingHidesNothingAndKicksNobody) {
  if (GetParam() != "postgresql" || redis_url().empty()) GTEST_SKIP() << "needs Redis pub/sub";
  start("", redis_shared());
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("forged"));
  Reader reader(chat(), bob.token, room.id());
  ASSERT_TRUE(eventually([&] { return reader.caught_up(); }));
  pb::ChatEvent forged;
  forged.set_channel_id(room.id());
  forged.set_seq(1);
  forged.set_type(pb::EVENT_TYPE_MESSAGE);
  forged.set_sender_id(alice.id);
  forged.set_text("FORGED: send me your password");
  redis_publish({forged.SerializeAsString()});
  pb::ChatEvent real;
  ASSERT_TRUE(send(alice, room.id(), "the real first message", &real).ok());
  ASSERT_EQ(real.seq(), 1u);
  ASSERT_TRUE(eventually([&] { return reader.has_seq(1); }));
  pb::ChatEvent kick;
  kick.set_channel_id(room.id());
  kick.set_seq(2);
  kick.set_type(pb::EVENT_TYPE_MODERATION);
  kick.set_moderation(pb::MODERATION_ACTION_KICK);
  kick.set_subject_id(bob.id);
  redis_publish({kick.SerializeAsString()});
  pb::ChatEvent second;
  ASSERT_TRUE(send(alice, room.id(), "the real second message", &second).ok());
  ASSERT_TRUE(eventually([&] { return reader.has_seq(second.seq()) || reader.ended(); }));
  EXPECT_FALSE(reader.ended()) << "a forged kick ended the stream: " << reader.status().error_message();
  std::vector<std::string> texts;
  for (const auto& e : reader.events()) {
    if (e.type() == pb::EVENT_TYPE_MESSAGE) texts.push_back(e.text());
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"the real first message", "the real second message"}));
  expect_exactly_once_in_order(reader, 1, second.seq(), "bob");
}

// Announcements of seqs far past the channel's head move nothing: the feed never marks as
// delivered what the store does not hold, and real messages keep coming.
TEST_P(ChatThroughTheHost, AnnouncementsFarAheadOfTheHeadDoNotStallTheFeed) {
  if (GetParam() != "postgresql" || redis_url().empty()) GTEST_SKIP() << "needs Redis pub/sub";
  start("head_check_interval_ms = 200\n", redis_shared());
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("ahead"));
  Reader reader(chat(), bob.token, room.id());
  ASSERT_TRUE(eventually([&] { return reader.caught_up(); }));
  std::vector<std::string> payloads;
  for (uint64_t i = 0; i < 300; ++i) {
    pb::ChatEvent forged;
    forged.set_channel_id(room.id());
    forged.set_seq(1000000000000000ull + i);
    forged.set_type(pb::EVENT_TYPE_MESSAGE);
    payloads.push_back(forged.SerializeAsString());
  }
  redis_publish(payloads);
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(send(alice, room.id(), "real " + std::to_string(i)).ok());
  ASSERT_TRUE(eventually([&] { return reader.has_seq(3); })) << reader.seqs().size() << " events";
  expect_exactly_once_in_order(reader, 1, 3, "bob");
  // Later messages go out too: nothing was marked delivered past the head.
  pb::ChatEvent fourth;
  ASSERT_TRUE(send(alice, room.id(), "real 4", &fourth).ok());
  ASSERT_TRUE(eventually([&] { return reader.has_seq(fourth.seq()); }));
  EXPECT_EQ(reader.seqs(), (std::vector<uint64_t>{1, 2, 3, 4}));
}

// A kick whose announcement never reaches the host holding the kicked player's stream (the hosts
// share the store but not pub/sub): the head check reads the kick from the store, delivers it, and
// ends the stream before anything sent after it.
TEST_P(ChatThroughTheHost, AKickEndsTheStreamOnAHostThatMissedItsAnnouncement) {
  if (GetParam() != "postgresql") GTEST_SKIP() << "hosts share a PostgreSQL store";
  // The access re-check is kept out of the way: the kick event alone must end the stream.
  start("head_check_interval_ms = 100\naccess_recheck_interval_ms = 3600000\n");
  start("head_check_interval_ms = 100\naccess_recheck_interval_ms = 3600000\n");
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel group = create(alice, pb::CHANNEL_KIND_GROUP, "secret club");
  pb::MemberRequest add;
  add.set_channel_id(group.id());
  add.set_player_id(bob.id);
  pb::Member member;
  ASSERT_TRUE(call(alice, &pb::Chat::Stub::AddMember, add, &member).ok());
  Reader far(chat(1), bob.token, group.id());
  ASSERT_TRUE(eventually([&] { return far.caught_up(); }));
  ASSERT_TRUE(moderate(alice, group.id(), bob.id, pb::MODERATION_ACTION_KICK).ok());
  pb::ChatEvent secret;
  ASSERT_TRUE(send(alice, group.id(), "now that bob is gone", &secret).ok());
  ASSERT_TRUE(eventually([&] { return far.ended(); }, std::chrono::seconds(30)));
  EXPECT_EQ(far.status().error_code(), grpc::StatusCode::PERMISSION_DENIED) << far.status().error_message();
  EXPECT_TRUE(far.has_seq(secret.seq() - 1)) << "the kick itself is delivered";
  EXPECT_FALSE(far.has_seq(secret.seq())) << "the kicked player read the group's message";
}

// Leaving ends the player's streams to the channel on this host at once, and on another host at
// its next access re-check.
TEST_P(ChatThroughTheHost, LeavingEndsThePlayersStreamsOnEveryHost) {
  if (GetParam() != "postgresql") GTEST_SKIP() << "hosts share a PostgreSQL store";
  start("access_recheck_interval_ms = 200\n");
  start("access_recheck_interval_ms = 200\n");
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel group = create(alice, pb::CHANNEL_KIND_GROUP, "leavers");
  pb::MemberRequest add;
  add.set_channel_id(group.id());
  add.set_player_id(bob.id);
  pb::Member member;
  ASSERT_TRUE(call(alice, &pb::Chat::Stub::AddMember, add, &member).ok());
  Reader near(chat(0), bob.token, group.id());
  Reader far(chat(1), bob.token, group.id());
  ASSERT_TRUE(eventually([&] { return near.caught_up() && far.caught_up(); }));
  pb::LeaveRequest leave;
  leave.set_channel_id(group.id());
  pb::LeaveResponse left;
  ASSERT_TRUE(call(bob, &pb::Chat::Stub::Leave, leave, &left).ok());
  ASSERT_TRUE(eventually([&] { return near.ended() && far.ended(); }, std::chrono::seconds(30)));
  EXPECT_EQ(near.status().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(far.status().error_code(), grpc::StatusCode::PERMISSION_DENIED) << far.status().error_message();
}

// Replays to clients that read nothing wait on a timer, not on the plugin's pool threads: with
// more of them than the plugin has threads, other calls are still answered at once. A client that
// takes nothing for a while is ended with the cursor to resume from.
TEST_P(ChatThroughTheHost, StalledReplaysHoldNoPoolThreadAndEndWithTheirCursor) {
  if (GetParam() != "sqlite") GTEST_SKIP() << "the store does not matter here";
  start("max_message_chars = 4000\nmax_response_bytes = 8192\n",
        "[server]\nmax_message_bytes = 16384\n[blocking]\nthreads = 8\nthreads_per_plugin = 4\n");
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("stall"));
  const std::string text(3000, 'x');
  pb::ChatEvent last;
  for (int i = 0; i < 1200; ++i) ASSERT_TRUE(send(alice, room.id(), text, &last).ok());
  // Clients whose flow-control window stays at 64 KiB and that read nothing.
  grpc::ChannelArguments args;
  args.SetInt("grpc.http2.bdp_probe", 0);
  args.SetInt("grpc.http2.lookahead_bytes", 65536);
  auto slow_chat = pb::Chat::NewStub(
      grpc::CreateCustomChannel(nodes_[0].host->address(), grpc::InsecureChannelCredentials(), args));
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<pb::SubscribeResponse>>> streams;
  for (int i = 0; i < 8; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    bearer(*contexts.back(), bob.token);
    pb::SubscribeRequest request;
    request.set_channel_id(room.id());
    request.set_cursor("c1.0");
    streams.push_back(slow_chat->Subscribe(contexts.back().get(), request));
  }
  // Every replay has begun (the host sent its first response) and waits for its client. Calls
  // are answered meanwhile: the deadline only keeps the test from hanging, a waiting replay would
  // hold its thread for seconds.
  for (auto& stream : streams) stream->WaitForInitialMetadata();
  {
    grpc::ClientContext context;
    bearer(context, alice.token);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    pb::HistoryRequest request;
    request.set_channel_id(room.id());
    request.set_page_size(1);
    pb::HistoryResponse response;
    const grpc::Status status = chat()->History(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  }
  // The host ends them while their clients read nothing: bob is no longer online.
  auto online = [&] {
    pb::ListOnlineRequest request;
    request.set_channel_id(room.id());
    pb::ListOnlineResponse response;
    const grpc::Status status = call(alice, &pb::Chat::Stub::ListOnline, request, &response);
    if (!status.ok()) return std::optional<std::vector<std::string>>();
    return std::optional(
        std::vector<std::string>(response.player_ids().begin(), response.player_ids().end()));
  };
  ASSERT_TRUE(eventually(
      [&] {
        const auto ids = online();
        return ids && std::find(ids->begin(), ids->end(), bob.id) == ids->end();
      },
      std::chrono::seconds(60)))
      << "the stalled replays are still open";
  // Each stream ended RESOURCE_EXHAUSTED naming the cursor it reached; resuming from it delivers
  // the rest with no gap and no repeat.
  for (size_t i = 0; i < streams.size(); ++i) {
    std::vector<uint64_t> seqs;
    pb::SubscribeResponse response;
    while (streams[i]->Read(&response)) {
      for (const auto& e : response.events()) seqs.push_back(e.seq());
    }
    const grpc::Status status = streams[i]->Finish();
    ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    const size_t at = status.error_message().find("resume from cursor ");
    ASSERT_NE(at, std::string::npos) << status.error_message();
    if (i > 0) continue;
    const std::string cursor = status.error_message().substr(at + std::string("resume from cursor ").size());
    ASSERT_LT(seqs.size(), 1200u);
    Reader resumed(chat(), bob.token, room.id(), cursor);
    ASSERT_TRUE(
        eventually([&] { return resumed.has_seq(last.seq()) || resumed.ended(); }, std::chrono::seconds(30)));
    for (uint64_t s : resumed.seqs()) seqs.push_back(s);
    std::vector<uint64_t> expected;
    for (uint64_t s = 1; s <= last.seq(); ++s) expected.push_back(s);
    EXPECT_EQ(seqs, expected);
  }
}

// A Subscribe replays at most max_replay_events (further back: page History), Subscribe opens are
// metered per player, and the address limit can be left to the per-player one when every client
// arrives from one load balancer's address.
TEST_P(ChatThroughTheHost, ReplaysAndStreamOpensAreBoundedAndTheAddressLimitCanBeOff) {
  if (GetParam() != "sqlite") GTEST_SKIP() << "the store does not matter here";
  start(
      "max_replay_events = 5\nreads_per_player_per_10s = 3\nmax_subscribers_per_address = 1\n"
      "count_subscribers_by_address = false\nmax_subscribers_per_player = 20\n");
  const Player alice = sign_up("alice"), bob = sign_up("bob");
  const pb::Channel room = create(alice, pb::CHANNEL_KIND_ROOM, id("bounded"));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(send(alice, room.id(), "m" + std::to_string(i)).ok());
  Reader too_far(chat(), alice.token, room.id(), "c1.0");
  ASSERT_TRUE(eventually([&] { return too_far.ended(); }));
  EXPECT_EQ(too_far.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(too_far.status().error_message().find("max_replay_events"), std::string::npos)
      << too_far.status().error_message();
  // Two players on one address (the test client's): both are served with the address limit off.
  Reader near(chat(), alice.token, room.id(), "c1.5");
  Reader other(chat(), bob.token, room.id());
  ASSERT_TRUE(eventually([&] { return near.caught_up() && other.caught_up(); }))
      << near.status().error_message() << " / " << other.status().error_message();
  EXPECT_EQ(near.seqs(), (std::vector<uint64_t>{6, 7, 8, 9, 10}));
  // alice's fourth open within 10 s is refused (a window boundary may let one more through).
  std::vector<std::unique_ptr<Reader>> more;
  grpc::Status refused;
  for (int i = 0; i < 8 && refused.ok(); ++i) {
    more.push_back(std::make_unique<Reader>(chat(), alice.token, room.id()));
    Reader& r = *more.back();
    ASSERT_TRUE(eventually([&] { return r.caught_up() || r.ended(); }));
    if (r.ended()) refused = r.status();
  }
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_NE(refused.error_message().find("reads_per_player_per_10s"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Stores, ChatThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
