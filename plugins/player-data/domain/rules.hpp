// Validation of everything a client sends. Each check throws PlayerDataError kInvalidArgument (or
// kOutOfRange for int64 arithmetic) with a message that names `field` and the limit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "domain/model.hpp"

namespace gameverse::playerdata {

// Display names are ASCII: letters, digits, and the separators ' ', '_', '-' between them (never
// two in a row, never first or last), min..max characters. With no other characters allowed there
// are no Unicode forms (NFC/NFD, full-width, homoglyphs from other scripts) to compare.
void check_display_name(std::string_view name, const Limits& limits, std::string_view field);

// The key a name is unique by: lower case, the look-alikes 0/o, 1/l/i and 5/s folded together,
// and every separator as '_'. "Ada_1", "ada-l" and "ADA 1" are one name.
std::string name_key(std::string_view name);

// A ListPlayers prefix: the characters of a name (1..max), folded as name_key folds them.
std::string prefix_key(std::string_view prefix, const Limits& limits, std::string_view field);

bool is_reserved(std::string_view name, const Limits& limits);

// A player id as the auth plugin makes them: [A-Za-z0-9_-], 1..128 bytes.
void check_player_id(std::string_view id, std::string_view field);

// https:// URL (printable ASCII, no spaces, a host) or an asset id ([A-Za-z0-9_.:-], 1..128).
void check_avatar(const Avatar& avatar, const Limits& limits, std::string_view field);

// [A-Za-z0-9_.-], 1..max_bytes: metadata keys, slot names, stat names.
void check_token(std::string_view value, int64_t max_bytes, std::string_view field);

bool valid_utf8(std::string_view text);

// a + b, or kOutOfRange naming `field` when it leaves int64.
int64_t checked_add(int64_t a, int64_t b, std::string_view field);

}  // namespace gameverse::playerdata
