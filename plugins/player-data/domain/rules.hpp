// Validation of everything a client sends. Each check throws PlayerDataError kInvalidArgument (or
// kOutOfRange for int64 arithmetic) with a message that names `field` and the limit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "domain/model.hpp"

namespace gameverse::playerdata {

// Whether players may write stat `name` themselves: limits.player_writable_stats lists it, or a
// prefix of it as "prefix*" ("*" alone: every stat).
bool player_writable(std::string_view name, const Limits& limits);

// A player_writable_stats entry: a stat name ([A-Za-z0-9_.-], 1..64 bytes), optionally ending in '*'.
void check_stat_pattern(std::string_view pattern, std::string_view field);

// A player id as the auth plugin makes them: [A-Za-z0-9_-], 1..128 bytes.
void check_player_id(std::string_view id, std::string_view field);

// https:// URL (printable ASCII, no spaces, a host that limits.allowed_avatar_hosts lists; none
// when it is empty) or an asset id ([A-Za-z0-9_.:-], 1..128).
void check_avatar(const Avatar& avatar, const Limits& limits, std::string_view field);

// [A-Za-z0-9_.-], 1..max_bytes: metadata keys, slot names, stat names.
void check_token(std::string_view value, int64_t max_bytes, std::string_view field);

bool valid_utf8(std::string_view text);

// UTF-8 without control (Cc) or format (Cf) characters: no line breaks, bidi overrides that turn
// text around, or zero-width characters that hide in it.
void check_plain_text(std::string_view text, std::string_view field);

// a + b, or kOutOfRange naming `field` when it leaves int64.
int64_t checked_add(int64_t a, int64_t b, std::string_view field);

}  // namespace gameverse::playerdata
