// Display names in any script, with ICU: what is accepted, the key a name is unique by, and the
// key ListPlayers matches a prefix against. ICU is a library like the standard one; the rules are
// the domain's, so they live here and are unit-tested without a host.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "domain/model.hpp"

namespace gameverse::playerdata {

// The version of the key algorithm below, stored with every name so that keys made by an earlier
// one can be told apart (and made again) when it changes. 1: case-folded before the skeleton;
// 2: skeleton, fold, skeleton again.
inline constexpr int32_t kNameKeyVersion = 2;

// A claimed name, as stored and compared.
struct FoldedName {
  std::string display;                 // the name in NFC
  std::string key;                     // unique by: the confusable skeleton, see name_key
  std::string search_key;              // listed by: NFKC case-folded, separators as '_'
  std::vector<std::string> word_keys;  // name_key of each word between separators
};

// Checks a display name and returns it NFC-normalized with its keys, or throws kInvalidArgument
// naming `field`. Accepted: letters and digits of any script (combining marks after them), with
// single ' ', '_' or '-' between; min..max grapheme clusters (user-perceived characters); no mix
// of scripts that ICU's spoof checker refuses at the moderately restrictive level (Latin with
// Cyrillic, Greek or Cherokee; digits of two systems). Invalid UTF-8 is refused.
FoldedName fold_display_name(std::string_view name, const Limits& limits, std::string_view field);

// The uniqueness key of any text (valid UTF-8): NFKC case-folded, separators as '_', ICU's
// confusable skeleton (UTS #39), case-folded again, and the ASCII look-alikes 1/i -> l, 0 -> o,
// 5 -> s. "Admin", "аdmin" (Cyrillic а), "ADM1N" and "ａｄｍｉｎ" have one key.
std::string name_key(std::string_view utf8);

// A ListPlayers prefix (1..max characters of a name) folded as search keys are. A skeleton is not
// prefix-stable ("r" + "n" becomes "m"), so listing goes by the search key, never the skeleton.
std::string prefix_key(std::string_view prefix, const Limits& limits, std::string_view field);

// The name keys of reserved names, computed once (when the service is made).
std::set<std::string> reserved_keys(const std::vector<std::string>& reserved_names);

// Whether the name, or any word of it between separators, has the key of a reserved name:
// "Admin", "ADM1N", "Admin Team" and "GM_Sarah" when admin and gm are reserved.
bool is_reserved(const FoldedName& name, const std::set<std::string>& reserved_keys);

}  // namespace gameverse::playerdata
