#include "domain/names.hpp"

#include <unicode/brkiter.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/uset.h>
#include <unicode/uspoof.h>

#include <algorithm>
#include <memory>

#include "domain/rules.hpp"

namespace gameverse::playerdata {

namespace {

using K = PlayerDataError::Kind;

// Bounds on the raw text before ICU sees it: a character may carry a few combining marks, no more.
constexpr int64_t kBytesPerCharacter = 16;
constexpr int64_t kCodePointsPerCharacter = 4;
// Keys are store keys (at most 512 bytes); a name whose folding grows past this is refused.
constexpr size_t kMaxKeyBytes = 400;

[[noreturn]] void invalid(std::string_view field, const std::string& why) {
  throw PlayerDataError(K::kInvalidArgument, std::string(field) + ": " + why);
}

void check_icu(UErrorCode status, const char* what) {
  if (U_FAILURE(status)) throw std::runtime_error(std::string("ICU ") + what + ": " + u_errorName(status));
}

std::string utf8(const icu::UnicodeString& text) {
  std::string out;
  text.toUTF8String(out);
  return out;
}

std::string code_point(UChar32 c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string digits;
  for (auto v = static_cast<uint32_t>(c); v != 0 || digits.size() < 4; v >>= 4) digits += kHex[v & 0xf];
  std::reverse(digits.begin(), digits.end());
  return "U+" + digits;
}

bool is_separator(UChar32 c) {
  return c == ' ' || c == '_' || c == '-';
}

bool is_letter_or_digit(UChar32 c) {
  switch (u_charType(c)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
    case U_DECIMAL_DIGIT_NUMBER: return true;
    default: return false;
  }
}

bool is_mark(UChar32 c) {
  const int8_t type = u_charType(c);
  return type == U_NON_SPACING_MARK || type == U_COMBINING_SPACING_MARK;
}

using SpoofChecker = std::unique_ptr<USpoofChecker, void (*)(USpoofChecker*)>;

// What names are checked with, built once and then only read: ICU's normalizers and a configured
// spoof checker may be shared between threads.
struct Icu {
  const icu::Normalizer2* nfc = nullptr;
  const icu::Normalizer2* nfkc = nullptr;
  const icu::Normalizer2* nfkc_cf = nullptr;
  const USet* recommended = nullptr;  // UTS #39 identifier characters, frozen by ICU
  SpoofChecker spoof{nullptr, uspoof_close};
};

// NFKC case-folded (full-width, mathematical and ligature forms to their plain letters, case
// folded), separators as '_'.
icu::UnicodeString search_form(const Icu& data, const icu::UnicodeString& text) {
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString out = data.nfkc_cf->normalize(text, status);
  check_icu(status, "NFKC_Casefold");
  out.findAndReplace(icu::UnicodeString(u' '), icu::UnicodeString(u'_'));
  out.findAndReplace(icu::UnicodeString(u'-'), icu::UnicodeString(u'_'));
  return out;
}

icu::UnicodeString skeleton_of(const Icu& data, const icu::UnicodeString& text) {
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString skeleton;
  uspoof_getSkeletonUnicodeString(data.spoof.get(), 0, text, skeleton, &status);
  check_icu(status, "uspoof_getSkeleton");
  return skeleton;
}

// The skeleton is taken before case folding and again after it: capitals have look-alikes of their
// own (Cyrillic МАХ and Latin MAX, Lisu ꓮ and A) that folding first would take apart, and folding
// a skeleton can make new ones ('I' becomes 'l', then folds to itself).
std::string key_of(const Icu& data, const icu::UnicodeString& text) {
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString compatible = data.nfkc->normalize(text, status);
  check_icu(status, "NFKC");
  icu::UnicodeString folded = search_form(data, skeleton_of(data, compatible));
  icu::UnicodeString skeleton = skeleton_of(data, folded);
  skeleton.foldCase();  // the skeleton maps '0' to 'O', 'I' to 'l'
  std::string key = utf8(skeleton);
  // Look-alikes the skeleton keeps apart but a player reading a name does not.
  for (char& c : key) {
    if (c == '1' || c == 'i') c = 'l';
    if (c == '0') c = 'o';
    if (c == '5') c = 's';
  }
  return key;
}

// In UTS #39's recommended set, itself or (full-width, mathematical and other compatibility forms,
// which keys fold to their plain letters) its NFKC form.
bool recommended(const Icu& data, UChar32 c) {
  if (uset_contains(data.recommended, c)) return true;
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString plain = data.nfkc->normalize(icu::UnicodeString(c), status);
  check_icu(status, "NFKC");
  if (plain.isEmpty() || plain == icu::UnicodeString(c)) return false;
  for (int32_t i = 0; i < plain.length(); i += U16_LENGTH(plain.char32At(i))) {
    if (!uset_contains(data.recommended, plain.char32At(i))) return false;
  }
  return true;
}

int64_t grapheme_clusters(const icu::UnicodeString& text) {
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::BreakIterator> it(
      icu::BreakIterator::createCharacterInstance(icu::Locale::getRoot(), status));
  check_icu(status, "BreakIterator");
  it->setText(text);
  int64_t count = 0;
  for (int32_t at = it->next(); at != icu::BreakIterator::DONE; at = it->next()) ++count;
  return count;
}

int32_t spoof_checks(const Icu& data, const icu::UnicodeString& words) {
  UErrorCode status = U_ZERO_ERROR;
  const int32_t checks = uspoof_check2UnicodeString(data.spoof.get(), words, nullptr, &status);
  check_icu(status, "uspoof_check2");
  return checks;
}

// ICU builds its data (normalization, confusables, break rules) on first use, behind its own
// synchronization, which ThreadSanitizer cannot see in an uninstrumented ICU. So the first use of
// everything a name goes through happens here, once, inside a C++ static initialization, and every
// later use visibly happens after it.
const Icu& icu_data() {
  static const Icu instance = [] {
    Icu data;
    UErrorCode status = U_ZERO_ERROR;
    data.nfc = icu::Normalizer2::getNFCInstance(status);
    data.nfkc = icu::Normalizer2::getNFKCInstance(status);
    data.nfkc_cf = icu::Normalizer2::getNFKCCasefoldInstance(status);
    check_icu(status, "Normalizer2");
    data.recommended = uspoof_getRecommendedSet(&status);
    check_icu(status, "uspoof_getRecommendedSet");
    data.spoof.reset(uspoof_open(&status));
    check_icu(status, "uspoof_open");
    uspoof_setChecks(data.spoof.get(), USPOOF_RESTRICTION_LEVEL | USPOOF_INVISIBLE | USPOOF_MIXED_NUMBERS,
                     &status);
    uspoof_setRestrictionLevel(data.spoof.get(), USPOOF_MODERATELY_RESTRICTIVE);
    check_icu(status, "uspoof_setChecks");
    const icu::UnicodeString sample(u"Warm-up \u0430\u0301 \u5c71\u7530 1");
    const icu::UnicodeString composed = data.nfc->normalize(sample, status);
    check_icu(status, "NFC");
    key_of(data, composed);
    grapheme_clusters(composed);
    u_hasBinaryProperty(0x3164, UCHAR_DEFAULT_IGNORABLE_CODE_POINT);
    recommended(data, 0xff21);
    spoof_checks(data, composed);
    return data;
  }();
  return instance;
}

void check_bytes(std::string_view text, const Limits& limits, std::string_view field) {
  if (!valid_utf8(text)) invalid(field, "not UTF-8");
  const int64_t max_bytes = limits.max_display_name_chars * kBytesPerCharacter;
  if (static_cast<int64_t>(text.size()) > max_bytes) {
    invalid(field, "at most " + std::to_string(limits.max_display_name_chars) + " characters (" +
                       std::to_string(max_bytes) + " bytes), not " + std::to_string(text.size()) + " bytes");
  }
}

}  // namespace

FoldedName fold_display_name(std::string_view name, const Limits& limits, std::string_view field) {
  check_bytes(name, limits, field);
  const Icu& data = icu_data();
  UErrorCode status = U_ZERO_ERROR;
  const icu::UnicodeString text = data.nfc->normalize(
      icu::UnicodeString::fromUTF8(icu::StringPiece(name.data(), static_cast<int32_t>(name.size()))), status);
  check_icu(status, "NFC");

  enum class Last { kNothing, kWord, kSeparator } last = Last::kNothing;
  icu::UnicodeString words;  // without separators, for the spoof checker
  std::vector<icu::UnicodeString> each_word(1);
  int64_t code_points = 0;
  for (int32_t i = 0; i < text.length(); i += U16_LENGTH(text.char32At(i))) {
    const UChar32 c = text.char32At(i);
    ++code_points;
    // Invisible characters (Hangul fillers are letters to u_charType) and those Unicode does not
    // recommend for identifiers (small capitals, Lisu, obsolete scripts) are refused before anything.
    if (u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT)) {
      invalid(field, code_point(c) + " at character " + std::to_string(code_points) +
                         " is invisible; a display name has only characters that show");
    }
    if ((is_letter_or_digit(c) || is_mark(c)) && !recommended(data, c)) {
      invalid(field, code_point(c) + " at character " + std::to_string(code_points) +
                         " is not among the characters Unicode recommends for names (UTS #39 "
                         "identifier characters: no look-alike, obsolete or technical forms)");
    }
    if (is_letter_or_digit(c)) {
      last = Last::kWord;
    } else if (is_mark(c)) {
      if (last != Last::kWord)
        invalid(field, "the combining mark " + code_point(c) + " follows no letter or digit");
    } else if (is_separator(c)) {
      if (last == Last::kNothing) invalid(field, "a display name begins and ends with a letter or digit");
      if (last == Last::kSeparator) invalid(field, "a display name has no two of ' ', '_', '-' in a row");
      last = Last::kSeparator;
      each_word.emplace_back();
      continue;
    } else {
      invalid(field,
              "a display name has letters and digits (of any script) with single ' ', '_' or '-' "
              "between them; " +
                  code_point(c) + " at character " + std::to_string(code_points) + " is none of them");
    }
    words.append(c);
    each_word.back().append(c);
  }
  if (last == Last::kSeparator) invalid(field, "a display name begins and ends with a letter or digit");

  const int64_t characters = grapheme_clusters(text);
  if (characters < limits.min_display_name_chars || characters > limits.max_display_name_chars) {
    invalid(field, "a display name has " + std::to_string(limits.min_display_name_chars) + " to " +
                       std::to_string(limits.max_display_name_chars) + " characters, not " +
                       std::to_string(characters));
  }
  if (code_points > limits.max_display_name_chars * kCodePointsPerCharacter) {
    invalid(field, "a display name has at most " +
                       std::to_string(limits.max_display_name_chars * kCodePointsPerCharacter) +
                       " code points (" + std::to_string(kCodePointsPerCharacter) +
                       " for each of max_display_name_chars), not " + std::to_string(code_points));
  }

  const int32_t checks = spoof_checks(data, words);
  if ((checks & USPOOF_RESTRICTION_LEVEL) != 0) {
    invalid(field,
            "a display name is written in one script (Latin may go with Han, Hiragana, Katakana or "
            "Hangul); this one mixes scripts whose letters look alike, such as Latin with Cyrillic or "
            "Greek");
  }
  if ((checks & USPOOF_MIXED_NUMBERS) != 0) {
    invalid(field, "a display name has digits of one number system only");
  }
  if ((checks & USPOOF_INVISIBLE) != 0) {
    invalid(field, "a display name has no combining mark twice in a row on one letter");
  }

  FoldedName out;
  out.display = utf8(text);
  out.search_key = utf8(search_form(data, text));
  out.key = key_of(data, text);
  if (out.key.empty() || out.search_key.empty()) {
    invalid(field, "a display name has at least one letter or digit that shows");
  }
  if (each_word.size() > 1) {
    for (const auto& word : each_word) out.word_keys.push_back(key_of(data, word));
  }
  if (out.key.size() > kMaxKeyBytes || out.search_key.size() > kMaxKeyBytes) {
    invalid(field, "a display name folds to a key of at most " + std::to_string(kMaxKeyBytes) +
                       " bytes; this one makes " +
                       std::to_string(std::max(out.key.size(), out.search_key.size())));
  }
  return out;
}

std::string name_key(std::string_view utf8_text) {
  return key_of(icu_data(), icu::UnicodeString::fromUTF8(
                                icu::StringPiece(utf8_text.data(), static_cast<int32_t>(utf8_text.size()))));
}

std::string prefix_key(std::string_view prefix, const Limits& limits, std::string_view field) {
  if (prefix.empty()) invalid(field, "give at least 1 character");
  check_bytes(prefix, limits, field);
  const icu::UnicodeString text =
      icu::UnicodeString::fromUTF8(icu::StringPiece(prefix.data(), static_cast<int32_t>(prefix.size())));
  int64_t code_points = 0;
  for (int32_t i = 0; i < text.length(); i += U16_LENGTH(text.char32At(i))) {
    const UChar32 c = text.char32At(i);
    ++code_points;
    if (!is_letter_or_digit(c) && !is_mark(c) && !is_separator(c)) {
      invalid(field,
              "a display name has letters and digits (of any script) with single ' ', '_' or '-' "
              "between them; " +
                  code_point(c) + " at character " + std::to_string(code_points) + " is none of them");
    }
  }
  if (code_points > limits.max_display_name_chars * kCodePointsPerCharacter) {
    invalid(field, "at most " + std::to_string(limits.max_display_name_chars) + " characters");
  }
  return utf8(search_form(icu_data(), text));
}

std::set<std::string> reserved_keys(const std::vector<std::string>& reserved_names) {
  std::set<std::string> keys;
  for (const auto& name : reserved_names) keys.insert(name_key(name));
  keys.erase("");
  return keys;
}

bool is_reserved(const FoldedName& name, const std::set<std::string>& reserved_keys) {
  if (reserved_keys.contains(name.key)) return true;
  return std::any_of(name.word_keys.begin(), name.word_keys.end(),
                     [&](const std::string& word) { return reserved_keys.contains(word); });
}

}  // namespace gameverse::playerdata
