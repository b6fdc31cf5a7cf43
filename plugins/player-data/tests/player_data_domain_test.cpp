// The player-data rules without a host: names, bounds, access, versions and quotas, and races
// between writers over the in-memory store (which keeps the host store's version rules).
#include <gtest/gtest.h>

#include <atomic>
#include <limits>
#include <map>
#include <set>
#include <thread>

#include "domain/names.hpp"
#include "domain/player_data_service.hpp"
#include "domain/rules.hpp"
#include "in_memory_repositories.hpp"

namespace gameverse::playerdata {
namespace {

using K = PlayerDataError::Kind;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// Runs `f`, expecting a PlayerDataError of `kind` whose message is `message`.
template <class F>
void expect_error(F&& f, K kind, const std::string& message) {
  try {
    f();
    ADD_FAILURE() << "no error; expected: " << message;
  } catch (const PlayerDataError& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_EQ(std::string(e.what()), message);
  }
}

class PlayerDataDomain : public ::testing::Test {
 protected:
  PlayerDataDomain()
      : writes_([this] { return now_.load(); }),
        service_(
            limits(), store_, store_, store_, [this] { return now_.load(); }, {}, &writes_) {}
  static Limits limits() {
    Limits l;
    l.reserved_names = {"admin", "gameverse"};
    l.name_change_cooldown_ms = 60'000;
    l.max_slots_per_player = 3;
    l.max_slot_bytes = 100;
    l.max_slot_bytes_per_player = 250;
    l.max_metadata_fields = 4;
    l.max_metadata_bytes = 64;
    l.max_stats_per_player = 5;
    l.max_player_writable_stats = 5;
    l.max_stats_per_request = 4;
    l.max_page_size = 10;
    l.max_write_attempts = 1000;
    // Every stat, so that these tests reach the arithmetic; who may write what has its own test.
    l.player_writable_stats = {"*"};
    l.max_writes_per_player_per_minute = 0;
    return l;
  }
  testing::InMemoryStore store_;
  std::atomic<int64_t> now_{1'000'000};
  testing::InMemoryWriteCounter writes_;
  PlayerDataService service_;
  const Caller ada_{"ada", {"player"}};
  const Caller bob_{"bob", {"player"}};
  const Caller mod_{"mod", {"player", "moderator"}};
  const Caller admin_{"root", {"player", "admin"}};
};

TEST(PlayerDataNames, LettersAndDigitsOfAnyScriptWithSingleSeparatorsBetween) {
  Limits l;
  for (const char* good : {"Ada", "Ada Lovelace", "x-1-y", "Zoë", "山田太郎", "やまだ", "김민준", "Сергей",
                           "Ελένη", "क्षत्रिय", "山田たろう", "Ada_山田"}) {
    EXPECT_NO_THROW(fold_display_name(good, l, "display_name")) << good;
  }
  // NFC on the way in: e + U+0301 is stored as é.
  EXPECT_EQ(fold_display_name("Cle\u0301ment", l, "display_name").display, "Cl\u00e9ment");
  // Counted in grapheme clusters: q + U+0301 has no precomposed form and is one character.
  EXPECT_NO_THROW(fold_display_name("q\u0301q\u0301q\u0301", l, "display_name"));
  expect_error([&] { fold_display_name("q\u0301q\u0301", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has 3 to 24 characters, not 2");
  expect_error([&] { fold_display_name("ab", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has 3 to 24 characters, not 2");
  std::string han;
  for (int i = 0; i < 25; ++i) han += "山";
  expect_error([&] { fold_display_name(han, l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has 3 to 24 characters, not 25");
  std::string heavy;  // 20 characters of 6 code points: q and five marks
  for (int i = 0; i < 20; ++i) heavy += "q\u0300\u0301\u0302\u0303\u0304";
  expect_error(
      [&] { fold_display_name(heavy, l, "display_name"); }, K::kInvalidArgument,
      "display_name: a display name has at most 96 code points (4 for each of max_display_name_chars), "
      "not 120");
  expect_error([&] { fold_display_name("a\u0301\u0301bc", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has no combining mark twice in a row on one letter");
  expect_error([&] { fold_display_name(std::string(400, 'a'), l, "display_name"); }, K::kInvalidArgument,
               "display_name: at most 24 characters (384 bytes), not 400 bytes");
  expect_error([&] { fold_display_name("Ad\xc3\x28", l, "display_name"); }, K::kInvalidArgument,
               "display_name: not UTF-8");
  expect_error([&] { fold_display_name("ab\xed\xa0\x80", l, "display_name"); }, K::kInvalidArgument,
               "display_name: not UTF-8");
  expect_error([&] { fold_display_name("a<b>", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has letters and digits (of any script) with single ' ', '_' or "
               "'-' between them; U+003C at character 2 is none of them");
  expect_error([&] { fold_display_name("ad\u200dmin", l, "display_name"); }, K::kInvalidArgument,
               "display_name: U+200D at character 3 is invisible; a display name has only characters that "
               "show");
  expect_error([&] { fold_display_name(std::string("ab\0c", 4), l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has letters and digits (of any script) with single ' ', '_' or "
               "'-' between them; U+0000 at character 3 is none of them");
  expect_error([&] { fold_display_name("\u0301abc", l, "display_name"); }, K::kInvalidArgument,
               "display_name: the combining mark U+0301 follows no letter or digit");
  expect_error([&] { fold_display_name("_ada", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name begins and ends with a letter or digit");
  expect_error([&] { fold_display_name("ada ", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name begins and ends with a letter or digit");
  expect_error([&] { fold_display_name("a  da", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has no two of ' ', '_', '-' in a row");
}

TEST(PlayerDataNames, MixedScriptsThatLookAlikeAreRefused) {
  Limits l;
  const std::string mixed =
      "display_name: a display name is written in one script (Latin may go with Han, Hiragana, Katakana or "
      "Hangul); this one mixes scripts whose letters look alike, such as Latin with Cyrillic or Greek";
  // U+0430 CYRILLIC SMALL LETTER A, U+0391 GREEK CAPITAL LETTER ALPHA. (Cherokee, U+13AA, is not
  // among the characters recommended for names at all.)
  for (const char* spoof : {"\u0430dmin", "\u0391dmin", "Ada \u0421\u0435\u0440\u0433\u0435\u0439"}) {
    expect_error([&] { fold_display_name(spoof, l, "display_name"); }, K::kInvalidArgument, mixed);
  }
  expect_error([&] { fold_display_name("ab\u0663\u0031", l, "display_name"); }, K::kInvalidArgument,
               "display_name: a display name has digits of one number system only");
}

TEST(PlayerDataNames, InvisibleAndNonRecommendedCharactersAreRefused) {
  Limits l;
  // Hangul fillers are letters to Unicode's categories but show nothing.
  for (const auto& [filler, code] : std::vector<std::pair<std::string, std::string>>{
           {"\u3164", "U+3164"}, {"\uffa0", "U+FFA0"}, {"\u115f", "U+115F"}, {"\u1160", "U+1160"}}) {
    for (const std::string& name : {filler + filler + filler, "Bob " + filler, filler + " Bob"}) {
      try {
        fold_display_name(name, l, "display_name");
        ADD_FAILURE() << "accepted " << code << " in '" << name << "'";
      } catch (const PlayerDataError& e) {
        EXPECT_EQ(e.kind(), K::kInvalidArgument);
        EXPECT_TRUE(std::string(e.what()).starts_with("display_name: " + code)) << e.what();
      }
    }
  }
  // Small capitals and Lisu look like Latin capitals and are not recommended for identifiers.
  expect_error([&] { fold_display_name("\u1d00\u1d05\u028d\u026a\u0274", l, "display_name"); },
               K::kInvalidArgument,
               "display_name: U+1D00 at character 1 is not among the characters Unicode recommends for "
               "names (UTS #39 identifier characters: no look-alike, obsolete or technical forms)");
  expect_error([&] { fold_display_name("\ua4ee\ua4d3\ua4df\ua4f2\ua4e0", l, "display_name"); },
               K::kInvalidArgument,
               "display_name: U+A4EE at character 1 is not among the characters Unicode recommends for "
               "names (UTS #39 identifier characters: no look-alike, obsolete or technical forms)");
  // Letters of living scripts still pass.
  for (const char* ok : {"Zo\u00eb", "\u5c71\u7530 \u592a\u90ce", "\u0410\u043d\u044f", "Ada_1"}) {
    EXPECT_NO_THROW(fold_display_name(ok, l, "display_name")) << ok;
  }
}

TEST(PlayerDataNames, LookAlikesFoldToOneKey) {
  const std::string admin = name_key("Admin");
  // Case, ASCII digits for letters, full-width and mathematical forms, other scripts' letters.
  for (const char* like : {"ADMIN", "ADM1N", "adm1n", "\uff21\uff24\uff2d\uff29\uff2e", "\U0001D41Admin",
                           "\u0430dmin", "\u0391dmin", "adrnin"}) {
    EXPECT_EQ(name_key(like), admin) << like;
  }
  EXPECT_NE(name_key("admins"), admin);
  // Whole-script look-alikes: Cyrillic сосо and Latin coco; Greek ΟΡΟ and Latin OPO.
  EXPECT_EQ(name_key("\u0441\u043e\u0441\u043e"), name_key("coco"));
  EXPECT_EQ(name_key("\u039f\u03a1\u039f"), name_key("opo"));
  // Combining forms: e + U+0301 and é.
  EXPECT_EQ(name_key("Cle\u0301ment"), name_key("Cl\u00e9ment"));
  EXPECT_NE(name_key("Clement"), name_key("Cl\u00e9ment"));
  EXPECT_EQ(name_key("Stra\u00dfe"), name_key("STRASSE"));
  EXPECT_EQ(name_key("Ada Lovelace"), name_key("ada_lovelace"));
  EXPECT_EQ(name_key("B0B"), name_key("bob"));
  EXPECT_EQ(name_key("Mi5"), name_key("mls"));
  // Capitals have look-alikes of their own, which folding case first would take apart.
  for (const auto& [latin, other] : std::vector<std::pair<std::string, std::string>>{
           {"MAX", "\u041c\u0410\u0425"},                          // Cyrillic МАХ
           {"TOM", "\u0422\u041e\u041c"},                          // ТОМ
           {"BOT", "\u0412\u041e\u0422"},                          // ВОТ
           {"KEK", "\u041a\u0415\u041a"},                          // КЕК
           {"ABC", "\u0410\u0412\u0421"},                          // АВС
           {"HOT", "\u041d\u041e\u0422"},                          // НОТ
           {"EXO", "\u0395\u03a7\u039f"},                          // Greek ΕΧΟ
           {"ADMIN", "\ua4ee\ua4d3\ua4df\ua4f2\ua4e0"},            // Lisu ꓮꓓꓟꓲꓠ
           {"SYSTEM", "\ua4e2\ua4ec\ua4e2\ua4d4\ua4f0\ua4df"}}) {  // Lisu ꓢꓬꓢꓔꓰꓟ
    EXPECT_EQ(name_key(other), name_key(latin)) << latin;
    EXPECT_EQ(name_key(other), name_key(latin.substr(0, 1) +
                                        [&] {
                                          std::string lower = latin.substr(1);
                                          for (char& c : lower) c = static_cast<char>(c - 'A' + 'a');
                                          return lower;
                                        }()))
        << latin;
  }

  Limits l;
  // Whole-script capitals are one script each, so they pass the mixed-script check; the key
  // catches them.
  EXPECT_EQ(fold_display_name("\u041c\u0410\u0425", l, "display_name").key,
            fold_display_name("max", l, "display_name").key);
  l.min_display_name_chars = 2;
  l.reserved_names = {"Admin", "gm", "Official", "support"};
  const std::set<std::string> reserved = reserved_keys(l.reserved_names);
  const auto is_reserved_name = [&](const std::string& name) {
    return is_reserved(fold_display_name(name, l, "display_name"), reserved);
  };
  EXPECT_TRUE(is_reserved_name("ADM1N"));
  EXPECT_TRUE(is_reserved_name("\uff41\uff44\uff4d\uff49\uff4e"));
  EXPECT_TRUE(is_reserved_name("GM"));
  // Any word of a name: "Admin Team", "GM_Sarah", "Official Support".
  EXPECT_TRUE(is_reserved_name("Admin Team"));
  EXPECT_TRUE(is_reserved_name("GM_Sarah"));
  EXPECT_TRUE(is_reserved_name("Official Support"));
  EXPECT_TRUE(is_reserved_name("Sarah-gm"));
  EXPECT_FALSE(is_reserved_name("admins"));
  EXPECT_FALSE(is_reserved_name("Badminton"));
  EXPECT_FALSE(is_reserved_name("Gemma Smith"));

  EXPECT_EQ(prefix_key("Ad", l, "prefix"), "ad");
  EXPECT_EQ(prefix_key("\uff21\uff24 L", l, "prefix"), "ad_l");
  EXPECT_EQ(prefix_key("Cle\u0301", l, "prefix"), "cl\u00e9");
  expect_error([&] { prefix_key("", l, "prefix"); }, K::kInvalidArgument,
               "prefix: give at least 1 character");
  expect_error([&] { prefix_key("a%", l, "prefix"); }, K::kInvalidArgument,
               "prefix: a display name has letters and digits (of any script) with single ' ', '_' or '-' "
               "between them; U+0025 at character 2 is none of them");
  expect_error([&] { prefix_key("a\xff", l, "prefix"); }, K::kInvalidArgument, "prefix: not UTF-8");
}

TEST(PlayerDataRules, AvatarsIdsTokensUtf8AndInt64Edges) {
  Limits l;
  l.max_avatar_bytes = 40;
  // No allowed hosts: URLs are off, asset ids only.
  expect_error(
      [&] {
        check_avatar({AvatarKind::kUrl, "https://cdn.example.com/a.png"}, l, "avatar");
      },
      K::kInvalidArgument,
      "avatar_url: avatar URLs are off here (allowed_avatar_hosts is empty); give an avatar_asset_id");
  l.allowed_avatar_hosts = {"cdn.example.com", "img.example.org"};
  EXPECT_NO_THROW(check_avatar({AvatarKind::kUrl, "https://cdn.example.com/a.png"}, l, "avatar"));
  EXPECT_NO_THROW(check_avatar({AvatarKind::kUrl, "https://CDN.Example.com/a.png"}, l, "avatar"));
  for (const char* logger : {"https://203.0.113.9/a.png", "https://cdn.example.com.evil.net/a",
                             "https://cdn.example.com:8443/a"}) {
    EXPECT_THROW(check_avatar({AvatarKind::kUrl, logger}, l, "avatar"), PlayerDataError) << logger;
  }
  expect_error(
      [&] {
        check_avatar({AvatarKind::kUrl, "https://203.0.113.9/a.png"}, l, "avatar");
      },
      K::kInvalidArgument,
      "avatar_url: an avatar URL names one of the hosts allowed_avatar_hosts lists (cdn.example.com, "
      "img.example.org), not '203.0.113.9'");
  EXPECT_NO_THROW(check_avatar({AvatarKind::kAssetId, "avatars:knight-01"}, l, "avatar"));
  expect_error(
      [&] {
        check_avatar({AvatarKind::kUrl, "http://cdn.example.com/a.png"}, l, "avatar");
      },
      K::kInvalidArgument, "avatar_url: an avatar URL begins with https://");
  expect_error(
      [&] {
        check_avatar({AvatarKind::kUrl, "https://cdn.example.com/" + std::string(30, 'a')}, l, "avatar");
      },
      K::kInvalidArgument, "avatar_url: at most 40 bytes, not 54");
  expect_error(
      [&] {
        check_avatar({AvatarKind::kUrl, "https://a b"}, l, "avatar");
      },
      K::kInvalidArgument,
      "avatar_url: an avatar URL is printable ASCII without spaces, quotes, '<', '>' or '\\'; byte 0x20 at "
      "byte 9 is not");
  expect_error(
      [&] {
        check_avatar({AvatarKind::kUrl, "https://u@evil"}, l, "avatar");
      },
      K::kInvalidArgument, "avatar_url: an avatar URL names a host (and no user: '@' is refused)");
  expect_error(
      [&] {
        check_avatar({AvatarKind::kUrl, "https:///x"}, l, "avatar");
      },
      K::kInvalidArgument, "avatar_url: an avatar URL names a host (and no user: '@' is refused)");
  expect_error(
      [&] {
        check_avatar({AvatarKind::kAssetId, "a/b"}, l, "avatar");
      },
      K::kInvalidArgument, "avatar_asset_id: an asset id has [A-Za-z0-9_.:-] only; '/' at byte 1 is not");
  expect_error([&] { check_player_id("a/b", "player_id"); }, K::kInvalidArgument,
               "player_id: a player id has [A-Za-z0-9_-] only; '/' at byte 1 is not");
  expect_error([&] { check_token("", 64, "name"); }, K::kInvalidArgument, "name: 1 to 64 bytes, not 0");
  expect_error([&] { check_token("../x", 64, "name"); }, K::kInvalidArgument,
               "name: [A-Za-z0-9_.-] only; '/' at byte 2 is not");

  // Bidi overrides turn text around; zero-width characters hide in it; control characters break it.
  check_plain_text("Zo\u00eb \u65e5\u672c \U0001F3AE", "value");
  expect_error([&] { check_plain_text("evil\u202Etxt.exe", "value"); }, K::kInvalidArgument,
               "value: U+202E at byte 4 is a control or format character (line breaks, bidi overrides, "
               "zero-width characters); text here has none");
  expect_error([&] { check_plain_text("a\u200Bb", "value"); }, K::kInvalidArgument,
               "value: U+200B at byte 1 is a control or format character (line breaks, bidi overrides, "
               "zero-width characters); text here has none");
  expect_error([&] { check_plain_text("a\nb", "value"); }, K::kInvalidArgument,
               "value: U+000A at byte 1 is a control or format character (line breaks, bidi overrides, "
               "zero-width characters); text here has none");
  expect_error([&] { check_plain_text("a\xff", "value"); }, K::kInvalidArgument, "value: not UTF-8");
  EXPECT_TRUE(valid_utf8("Zoë 日本 🎮"));
  EXPECT_FALSE(valid_utf8("\xc3"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF

  EXPECT_EQ(checked_add(kMax - 1, 1, "x"), kMax);
  EXPECT_EQ(checked_add(kMin, kMax, "x"), -1);
  expect_error([&] { checked_add(kMax, 1, "x"); }, K::kOutOfRange,
               "x: 9223372036854775807 + 1 is outside int64 [-9223372036854775808, 9223372036854775807]");
  expect_error([&] { checked_add(kMin, -1, "x"); }, K::kOutOfRange,
               "x: -9223372036854775808 + -1 is outside int64 [-9223372036854775808, 9223372036854775807]");
}

TEST_F(PlayerDataDomain, ANameIsHeldOnceLooksAlikeIncludedAndChangesAfterTheCooldown) {
  EXPECT_EQ(service_.set_display_name(ada_, "Ada_1").display_name, "Ada_1");
  expect_error([&] { service_.set_display_name(bob_, "ADA-l"); }, K::kAlreadyExists,
               "display_name: 'ADA-l' is taken (as 'Ada_1', which it is too like)");
  expect_error([&] { service_.set_display_name(bob_, "Ada_1"); }, K::kAlreadyExists,
               "display_name: 'Ada_1' is taken");
  expect_error([&] { service_.set_display_name(bob_, "GameVerse"); }, K::kInvalidArgument,
               "display_name: 'GameVerse' is reserved (or looks like a reserved name)");
  // Its own name in another spelling is no conflict, but it is a change.
  now_ += 60'000;
  EXPECT_EQ(service_.set_display_name(ada_, "ada_1").display_name, "ada_1");
  expect_error([&] { service_.set_display_name(ada_, "Lovelace"); }, K::kFailedPrecondition,
               "display_name: a name can change once every 60 s (name_change_cooldown_s); the next change is "
               "possible in 60 s");
  EXPECT_EQ(service_.profile(ada_, "").display_name, "ada_1") << "a refused change changed the name";
  now_ += 60'000;
  EXPECT_EQ(service_.set_display_name(ada_, "Lovelace").display_name, "Lovelace");
  // The old name was released with the change.
  EXPECT_EQ(service_.set_display_name(bob_, "Ada_1").display_name, "Ada_1");
  expect_error([&] { service_.set_display_name(mod_, "lovelace"); }, K::kAlreadyExists,
               "display_name: 'lovelace' is taken (as 'Lovelace', which it is too like)");
}

TEST_F(PlayerDataDomain, ModeratorsResetNamesPlayersCannot) {
  service_.set_display_name(ada_, "Rude_Name");
  expect_error([&] { service_.reset_display_name(bob_, "ada"); }, K::kPermissionDenied,
               "resetting a display name needs the role moderator or admin");
  const Profile reset = service_.reset_display_name(mod_, "ada", "offensive");
  EXPECT_EQ(reset.display_name, "");
  // The name stays withheld, from the player too, and the cooldown starts again.
  expect_error([&] { service_.set_display_name(bob_, "Rude-Name"); }, K::kAlreadyExists,
               "display_name: 'Rude-Name' is withheld by moderation (as 'Rude_Name', which it is too like)");
  expect_error([&] { service_.set_display_name(ada_, "Nice_Name"); }, K::kFailedPrecondition,
               "display_name: a name can change once every 60 s (name_change_cooldown_s); the next change is "
               "possible in 60 s");
  now_ += 60'000;
  expect_error([&] { service_.set_display_name(ada_, "Rude_Name"); }, K::kAlreadyExists,
               "display_name: 'Rude_Name' is withheld by moderation");
  EXPECT_EQ(service_.set_display_name(ada_, "Nice_Name").display_name, "Nice_Name");
  // A hold with an end: the name is free again after it.
  service_.set_display_name(bob_, "Loud_Name");
  service_.reset_display_name(mod_, "bob", "shouting", 30'000);
  expect_error([&] { service_.set_display_name(admin_, "Loud_Name"); }, K::kAlreadyExists,
               "display_name: 'Loud_Name' is withheld by moderation");
  now_ += 30'000;
  EXPECT_EQ(service_.set_display_name(admin_, "Loud_Name").display_name, "Loud_Name");
  expect_error([&] { service_.reset_display_name(admin_, "nobody"); }, K::kNotFound,
               "player_id: no profile for player 'nobody'");

  // Staff clear public fields; players cannot.
  ProfileChange change;
  change.avatar = Avatar{AvatarKind::kAssetId, "rude-picture"};
  change.set_metadata = {{"bio", {"rude words", Visibility::kPublic}},
                         {"motto", {"fine", Visibility::kPublic}}};
  service_.update_profile(ada_, change);
  expect_error([&] { service_.clear_profile_fields(bob_, "ada", true, {"bio"}); }, K::kPermissionDenied,
               "clearing profile fields needs the role moderator or admin");
  const Profile cleared = service_.clear_profile_fields(mod_, "ada", true, {"bio", "absent"});
  EXPECT_EQ(cleared.avatar.kind, AvatarKind::kNone);
  EXPECT_EQ(cleared.metadata.size(), 1u);
  EXPECT_EQ(cleared.metadata.at("motto").value, "fine");
  EXPECT_EQ(service_.profile(ada_, "").display_name, "Nice_Name");
}

TEST_F(PlayerDataDomain, OthersSeePublicFieldsOnlyAndChangeNothing) {
  ProfileChange change;
  change.avatar = Avatar{AvatarKind::kAssetId, "knight"};
  change.set_metadata = {{"bio", {"hello", Visibility::kPublic}},
                         {"email", {"ada@example.com", Visibility::kPrivate}}};
  service_.update_profile(ada_, change);
  EXPECT_EQ(service_.profile(ada_, "").metadata.size(), 2u);
  const Profile seen = service_.profile(bob_, "ada");
  ASSERT_EQ(seen.metadata.size(), 1u);
  EXPECT_EQ(seen.metadata.at("bio").value, "hello");
  EXPECT_EQ(seen.avatar.value, "knight");
  // A private change moves the version; others must not see it move.
  EXPECT_EQ(seen.version, 0) << "the public view tells when private fields change";
  EXPECT_EQ(service_.profile(mod_, "ada").metadata.size(), 2u) << "a moderator reads everything";
  expect_error([&] { service_.profile(bob_, "nobody"); }, K::kNotFound,
               "player_id: no profile for player 'nobody'");

  service_.write_slot(ada_, {"main", "secret save", 0});
  service_.update_stats(ada_, "", {{"kills", StatChange::Kind::kIncrement, 3}});
  expect_error([&] { service_.slot(bob_, "ada", "main"); }, K::kPermissionDenied,
               "player_id: a player reads the save slots of only their own; leave player_id empty");
  expect_error([&] { service_.slots(bob_, "ada", 0, "", nullptr); }, K::kPermissionDenied,
               "player_id: a player reads the save slots of only their own; leave player_id empty");
  expect_error([&] { service_.stats(bob_, "ada", {}); }, K::kPermissionDenied,
               "player_id: a player reads the stats of only their own; leave player_id empty");
  expect_error(
      [&] {
        service_.update_stats(bob_, "ada", {{"kills", StatChange::Kind::kSet, 0}});
      },
      K::kPermissionDenied, "player_id: a player changes the stats of only their own; leave player_id empty");
  expect_error(
      [&] {
        service_.update_stats(mod_, "ada", {{"kills", StatChange::Kind::kSet, 0}});
      },
      K::kPermissionDenied, "player_id: a player changes the stats of only their own; leave player_id empty");
  EXPECT_EQ(service_.slot(mod_, "ada", "main").data, "secret save");
  EXPECT_EQ(service_.stats(mod_, "ada", {"kills"}).values.at("kills"), 3);
  EXPECT_EQ(service_.update_stats(admin_, "ada", {{"kills", StatChange::Kind::kSet, 0}}).values.at("kills"),
            0);
  expect_error(
      [&] {
        service_.profile({"", {}}, "ada");
      },
      K::kUnauthenticated, "this call needs the metadata authorization: Bearer <access token>");
}

TEST_F(PlayerDataDomain, MetadataIsBoundedAndARefusedChangeChangesNothing) {
  ProfileChange change;
  change.set_metadata = {{"a", {"1", Visibility::kPublic}}, {"b", {"2", Visibility::kPublic}}};
  const Profile first = service_.update_profile(ada_, change);
  const int writes = store_.writes;
  ProfileChange big;
  big.set_metadata = {{"c", {std::string(70, 'x'), Visibility::kPublic}}};
  expect_error(
      [&] { service_.update_profile(ada_, big); }, K::kResourceExhausted,
      "set_metadata: a profile's metadata keys and values hold at most 64 bytes (max_metadata_bytes); "
      "this makes 75");
  ProfileChange many;
  for (const char* k : {"c", "d", "e"}) many.set_metadata.push_back({k, {"v", Visibility::kPrivate}});
  expect_error([&] { service_.update_profile(ada_, many); }, K::kResourceExhausted,
               "set_metadata: a profile has at most 4 metadata fields (max_metadata_fields); this makes 5");
  ProfileChange bad;
  bad.avatar = Avatar{AvatarKind::kAssetId, "fine"};
  bad.set_metadata = {{"ok", {"v", Visibility::kPublic}}, {"bad key", {"v", Visibility::kPublic}}};
  expect_error([&] { service_.update_profile(ada_, bad); }, K::kInvalidArgument,
               "set_metadata[1].key: [A-Za-z0-9_.-] only; byte 0x20 at byte 3 is not");
  ProfileChange turned;
  turned.set_metadata = {{"bio", {"gg \u202Ereh", Visibility::kPublic}}};
  expect_error([&] { service_.update_profile(ada_, turned); }, K::kInvalidArgument,
               "set_metadata[0].value: U+202E at byte 3 is a control or format character (line breaks, bidi "
               "overrides, zero-width characters); text here has none");
  ProfileChange bytes;
  bytes.set_metadata = {{"k", {"\xff", Visibility::kPublic}}};
  expect_error([&] { service_.update_profile(ada_, bytes); }, K::kInvalidArgument,
               "set_metadata[0].value: not UTF-8");
  EXPECT_EQ(store_.writes, writes);
  const Profile after = service_.profile(ada_, "");
  EXPECT_EQ(after.version, first.version);
  EXPECT_EQ(after.avatar.kind, AvatarKind::kNone);
  ProfileChange remove;
  remove.remove_metadata = {"a"};
  EXPECT_EQ(service_.update_profile(ada_, remove).metadata.size(), 1u);
}

TEST_F(PlayerDataDomain, SlotsWriteOverTheirVersionAndAStaleOneChangesNothing) {
  const Slot created = service_.write_slot(ada_, {"main", "v1", 0});
  EXPECT_EQ(created.version, 1);
  expect_error(
      [&] {
        service_.write_slot(ada_, {"main", "again", 0});
      },
      K::kAlreadyExists, "expected_version: 0 creates only, and save slot 'main' exists at version 1");
  const Slot second = service_.write_slot(ada_, {"main", "v2", 1});
  EXPECT_EQ(second.version, 2);
  expect_error(
      [&] {
        service_.write_slot(ada_, {"main", "stale", 1});
      },
      K::kAborted, "expected_version: save slot 'main' is at version 2, not 1; nothing was written");
  expect_error([&] { service_.delete_slot(ada_, "main", 1); }, K::kAborted,
               "expected_version: save slot 'main' is at version 2, not 1; nothing was deleted");
  expect_error(
      [&] {
        service_.write_slot(ada_, {"other", "x", 4});
      },
      K::kAborted, "expected_version: save slot 'other' does not exist, not 4; nothing was written");
  expect_error(
      [&] {
        service_.write_slot(ada_, {"main", "x", -1});
      },
      K::kInvalidArgument, "expected_version: 0 (create only) or a version from 1, not -1");
  EXPECT_EQ(service_.slot(ada_, "", "main").data, "v2");
  EXPECT_EQ(service_.write_slot(ada_, {"main", "any", std::nullopt}).version, 3);
  service_.delete_slot(ada_, "main", 3);
  expect_error([&] { service_.slot(ada_, "", "main"); }, K::kNotFound, "name: no save slot 'main'");
  Usage usage;
  service_.slots(ada_, "", 0, "", &usage);
  EXPECT_EQ(usage.slot_count, 0);
  EXPECT_EQ(usage.total_bytes, 0);
}

TEST_F(PlayerDataDomain, ASlotDeletedAndCreatedAgainNeverTakesBackAnOldVersion) {
  // Device A reads version 1; device B deletes the slot and creates it again; A's write over the
  // version it read must not replace B's new slot.
  const Slot read_by_a = service_.write_slot(ada_, {"main", "first", 0});
  service_.delete_slot(ada_, "main", read_by_a.version);
  const Slot recreated = service_.write_slot(ada_, {"main", "from B", 0});
  EXPECT_NE(recreated.version, read_by_a.version);
  expect_error(
      [&] {
        service_.write_slot(ada_, {"main", "stale from A", read_by_a.version});
      },
      K::kAborted,
      "expected_version: save slot 'main' is at version " + std::to_string(recreated.version) +
          ", not 1; nothing was written");
  expect_error([&] { service_.delete_slot(ada_, "main", read_by_a.version); }, K::kAborted,
               "expected_version: save slot 'main' is at version " + std::to_string(recreated.version) +
                   ", not 1; nothing was deleted");
  EXPECT_EQ(service_.slot(ada_, "", "main").data, "from B");
  // Versions grow per player, across slots too: no version is ever given twice.
  EXPECT_GT(service_.write_slot(ada_, {"other", "x", 0}).version, recreated.version);
}

TEST_F(PlayerDataDomain, SlotQuotasHoldOnCountAndBytes) {
  service_.write_slot(ada_, {"a", std::string(100, 'a'), 0});
  service_.write_slot(ada_, {"b", std::string(100, 'b'), 0});
  expect_error(
      [&] {
        service_.write_slot(ada_, {"c", std::string(51, 'c'), 0});
      },
      K::kResourceExhausted,
      "data: a player's save slots hold at most 250 bytes (max_slot_bytes_per_player); this write makes "
      "251");
  service_.write_slot(ada_, {"c", std::string(50, 'c'), 0});
  expect_error(
      [&] {
        service_.write_slot(ada_, {"d", "", 0});
      },
      K::kResourceExhausted, "name: a player has at most 3 save slots (max_slots_per_player); 3 exist");
  expect_error(
      [&] {
        service_.write_slot(ada_, {"a", std::string(101, 'a'), std::nullopt});
      },
      K::kInvalidArgument, "data: a save slot holds at most 100 bytes (max_slot_bytes), not 101");
  // Shrinking one makes room in the others.
  service_.write_slot(ada_, {"a", "small", std::nullopt});
  service_.write_slot(ada_, {"c", std::string(95, 'c'), std::nullopt});
  const Usage counted = store_.counted("ada");
  EXPECT_EQ(store_.usage("ada").slot_count, counted.slot_count);
  EXPECT_EQ(store_.usage("ada").total_bytes, counted.total_bytes);
  SlotPage page = service_.slots(ada_, "", 2, "", nullptr);
  ASSERT_EQ(page.slots.size(), 2u);
  EXPECT_EQ(page.slots[0].name, "a");
  EXPECT_TRUE(page.slots[0].data.empty());
  page = service_.slots(ada_, "", 2, page.next_cursor, nullptr);
  ASSERT_EQ(page.slots.size(), 1u);
  EXPECT_EQ(page.slots[0].name, "c");
  expect_error([&] { service_.slots(ada_, "", 11, "", nullptr); }, K::kInvalidArgument,
               "page_size: 1 to 10 (max_page_size), or 0 for 20; not 11");
}

TEST_F(PlayerDataDomain, ConcurrentSlotWritesCannotPassTheQuota) {
  std::atomic<int> written{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        try {
          service_.write_slot(ada_,
                              {"s" + std::to_string(t) + "-" + std::to_string(i), std::string(40, 'x'), 0});
          ++written;
        } catch (const PlayerDataError& e) {
          EXPECT_EQ(e.kind(), K::kResourceExhausted) << e.what();
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  const Usage counted = store_.counted("ada");
  EXPECT_EQ(written, 3);
  EXPECT_EQ(counted.slot_count, 3);
  EXPECT_EQ(store_.usage("ada").slot_count, 3);
  EXPECT_EQ(store_.usage("ada").total_bytes, counted.total_bytes);
}

TEST_F(PlayerDataDomain, StatsIncrementAndSetWithoutWrappingAndConcurrentIncrementsAddUp) {
  StatSheet s = service_.update_stats(ada_, "",
                                      {{"kills", StatChange::Kind::kIncrement, 2},
                                       {"gold", StatChange::Kind::kSet, kMax - 1},
                                       {"kills", StatChange::Kind::kIncrement, 3}});
  EXPECT_EQ(s.values.at("kills"), 5);
  const int writes = store_.writes;
  expect_error(
      [&] {
        service_.update_stats(
            ada_, "",
            {{"kills", StatChange::Kind::kIncrement, 1}, {"gold", StatChange::Kind::kIncrement, 2}});
      },
      K::kOutOfRange,
      "updates[1].increment of 'gold': 9223372036854775806 + 2 is outside int64 [-9223372036854775808, "
      "9223372036854775807]");
  EXPECT_EQ(store_.writes, writes);
  EXPECT_EQ(service_.stats(ada_, "", {"kills", "never"}).values,
            (std::map<std::string, int64_t>{{"kills", 5}, {"never", 0}}));
  service_.update_stats(ada_, "", {{"low", StatChange::Kind::kSet, kMin}});
  expect_error(
      [&] {
        service_.update_stats(ada_, "", {{"low", StatChange::Kind::kIncrement, -1}});
      },
      K::kOutOfRange,
      "updates[0].increment of 'low': -9223372036854775808 + -1 is outside int64 [-9223372036854775808, "
      "9223372036854775807]");
  expect_error([&] { service_.update_stats(ada_, "", {}); }, K::kInvalidArgument,
               "updates: 1 to 4 per call (max_stats_per_request), not 0");
  service_.update_stats(ada_, "", {{"d", StatChange::Kind::kSet, 1}, {"e", StatChange::Kind::kSet, 1}});
  expect_error(
      [&] {
        service_.update_stats(ada_, "", {{"f", StatChange::Kind::kSet, 1}});
      },
      K::kResourceExhausted,
      "updates: a player has at most 5 stats that player_writable_stats lists (max_player_writable_stats); "
      "this makes 6");

  constexpr int kThreads = 8, kEach = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i)
        service_.update_stats(bob_, "", {{"wins", StatChange::Kind::kIncrement, 1}});
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(service_.stats(bob_, "", {"wins"}).values.at("wins"), kThreads * kEach);
}

// Stats over the in-memory store whose next save commits and then fails, as a store does when the
// connection drops after the commit (UNAVAILABLE: it may or may not have been applied).
class AmbiguousStats : public Stats {
 public:
  explicit AmbiguousStats(testing::InMemoryStore& store) : store_(store) {}
  StatSheet sheet(const std::string& player_id) override { return store_.sheet(player_id); }
  int64_t save(const std::string& player_id, const StatSheet& before, const StatSheet& after) override {
    const int64_t version = store_.save(player_id, before, after);
    if (fail_next_) {
      fail_next_ = false;
      throw std::runtime_error("the store is unavailable; the write may or may not be applied");
    }
    return version;
  }
  bool fail_next_ = false;

 private:
  testing::InMemoryStore& store_;
};

TEST(PlayerDataStatsReplays, AnUpdateWithARequestIdIsAppliedOnceAndAReplayAnswersAsTheFirst) {
  testing::InMemoryStore store;
  AmbiguousStats stats(store);
  Limits limits;
  limits.player_writable_stats = {"*"};
  PlayerDataService service(limits, store, store, stats, [] { return int64_t{1}; });
  const Caller ada{"ada", {"player"}};
  service.update_stats(ada, "", {{"gold", StatChange::Kind::kSet, 100}});

  stats.fail_next_ = true;
  EXPECT_THROW(service.update_stats(ada, "", {{"gold", StatChange::Kind::kIncrement, 5}}, "buy-1"),
               std::runtime_error);
  EXPECT_EQ(store.sheet("ada").values.at("gold"), 105) << "the ambiguous write was committed";
  // The client retries with the same id: nothing changes, the answer is the first one's.
  const int writes = store.writes;
  const StatSheet replay =
      service.update_stats(ada, "", {{"gold", StatChange::Kind::kIncrement, 5}}, "buy-1");
  EXPECT_EQ(replay.values, (std::map<std::string, int64_t>{{"gold", 105}}));
  EXPECT_EQ(store.sheet("ada").values.at("gold"), 105);
  EXPECT_EQ(store.writes, writes);
  expect_error(
      [&] {
        service.update_stats(ada, "", {{"gold", StatChange::Kind::kIncrement, 6}}, "buy-1");
      },
      K::kInvalidArgument, "request_id: 'buy-1' was used for other updates; give each update its own");
  expect_error(
      [&] {
        service.update_stats(ada, "", {{"gold", StatChange::Kind::kIncrement, 6}}, "a b");
      },
      K::kInvalidArgument, "request_id: [A-Za-z0-9_.-] only; byte 0x20 at byte 1 is not");
  // The next update answers with its own result; the set of remembered ids is bounded.
  EXPECT_EQ(
      service.update_stats(ada, "", {{"gold", StatChange::Kind::kIncrement, 1}}, "buy-2").values.at("gold"),
      106);
  for (size_t i = 0; i < kRecentStatUpdates; ++i) {
    service.update_stats(ada, "", {{"steps", StatChange::Kind::kIncrement, 1}}, "step-" + std::to_string(i));
  }
  EXPECT_EQ(store.sheet("ada").recent.size(), kRecentStatUpdates);
  EXPECT_EQ(store.sheet("ada").values.at("steps"), static_cast<int64_t>(kRecentStatUpdates));
}

TEST_F(PlayerDataDomain, AKeyMadeByAnEarlierAlgorithmIsNoProofOfHoldingTheName) {
  // Ada's profile holds a key made by key algorithm 1; under the current one, that key is now
  // bob's. Claiming the name again must look at who holds it, not trust the stored key.
  const std::string key = name_key("MAX");
  Profile ada;
  ada.player_id = "ada";
  ada.display_name = "MAX";
  ada.name_key = key;
  ada.name_search_key = "max";
  ada.name_key_version = 1;
  Profile ada_before;
  ada_before.player_id = "ada";
  store_.save(ada_before, ada);
  Profile bob;
  bob.player_id = "bob";
  bob.display_name = "\u041c\u0410\u0425";
  bob.name_key = key;
  bob.name_search_key = "\u043c\u0430\u0445";
  bob.name_key_version = kNameKeyVersion;
  Profile bob_before;
  bob_before.player_id = "bob";
  NameWrite over_ada;
  over_ada.claimed_version = store_.name(key)->version;
  store_.save(bob_before, bob, over_ada);
  ASSERT_EQ(store_.name(key)->player_id, "bob");
  expect_error([&] { service_.set_display_name(ada_, "Max"); }, K::kAlreadyExists,
               "display_name: 'Max' is taken (as '\u041c\u0410\u0425', which it is too like)");
  EXPECT_EQ(store_.name(key)->player_id, "bob");
  // A name claimed now carries the current algorithm's version.
  EXPECT_EQ(service_.set_display_name(bob_, "Robert").name_key_version, kNameKeyVersion);
}

TEST_F(PlayerDataDomain, TwoPlayersClaimingOneNameAtOnceOneWins) {
  for (int round = 0; round < 50; ++round) {
    const std::string name = "Racer" + std::to_string(round);
    std::atomic<int> won{0}, taken{0};
    std::vector<std::thread> claimers;
    for (int p = 0; p < 4; ++p) {
      claimers.emplace_back([&, p] {
        const Caller c{"p" + std::to_string(round) + "-" + std::to_string(p), {"player"}};
        try {
          service_.set_display_name(c, name);
          ++won;
        } catch (const PlayerDataError& e) {
          EXPECT_EQ(e.kind(), K::kAlreadyExists) << e.what();
          ++taken;
        }
      });
    }
    for (auto& c : claimers) c.join();
    EXPECT_EQ(won, 1) << name;
    EXPECT_EQ(taken, 3) << name;
  }
}

TEST_F(PlayerDataDomain, PlayersAreListedByNamePrefixAPageAtATime) {
  for (const char* n : {"Alpha", "alfred", "Al_Bundy", "Bob", "AL1CE"}) {
    service_.set_display_name({std::string("id-") + n, {"player"}}, n);
  }
  NamePage page = service_.list_players(ada_, "AL", 2, "");
  ASSERT_EQ(page.names.size(), 2u);
  std::vector<std::string> all;
  for (;;) {
    for (const auto& n : page.names) all.push_back(n.display_name);
    if (page.next_cursor.empty()) break;
    page = service_.list_players(ada_, "AL", 2, page.next_cursor);
  }
  // By search key: case-folded NFKC, separators as '_'.
  EXPECT_EQ(all, (std::vector<std::string>{"AL1CE", "Al_Bundy", "alfred", "Alpha"}));
  EXPECT_EQ(service_.list_players(ada_, "AL-B", 10, "").names.size(), 1u) << "separators are one";
  EXPECT_EQ(service_.list_players(ada_, "ＡＬＰ", 10, "").names.size(), 1u) << "full-width is folded";
  expect_error([&] { service_.list_players(ada_, "a", 0, std::string(2000, 'c')); }, K::kInvalidArgument,
               "cursor: at most 1024 bytes, not 2000");
}

TEST_F(PlayerDataDomain, LookAlikeNamesInOtherScriptsAreTakenAndListedByWhatWasTyped) {
  service_.set_display_name(ada_, "coco");
  // Cyrillic сосо: one script, so accepted as a name, but it looks like 'coco'.
  expect_error([&] { service_.set_display_name(bob_, "\u0441\u043e\u0441\u043e"); }, K::kAlreadyExists,
               "display_name: '\u0441\u043e\u0441\u043e' is taken (as 'coco', which it is too like)");
  expect_error([&] { service_.set_display_name(bob_, "\u0430dmin"); }, K::kInvalidArgument,
               "display_name: a display name is written in one script (Latin may go with Han, Hiragana, "
               "Katakana or Hangul); this one mixes scripts whose letters look alike, such as Latin with "
               "Cyrillic or Greek");
  expect_error([&] { service_.set_display_name(bob_, "\uff21\uff24\uff2d\uff29\uff2e"); },
               K::kInvalidArgument,
               "display_name: '\uff21\uff24\uff2d\uff29\uff2e' is reserved (or looks like a reserved name)");
  EXPECT_EQ(service_.set_display_name(bob_, "Cle\u0301ment").display_name, "Cl\u00e9ment");
  expect_error([&] { service_.set_display_name(mod_, "CL\u00c9MENT"); }, K::kAlreadyExists,
               "display_name: 'CL\u00c9MENT' is taken (as 'Cl\u00e9ment', which it is too like)");
  EXPECT_EQ(service_.set_display_name(mod_, "山田太郎").display_name, "山田太郎");
  EXPECT_EQ(service_.list_players(ada_, "co", 10, "").names.size(), 1u);
  EXPECT_EQ(service_.list_players(ada_, "cle\u0301", 10, "").names.at(0).display_name, "Cl\u00e9ment");
  EXPECT_EQ(service_.list_players(ada_, "山田", 10, "").names.at(0).player_id, "mod");
}

// Stats are not the player's to write: a player writes only what player_writable_stats lists.
TEST(PlayerDataStatsAccess, AdminsAndTrustedPluginsWriteStatsPlayersOnlyTheListedOnes) {
  testing::InMemoryStore store;
  Limits limits;
  limits.player_writable_stats = {"settings.*", "tutorial_step"};
  PlayerDataService service(limits, store, store, store, [] { return int64_t{1}; });
  const Caller ada{"ada", {"player"}}, bob{"bob", {"player"}}, mod{"mod", {"player", "moderator"}},
      admin{"root", {"player", "admin"}}, granter{"", {}, "inventory"};

  expect_error(
      [&] {
        service.update_stats(ada, "", {{"kills", StatChange::Kind::kIncrement, 1000}});
      },
      K::kPermissionDenied,
      "updates[0].name: stat 'kills' is written by admins and trusted plugins; players write only the "
      "stats player_writable_stats lists");
  expect_error(
      [&] {
        service.update_stats(
            ada, "", {{"settings.volume", StatChange::Kind::kSet, 3}, {"wins", StatChange::Kind::kSet, 1}});
      },
      K::kPermissionDenied,
      "updates[1].name: stat 'wins' is written by admins and trusted plugins; players write only the stats "
      "player_writable_stats lists");
  EXPECT_TRUE(store.sheet("ada").values.empty()) << "a refused call changed something";
  EXPECT_EQ(service
                .update_stats(ada, "",
                              {{"settings.volume", StatChange::Kind::kSet, 3},
                               {"tutorial_step", StatChange::Kind::kIncrement, 1}})
                .values.size(),
            2u);
  expect_error(
      [&] {
        service.update_stats(ada, "", {{"tutorial_step2", StatChange::Kind::kSet, 1}});
      },
      K::kPermissionDenied,
      "updates[0].name: stat 'tutorial_step2' is written by admins and trusted plugins; players write "
      "only the stats player_writable_stats lists");
  expect_error(
      [&] {
        service.update_stats(mod, "ada", {{"kills", StatChange::Kind::kSet, 1}});
      },
      K::kPermissionDenied, "player_id: a player changes the stats of only their own; leave player_id empty");
  EXPECT_EQ(
      service.update_stats(admin, "ada", {{"kills", StatChange::Kind::kIncrement, 2}}).values.at("kills"), 2);
  EXPECT_EQ(
      service.update_stats(granter, "ada", {{"kills", StatChange::Kind::kIncrement, 3}}).values.at("kills"),
      5);
  EXPECT_EQ(service.stats(granter, "ada", {"kills"}).values.at("kills"), 5);
  {
    // A player filling the stats they may write leaves the room of admins and trusted plugins.
    testing::InMemoryStore own_store;
    Limits small = limits;
    small.player_writable_stats = {"custom.*"};
    small.max_player_writable_stats = 3;
    small.max_stats_per_player = 2;
    PlayerDataService capped(small, own_store, own_store, own_store, [] { return int64_t{1}; });
    for (int i = 0; i < 3; ++i) {
      capped.update_stats(ada, "", {{"custom." + std::to_string(i), StatChange::Kind::kSet, 1}});
    }
    expect_error(
        [&] {
          capped.update_stats(ada, "", {{"custom.x", StatChange::Kind::kSet, 1}});
        },
        K::kResourceExhausted,
        "updates: a player has at most 3 stats that player_writable_stats lists (max_player_writable_stats); "
        "this makes 4");
    EXPECT_EQ(capped.update_stats(admin, "ada", {{"kills", StatChange::Kind::kSet, 1}}).values.size(), 4u);
    EXPECT_EQ(capped.update_stats(granter, "ada", {{"wins", StatChange::Kind::kSet, 1}}).values.size(), 5u);
    expect_error(
        [&] {
          capped.update_stats(granter, "ada", {{"losses", StatChange::Kind::kSet, 1}});
        },
        K::kResourceExhausted,
        "updates: a player has at most 2 stats written by admins and trusted plugins (max_stats_per_player); "
        "this makes 3");
  }
  EXPECT_EQ(service.stats(ada, "", {"kills"}).values.at("kills"), 5);
  EXPECT_EQ(service.stats(mod, "ada", {"kills"}).values.at("kills"), 5);
  expect_error([&] { service.stats(bob, "ada", {}); }, K::kPermissionDenied,
               "player_id: a player reads the stats of only their own; leave player_id empty");
  // A trusted plugin calling for a player writes all of that player's stats, and no one else's.
  const Caller ada_via_plugin{"ada", {"player"}, "", "inventory"};
  EXPECT_EQ(service.update_stats(ada_via_plugin, "", {{"kills", StatChange::Kind::kIncrement, 1}})
                .values.at("kills"),
            6);
  expect_error(
      [&] {
        service.update_stats(ada_via_plugin, "bob", {{"kills", StatChange::Kind::kSet, 1}});
      },
      K::kPermissionDenied, "player_id: a player changes the stats of only their own; leave player_id empty");
  EXPECT_TRUE(store.sheet("bob").values.empty());
  // A plugin's own trust names the player and reaches stats only.
  expect_error(
      [&] {
        service.update_stats(granter, "", {{"kills", StatChange::Kind::kSet, 1}});
      },
      K::kInvalidArgument, "player_id: a plugin calling with its own trust names the player");
  expect_error(
      [&] { service.set_display_name(granter, "Granter"); }, K::kPermissionDenied,
      "plugin 'inventory' calls with its own trust, which reaches stats only; call for a player to do "
      "this");
  expect_error(
      [&] { service.slot(granter, "ada", "main"); }, K::kPermissionDenied,
      "plugin 'inventory' calls with its own trust, which reaches stats only; call for a player to do "
      "this");
}

TEST_F(PlayerDataDomain, APlayersWritesAreLimitedPerMinuteAdminsAreNot) {
  Limits l = limits();
  l.max_writes_per_player_per_minute = 3;
  PlayerDataService service(
      l, store_, store_, store_, [this] { return now_.load(); }, {}, &writes_);
  service.write_slot(ada_, {"a", "1", std::nullopt});
  service.update_stats(ada_, "", {{"kills", StatChange::Kind::kIncrement, 1}});
  service.update_profile(ada_, {});
  const std::string over =
      "a player makes at most 3 writes a minute (max_writes_per_player_per_minute); nothing was changed, "
      "retry within a minute";
  expect_error([&] { service.write_slot(ada_, {"b", "2", std::nullopt}); }, K::kResourceExhausted, over);
  expect_error([&] { service.set_display_name(ada_, "Ada"); }, K::kResourceExhausted, over);
  expect_error([&] { service.delete_slot(ada_, "a", std::nullopt); }, K::kResourceExhausted, over);
  EXPECT_FALSE(store_.slot("ada", "b").has_value()) << "a refused write was written";
  // Reads are not counted; another player has a budget of their own; admins are not counted.
  EXPECT_EQ(service.slot(ada_, "", "a").data, "1");
  service.write_slot(bob_, {"a", "1", std::nullopt});
  for (int i = 0; i < 5; ++i)
    service.update_stats(admin_, "ada", {{"kills", StatChange::Kind::kIncrement, 1}});
  now_ += 60'000;
  EXPECT_NO_THROW(service.write_slot(ada_, {"b", "2", std::nullopt})) << "the next minute has a new budget";
}

// A stats record that every write finds changed: the call gives up after max_write_attempts.
TEST(PlayerDataRetries, AWriteThatAlwaysMeetsAnotherIsAbortedAfterItsAttemptsAndChangesNothing) {
  struct AlwaysChanged final : testing::InMemoryStore {
    using testing::InMemoryStore::save;
    int64_t save(const std::string&, const StatSheet&, const StatSheet&) override {
      throw WriteConflict("stats version moved");
    }
  } store;
  Limits limits;
  limits.max_write_attempts = 3;
  limits.player_writable_stats = {"kills"};
  std::vector<std::pair<std::string, bool>> seen;
  PlayerDataService service(
      limits, store, store, store, [] { return int64_t{1}; },
      [&](const char* record, bool aborted) { seen.emplace_back(record, aborted); });
  expect_error(
      [&] {
        service.update_stats({"ada", {}}, "", {{"kills", StatChange::Kind::kIncrement, 1}});
      },
      K::kAborted,
      "updates: 3 tries in a row met concurrent writes (max_write_attempts); nothing was changed, try again");
  EXPECT_EQ(seen,
            (std::vector<std::pair<std::string, bool>>{{"stats", false}, {"stats", false}, {"stats", true}}));
  EXPECT_TRUE(store.sheet("ada").values.empty());
}

}  // namespace
}  // namespace gameverse::playerdata
