// The chat's rules without a host: text checks, the word filter, ids, cursors, event keys,
// permissions and the in-order delivery verdicts.
#include <gtest/gtest.h>

#include "domain/channel.hpp"
#include "domain/text.hpp"

namespace gameverse::chat {
namespace {

const TextLimits kMessage{32, 10, true};

TEST(ChatText, AcceptsUtf8WithinLimitsAndNamesTheFieldOtherwise) {
  EXPECT_EQ(check_text("text", "héllo ✓", kMessage), "");
  EXPECT_EQ(check_text("text", "two\nlines", kMessage), "");
  EXPECT_NE(check_text("name", "two\nlines", {32, 10, false}), "");
  EXPECT_EQ(check_text("text", "", kMessage), "text: must not be empty");
  EXPECT_EQ(check_text("text", "   ", kMessage), "text: must not be blank");
  EXPECT_EQ(check_text("text", std::string(33, 'a'), kMessage), "text: 33 bytes, at most 32");
  EXPECT_EQ(check_text("text", "ééééééééééé", kMessage), "text: 11 characters, at most 10");
  EXPECT_EQ(check_text("text", "bad \xC3", kMessage), "text: not valid UTF-8 at byte 4");
  EXPECT_EQ(check_text("text", "\xC0\xAF", kMessage), "text: not valid UTF-8 at byte 0");      // overlong
  EXPECT_EQ(check_text("text", "\xED\xA0\x80", kMessage), "text: not valid UTF-8 at byte 0");  // surrogate
  EXPECT_NE(check_text("text", "a\x07", kMessage).find("control"), std::string::npos);
  EXPECT_NE(check_text("text",
                       "abc\xE2\x80\xAE"
                       "cba",
                       kMessage)
                .find("bidirectional"),
            std::string::npos);
  EXPECT_NE(check_text("text", "x\xE2\x81\xA6y", kMessage).find("bidirectional"), std::string::npos);
  EXPECT_EQ(code_points("aé✓"), 3u);
}

TEST(ChatText, IdentifiersAreKeySafe) {
  EXPECT_EQ(check_identifier("name", "lobby-1.eu_west", 64), "");
  EXPECT_NE(check_identifier("name", "a/b", 64), "");
  EXPECT_NE(check_identifier("name", "a:b", 64), "");
  EXPECT_NE(check_identifier("name", std::string(65, 'a'), 64), "");
  EXPECT_EQ(check_identifier("name", "", 64), "name: must not be empty");
}

TEST(ChatWordFilter, MasksWholeWordsWhateverTheirCase) {
  const WordFilter filter({"darn", "héck"}, FilterAction::kMask);
  EXPECT_EQ(filter.apply("Darn it, darnation").text, "**** it, darnation");
  EXPECT_EQ(filter.apply("what the HéCK").text, "what the ****");  // ASCII letters fold
  EXPECT_EQ(filter.apply("what the héck!").text, "what the ****!");
  EXPECT_EQ(filter.apply("what the hÉck").text, "what the hÉck");  // only ASCII folds
  EXPECT_EQ(filter.apply("clean").word, "");
  const WordFilter reject({"darn"}, FilterAction::kReject);
  const auto result = reject.apply("oh DARN");
  EXPECT_TRUE(result.rejected);
  EXPECT_EQ(result.word, "darn");
  EXPECT_THROW(WordFilter({std::string(65, 'a')}, FilterAction::kMask), std::invalid_argument);
}

TEST(ChatIds, ChannelIdsCarryTheirKindAndDirectIdsAreOrdered) {
  EXPECT_EQ(direct_id("bob", "alice"), "dm:alice:bob");
  EXPECT_EQ(direct_id("alice", "bob"), "dm:alice:bob");
  EXPECT_EQ(direct_peer("dm:alice:bob", "alice"), "bob");
  EXPECT_EQ(direct_peer("dm:alice:bob", "carol"), "");
  EXPECT_EQ(kind_of("room:lobby"), ChannelKind::kRoom);
  EXPECT_EQ(kind_of("group:abc"), ChannelKind::kGroup);
  EXPECT_EQ(kind_of("x:abc"), std::nullopt);
  EXPECT_EQ(check_channel_id("channel_id", "room:lobby"), "");
  EXPECT_NE(check_channel_id("channel_id", "dm:bob:alice"), "");
  EXPECT_NE(check_channel_id("channel_id", "room:a/b"), "");
  EXPECT_NE(check_channel_id("channel_id", "lobby").find("channel_id"), std::string::npos);
}

TEST(ChatCursors, RoundTripAndRefuseForeignText) {
  for (uint64_t seq : {0ull, 1ull, 99ull, 1ull << 40, ~0ull})
    EXPECT_EQ(decode_cursor(encode_cursor(seq)), seq);
  EXPECT_EQ(decode_cursor(""), std::nullopt);
  EXPECT_EQ(decode_cursor("c1."), std::nullopt);
  EXPECT_EQ(decode_cursor("c1.zz"), std::nullopt);
  EXPECT_EQ(decode_cursor("42"), std::nullopt);
  EXPECT_EQ(decode_cursor("c1.11111111111111111"), std::nullopt);  // past 64 bits
}

TEST(ChatKeys, EventKeysSortBySeqAndBlocksShareAPrefix) {
  EXPECT_LT(event_key("room:a", 9), event_key("room:a", 10));
  EXPECT_LT(event_key("room:a", 99), event_key("room:a", 100));
  EXPECT_EQ(seq_of_event_key(event_key("room:a", 12345)), 12345u);
  const std::string block = event_block_prefix("room:a", 1200);
  EXPECT_TRUE(event_key("room:a", 1200).starts_with(block));
  EXPECT_TRUE(event_key("room:a", 1299).starts_with(block));
  EXPECT_FALSE(event_key("room:a", 1300).starts_with(block));
  EXPECT_FALSE(event_key("room:a", 1199).starts_with(block));
}

TEST(ChatRules, ModeratorsActBelowTheirRoleAndGlobalModeratorsOnAnyone) {
  Standing owner{true, false, Role::kOwner, 0, false};
  Standing moderator{true, false, Role::kModerator, 0, false};
  Standing member{true, false, Role::kMember, 0, false};
  Standing global{false, false, Role::kMember, 0, true};
  Standing banned_moderator{true, true, Role::kModerator, 0, false};
  EXPECT_TRUE(may_moderate(owner));
  EXPECT_TRUE(may_moderate(moderator));
  EXPECT_FALSE(may_moderate(member));
  EXPECT_TRUE(may_moderate(global));
  EXPECT_FALSE(may_moderate(banned_moderator));
  EXPECT_TRUE(may_moderate_member(moderator, member));
  EXPECT_FALSE(may_moderate_member(moderator, moderator));
  EXPECT_FALSE(may_moderate_member(moderator, owner));
  EXPECT_TRUE(may_moderate_member(owner, moderator));
  EXPECT_FALSE(may_moderate_member(owner, global));
  EXPECT_TRUE(may_moderate_member(global, owner));
  EXPECT_TRUE(muted(Standing{true, false, Role::kMember, 2000, false}, 1000));
  EXPECT_FALSE(muted(Standing{true, false, Role::kMember, 2000, false}, 2000));
}

}  // namespace
}  // namespace gameverse::chat
