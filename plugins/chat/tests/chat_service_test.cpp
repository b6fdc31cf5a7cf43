// The chat's use cases over in-memory repositories: who may moderate whom, blocks, sequencing
// under conflicts, history pages both ways, and deletes that take the text out of history.
#include <gtest/gtest.h>

#include "domain/chat_service.hpp"
#include "tests/in_memory.hpp"

namespace gameverse::chat {
namespace {

using testing::InMemoryCounters;
using testing::InMemoryRepository;

class ChatServiceTest : public ::testing::Test {
 protected:
  ChatServiceTest()
      : service_(repo_, counters_, limits(), WordFilter({"darn"}, FilterAction::kMask), env()) {}

  static ChatLimits limits() {
    ChatLimits l;
    l.messages_per_player_per_10s = 1000;
    l.max_conflict_retries = 4;
    return l;
  }
  ChatEnvironment env() {
    ChatEnvironment e;
    e.now_unix_ms = [this] { return now_; };
    e.new_group_id = [this] { return "g" + std::to_string(++ids_); };
    e.back_off = [](int) {};
    return e;
  }
  static Caller as(const std::string& player, bool global_moderator = false) {
    return {player, global_moderator};
  }

  // A room owned by "owner" with "mod" (a moderator) and "alice", "bob" as members.
  std::string room() {
    const std::string id =
        service_.create_channel(as("owner"), ChannelKind::kRoom, "lobby", std::nullopt, true).id;
    for (const char* p : {"mod", "alice", "bob"}) service_.join(as(p), id);
    service_.moderate(as("owner"), id, "mod", Moderation::kSetRole, 0, Role::kModerator);
    return id;
  }

  static ChatError::Kind refusal(const std::function<void()>& f) {
    try {
      f();
    } catch (const ChatError& e) {
      return e.kind();
    }
    ADD_FAILURE() << "no refusal";
    return ChatError::Kind::kAborted;
  }

  int64_t now_ = 1'700'000'000'000;
  int ids_ = 0;
  InMemoryRepository repo_;
  InMemoryCounters counters_;
  ChatService service_;
};

TEST_F(ChatServiceTest, MembersDoNotModerateAndModeratorsActOnlyBelowTheirRole) {
  const std::string id = room();
  EXPECT_EQ(refusal([&] { service_.moderate(as("alice"), id, "bob", Moderation::kMute, 60, std::nullopt); }),
            ChatError::Kind::kPermissionDenied);
  // A moderator mutes a member, but not the owner, and does not set roles.
  const auto muted = service_.moderate(as("mod"), id, "alice", Moderation::kMute, 60, std::nullopt);
  EXPECT_EQ(muted.member.muted_until_unix_ms, now_ + 60'000);
  EXPECT_EQ(muted.event.type, EventType::kModeration);
  EXPECT_EQ(muted.event.subject_id, "alice");
  EXPECT_EQ(refusal([&] { service_.moderate(as("mod"), id, "owner", Moderation::kBan, 0, std::nullopt); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(
      refusal([&] { service_.moderate(as("mod"), id, "bob", Moderation::kSetRole, 0, Role::kModerator); }),
      ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.moderate(as("mod"), id, "mod", Moderation::kKick, 0, std::nullopt); }),
            ChatError::Kind::kInvalidArgument);
  // A muted member cannot send until the mute ends.
  EXPECT_EQ(refusal([&] { service_.send(as("alice"), id, "hi", ""); }), ChatError::Kind::kPermissionDenied);
  now_ += 61'000;
  EXPECT_EQ(service_.send(as("alice"), id, "hi", "").text, "hi");
  // A global moderator acts on anyone, the owner included.
  EXPECT_NO_THROW(service_.moderate(as("staff", true), id, "owner", Moderation::kMute, 5, std::nullopt));
}

TEST_F(ChatServiceTest, ABanOutlivesLeavingAndEndsMembership) {
  const std::string id = room();
  const uint32_t before = service_.get_channel(as("owner"), id).channel.member_count;
  const auto banned = service_.moderate(as("mod"), id, "bob", Moderation::kBan, 0, std::nullopt);
  EXPECT_TRUE(banned.member.banned);
  EXPECT_FALSE(banned.member.joined);
  EXPECT_EQ(service_.get_channel(as("owner"), id).channel.member_count, before - 1);
  EXPECT_EQ(refusal([&] { service_.join(as("bob"), id); }), ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.history(as("bob"), id, "", Direction::kOlder, 0); }),
            ChatError::Kind::kPermissionDenied);
  service_.moderate(as("mod"), id, "bob", Moderation::kUnban, 0, std::nullopt);
  EXPECT_NO_THROW(service_.join(as("bob"), id));
  // Kicking someone who is not a member is NOT_FOUND and stores nothing.
  const uint64_t head = service_.head(id);
  EXPECT_EQ(refusal([&] { service_.moderate(as("mod"), id, "carol", Moderation::kKick, 0, std::nullopt); }),
            ChatError::Kind::kNotFound);
  EXPECT_EQ(service_.head(id), head);
}

TEST_F(ChatServiceTest, ABlockClosesTheDirectChannelBothWays) {
  const auto dm = service_.open_direct(as("alice"), "bob");
  EXPECT_EQ(dm.id, direct_id("alice", "bob"));
  EXPECT_EQ(service_.send(as("bob"), dm.id, "hello", "").seq, 1u);
  service_.block(as("alice"), "bob");
  EXPECT_EQ(refusal([&] { service_.send(as("bob"), dm.id, "still there?", ""); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.send(as("alice"), dm.id, "bye", ""); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.open_direct(as("bob"), "alice"); }), ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.block(as("alice"), "alice"); }), ChatError::Kind::kInvalidArgument);
  service_.unblock(as("alice"), "bob");
  EXPECT_EQ(service_.send(as("bob"), dm.id, "again", "").seq, 2u);
}

TEST_F(ChatServiceTest, BlocksStopAtTheLimitButRepeatingOneIsAllowed) {
  ChatLimits l = limits();
  l.max_blocks_per_player = 2;
  ChatService service(repo_, counters_, l, WordFilter(), env());
  service.block(as("alice"), "b1");
  service.block(as("alice"), "b2");
  EXPECT_NO_THROW(service.block(as("alice"), "b2"));
  EXPECT_EQ(refusal([&] { service.block(as("alice"), "b3"); }), ChatError::Kind::kResourceExhausted);
}

TEST_F(ChatServiceTest, AConflictOnTheHeadTakesTheNextSeq) {
  const std::string id = room();
  const uint64_t head = service_.head(id);
  // Another host stores an event between this send's read of the head and its commit.
  repo_.conflicts_to_simulate = 1;
  repo_.before_conflict = [&] {
    ChangeSet other;
    Event e;
    e.seq = head + 1;
    e.sender_id = "elsewhere";
    other.head = ChangeSet::HeadWrite{id, head + 1, repo_.head(id).version};
    other.events.push_back({id, e, kCreateOnly, false});
    ASSERT_TRUE(repo_.commit(other));
  };
  const Event sent = service_.send(as("alice"), id, "mine", "");
  EXPECT_EQ(sent.seq, head + 2);
  const auto page = service_.history(as("alice"), id, "", Direction::kOlder, 2);
  ASSERT_EQ(page.events.size(), 2u);
  EXPECT_EQ(page.events[0].sender_id, "elsewhere");
  EXPECT_EQ(page.events[1].text, "mine");
}

TEST_F(ChatServiceTest, ConflictsPastTheRetryLimitAreAbortedAndStoreNothing) {
  const std::string id = room();
  const uint64_t head = service_.head(id);
  repo_.conflicts_to_simulate = 100;
  EXPECT_EQ(refusal([&] { service_.send(as("alice"), id, "lost", ""); }), ChatError::Kind::kAborted);
  EXPECT_EQ(repo_.conflicts_to_simulate, 100 - 5);  // the first attempt and max_conflict_retries more
  repo_.conflicts_to_simulate = 0;
  EXPECT_EQ(service_.head(id), head);
}

TEST_F(ChatServiceTest, ASendWithAClientIdIsStoredOnce) {
  const std::string id = room();
  const Event first = service_.send(as("alice"), id, "once", "c-1");
  const Event again = service_.send(as("alice"), id, "once", "c-1");
  EXPECT_EQ(again.seq, first.seq);
  EXPECT_EQ(service_.head(id), first.seq);
}

TEST_F(ChatServiceTest, HistoryPagesOlderAndNewerMeetWithoutGapOrRepeat) {
  const std::string id = room();
  const uint64_t base = service_.head(id);
  for (int i = 0; i < 7; ++i) service_.send(as("alice"), id, "m" + std::to_string(i), "");
  const uint64_t head = service_.head(id);
  ASSERT_EQ(head, base + 7);

  std::vector<uint64_t> older;
  std::string cursor;
  for (int pages = 0; pages < 20; ++pages) {
    const auto page = service_.history(as("bob"), id, cursor, Direction::kOlder, 3);
    for (auto it = page.events.rbegin(); it != page.events.rend(); ++it) older.push_back(it->seq);
    if (page.next_cursor.empty()) break;
    cursor = page.next_cursor;
  }
  std::vector<uint64_t> newer;
  cursor.clear();
  for (int pages = 0; pages < 20; ++pages) {
    const auto page = service_.history(as("bob"), id, cursor, Direction::kNewer, 3);
    for (const auto& e : page.events) newer.push_back(e.seq);
    if (page.next_cursor.empty()) break;
    cursor = page.next_cursor;
  }
  ASSERT_EQ(newer.size(), head);
  for (uint64_t i = 0; i < head; ++i) {
    EXPECT_EQ(newer[i], i + 1);
    EXPECT_EQ(older[i], head - i);
  }
  EXPECT_EQ(refusal([&] { service_.history(as("bob"), id, encode_cursor(head + 1), Direction::kNewer, 3); }),
            ChatError::Kind::kInvalidArgument);
  EXPECT_EQ(refusal([&] { service_.history(as("bob"), id, "not-a-cursor", Direction::kNewer, 3); }),
            ChatError::Kind::kInvalidArgument);
  EXPECT_EQ(refusal([&] { service_.history(as("bob"), id, "", Direction::kNewer, 201); }),
            ChatError::Kind::kInvalidArgument);
}

TEST_F(ChatServiceTest, ADeleteTakesTheTextOfTheMessageAndItsEditsOutOfHistory) {
  const std::string id = room();
  const Event message = service_.send(as("alice"), id, "secret darn", "");
  EXPECT_EQ(message.text, "secret ****");
  const Event edit = service_.edit(as("alice"), id, message.seq, "still secret");
  EXPECT_EQ(refusal([&] { service_.edit(as("bob"), id, message.seq, "not mine"); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.erase(as("bob"), id, message.seq); }), ChatError::Kind::kPermissionDenied);
  const Event removed = service_.erase(as("mod"), id, message.seq);
  EXPECT_EQ(removed.type, EventType::kDelete);
  EXPECT_EQ(removed.target_seq, message.seq);
  const auto page = service_.history(as("bob"), id, "", Direction::kOlder, 200);
  for (const Event& e : page.events) {
    if (e.seq == message.seq) {
      EXPECT_TRUE(e.deleted);
      EXPECT_TRUE(e.edited);
    }
    EXPECT_EQ(e.text.find("secret"), std::string::npos) << "seq " << e.seq;
  }
  EXPECT_EQ(refusal([&] { service_.edit(as("alice"), id, message.seq, "back"); }),
            ChatError::Kind::kFailedPrecondition);
  EXPECT_EQ(refusal([&] { service_.erase(as("alice"), id, edit.seq); }), ChatError::Kind::kNotFound);
}

TEST_F(ChatServiceTest, TheRateLimitCountsSendsAndAPlayersDeletesButNotAModeratorsDeletes) {
  ChatLimits l = limits();
  l.messages_per_player_per_10s = 2;
  ChatService service(repo_, counters_, l, WordFilter(), env());
  const std::string id = room();
  const Event a = service.send(as("mod"), id, "one", "");
  service.erase(as("mod"), id, a.seq);  // a moderator's delete is free
  const Event b = service.send(as("alice"), id, "two", "");
  service.erase(as("alice"), id, b.seq);
  EXPECT_EQ(refusal([&] { service.send(as("alice"), id, "three", ""); }),
            ChatError::Kind::kResourceExhausted);
  EXPECT_NO_THROW(service.send(as("mod"), id, "four", ""));
  now_ += 10'000;  // the next window
  EXPECT_NO_THROW(service.send(as("alice"), id, "five", ""));
}

TEST_F(ChatServiceTest, OnlineJoinsThisHostAndOtherLiveHosts) {
  const std::string id = room();
  repo_.hosts.push_back({"this", now_ + 5000, {{id, {"stale-self"}}}});
  repo_.hosts.push_back({"other", now_ + 5000, {{id, {"bob"}}, {"room:else", {"carol"}}}});
  repo_.hosts.push_back({"gone", now_ - 1, {{id, {"dave"}}}});
  EXPECT_EQ(service_.list_online(as("alice"), id, {"alice"}, "this"),
            (std::vector<std::string>{"alice", "bob"}));
}

TEST_F(ChatServiceTest, GroupsAreReadByMembersOnlyAndJoinedByInvitation) {
  const auto group =
      service_.create_channel(as("owner"), ChannelKind::kGroup, "Team", Retention::kEphemeral, true);
  EXPECT_EQ(group.channel.retention, Retention::kEphemeral);
  EXPECT_EQ(refusal([&] { service_.join(as("alice"), group.id); }), ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.get_channel(as("alice"), group.id); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.add_member(as("alice"), group.id, "bob"); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_TRUE(service_.add_member(as("owner"), group.id, "alice").joined);
  EXPECT_EQ(service_.get_channel(as("alice"), group.id).channel.member_count, 2u);
  EXPECT_EQ(refusal([&] { service_.create_channel(as("owner"), std::nullopt, "x", std::nullopt, true); }),
            ChatError::Kind::kInvalidArgument);
  EXPECT_EQ(
      refusal([&] { service_.create_channel(as("owner"), ChannelKind::kRoom, "x", std::nullopt, false); }),
      ChatError::Kind::kInvalidArgument);
}

TEST_F(ChatServiceTest, DirectChannelsArePrivateFromStaffUnlessTheOperatorAllowsIt) {
  const std::string dm = service_.open_direct(as("alice"), "bob").id;
  service_.send(as("alice"), dm, "just us", "");
  EXPECT_EQ(refusal([&] { service_.history(as("staff", true), dm, "", Direction::kNewer, 0); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.check_subscribe(as("staff", true), dm); }),
            ChatError::Kind::kPermissionDenied);
  // Staff still read rooms and groups they are not in.
  const std::string id = room();
  EXPECT_NO_THROW(service_.history(as("staff", true), id, "", Direction::kNewer, 0));
  ChatLimits l = limits();
  l.staff_read_direct_channels = true;
  ChatService allowed(repo_, counters_, l, WordFilter(), env());
  EXPECT_EQ(allowed.history(as("staff", true), dm, "", Direction::kNewer, 0).events.size(), 1u);
}

TEST_F(ChatServiceTest, ModeratorsDeleteButNeverEditOthersMessagesAndOnlyBelowTheirRole) {
  const std::string id = room();
  const Event owners = service_.send(as("owner"), id, "welcome", "");
  const Event alices = service_.send(as("alice"), id, "hello", "");
  // Nobody rewrites another player's words, whatever their role.
  EXPECT_EQ(refusal([&] { service_.edit(as("mod"), id, alices.seq, "rewritten"); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.edit(as("owner"), id, alices.seq, "rewritten"); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_EQ(refusal([&] { service_.edit(as("staff", true), id, alices.seq, "rewritten"); }),
            ChatError::Kind::kPermissionDenied);
  // A moderator deletes a member's message but not the owner's.
  EXPECT_EQ(refusal([&] { service_.erase(as("mod"), id, owners.seq); }), ChatError::Kind::kPermissionDenied);
  EXPECT_NO_THROW(service_.erase(as("mod"), id, alices.seq));
  // Global staff delete in a channel they never joined.
  EXPECT_NO_THROW(service_.erase(as("staff", true), id, owners.seq));
  const auto page = service_.history(as("owner"), id, "", Direction::kNewer, 0);
  for (const Event& e : page.events) {
    if (e.type == EventType::kMessage) {
      EXPECT_TRUE(e.deleted);
      EXPECT_EQ(e.text, "");
    }
  }
}

TEST_F(ChatServiceTest, AClientIdWithAnotherTextIsRefusedAndARetryAfterAMuteGetsItsFirstAnswer) {
  const std::string id = room();
  const Event first = service_.send(as("alice"), id, "once", "c-1");
  EXPECT_EQ(refusal([&] { service_.send(as("alice"), id, "something else", "c-1"); }),
            ChatError::Kind::kAlreadyExists);
  service_.moderate(as("mod"), id, "alice", Moderation::kMute, 60, std::nullopt);
  EXPECT_EQ(service_.send(as("alice"), id, "once", "c-1").seq, first.seq);
  EXPECT_EQ(refusal([&] { service_.send(as("alice"), id, "new", "c-2"); }),
            ChatError::Kind::kPermissionDenied);
}

TEST_F(ChatServiceTest, OthersCannotUseUpAPlayersChannelQuotaNorAddThemPastABlock) {
  ChatLimits l = limits();
  l.max_channels_per_player = 2;
  ChatService service(repo_, counters_, l, WordFilter(), env());
  // Three players open direct channels to the victim, and one adds them to a group.
  for (const char* p : {"m1", "m2", "m3"}) service.open_direct(as(p), "victim");
  const std::string group = service.create_channel(as("m1"), ChannelKind::kGroup, "g", std::nullopt, true).id;
  service.add_member(as("m1"), group, "victim");
  EXPECT_EQ(service.list_my_channels(as("victim")).size(), 4u);
  // The victim still creates and joins up to their own limit.
  const std::string own =
      service.create_channel(as("victim"), ChannelKind::kRoom, "mine", std::nullopt, true).id;
  const std::string other =
      service.create_channel(as("m2"), ChannelKind::kRoom, "other", std::nullopt, true).id;
  EXPECT_NO_THROW(service.join(as("victim"), other));
  const std::string third =
      service.create_channel(as("m3"), ChannelKind::kRoom, "third", std::nullopt, true).id;
  EXPECT_EQ(refusal([&] { service.join(as("victim"), third); }), ChatError::Kind::kResourceExhausted);
  (void)own;
  // A player who blocked someone is not put in that player's group.
  service.block(as("alice"), "mallory");
  const std::string trap =
      service.create_channel(as("mallory"), ChannelKind::kGroup, "hi alice", std::nullopt, true).id;
  EXPECT_EQ(refusal([&] { service.add_member(as("mallory"), trap, "alice"); }),
            ChatError::Kind::kPermissionDenied);
  EXPECT_TRUE(service.list_my_channels(as("alice")).empty());
}

TEST_F(ChatServiceTest, ChannelChangesAreRateLimitedCreatedChannelsAreBoundedAndModerationNeedsAKnownPlayer) {
  ChatLimits l = limits();
  l.max_channels_per_player = 2;
  l.max_channels_owned_per_player = 3;
  l.changes_per_player_per_10s = 1000;
  ChatService service(repo_, counters_, l, WordFilter(), env());
  // Create and leave does not make channels without bound.
  int made = 0;
  for (int i = 0; i < 10; ++i) {
    try {
      const std::string g =
          service.create_channel(as("alice"), ChannelKind::kGroup, "g", std::nullopt, true).id;
      service.leave(as("alice"), g);
      ++made;
    } catch (const ChatError& e) {
      EXPECT_EQ(e.kind(), ChatError::Kind::kResourceExhausted) << e.what();
      break;
    }
  }
  EXPECT_EQ(made, 3);
  // Made-up ids leave no member records, except a ban (kept out ahead of time), which is metered.
  const std::string id = room();
  for (Moderation action : {Moderation::kMute, Moderation::kUnmute, Moderation::kUnban, Moderation::kKick}) {
    EXPECT_EQ(refusal([&] { service.moderate(as("owner"), id, "nobody", action, 60, std::nullopt); }),
              ChatError::Kind::kNotFound);
  }
  EXPECT_EQ(service.list_members(as("owner"), id, "", 0).items.size(), 4u);
  service.leave(as("bob"), id);
  EXPECT_TRUE(service.moderate(as("owner"), id, "bob", Moderation::kBan, 0, std::nullopt).member.banned);
  // Changes are metered.
  ChatLimits metered = limits();
  metered.changes_per_player_per_10s = 2;
  ChatService limited(repo_, counters_, metered, WordFilter(), env());
  limited.block(as("carol"), "x1");
  limited.block(as("carol"), "x2");
  EXPECT_EQ(refusal([&] { limited.block(as("carol"), "x3"); }), ChatError::Kind::kResourceExhausted);
  EXPECT_EQ(refusal([&] { limited.join(as("carol"), id); }), ChatError::Kind::kResourceExhausted);
  now_ += 10'000;
  EXPECT_NO_THROW(limited.join(as("carol"), id));
}

TEST_F(ChatServiceTest, ListOnlineIsMeteredPerPlayer) {
  ChatLimits l = limits();
  l.reads_per_player_per_10s = 2;
  ChatService service(repo_, counters_, l, WordFilter(), env());
  const std::string id = room();
  service.list_online(as("alice"), id, {}, "this");
  service.list_online(as("alice"), id, {}, "this");
  EXPECT_EQ(refusal([&] { service.list_online(as("alice"), id, {}, "this"); }),
            ChatError::Kind::kResourceExhausted);
  EXPECT_NO_THROW(service.list_online(as("bob"), id, {}, "this"));
  now_ += 10'000;
  EXPECT_NO_THROW(service.list_online(as("alice"), id, {}, "this"));
}

}  // namespace
}  // namespace gameverse::chat
