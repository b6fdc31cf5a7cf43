#include "domain/channel.hpp"

#include <charconv>
#include <cstdio>

#include "domain/text.hpp"

namespace gameverse::chat {

std::optional<ChannelKind> kind_of(std::string_view id) {
  if (id.starts_with("room:")) return ChannelKind::kRoom;
  if (id.starts_with("group:")) return ChannelKind::kGroup;
  if (id.starts_with("dm:")) return ChannelKind::kDirect;
  return std::nullopt;
}

std::string room_id(std::string_view name) {
  return "room:" + std::string(name);
}
std::string group_id(std::string_view random_id) {
  return "group:" + std::string(random_id);
}
std::string direct_id(std::string_view a, std::string_view b) {
  return a < b ? "dm:" + std::string(a) + ":" + std::string(b)
               : "dm:" + std::string(b) + ":" + std::string(a);
}

std::string direct_peer(std::string_view id, std::string_view player) {
  if (!id.starts_with("dm:")) return {};
  const std::string_view rest = id.substr(3);
  const size_t colon = rest.find(':');
  if (colon == std::string_view::npos) return {};
  const std::string_view a = rest.substr(0, colon), b = rest.substr(colon + 1);
  if (a == player) return std::string(b);
  if (b == player) return std::string(a);
  return {};
}

std::string check_channel_id(std::string_view field, std::string_view id) {
  const std::string name(field);
  const std::optional<ChannelKind> kind = kind_of(id);
  if (!kind)
    return name + ": '" + std::string(id.substr(0, 80)) + "' is not a channel id (room:, group: or dm:)";
  const size_t colon = id.find(':');
  const std::string_view rest = id.substr(colon + 1);
  if (*kind != ChannelKind::kDirect) return check_identifier(field, rest, 64);
  const size_t second = rest.find(':');
  if (second == std::string_view::npos) return name + ": a direct channel id is dm:<player>:<player>";
  const std::string_view a = rest.substr(0, second), b = rest.substr(second + 1);
  if (std::string p = check_identifier(field, a, 128); !p.empty()) return p;
  if (std::string p = check_identifier(field, b, 128); !p.empty()) return p;
  if (!(a < b)) return name + ": a direct channel id names its two players in order";
  return {};
}

std::string encode_cursor(uint64_t seq) {
  // Opaque to clients; versioned so its form can change.
  char out[32];
  std::snprintf(out, sizeof out, "c1.%llx", static_cast<unsigned long long>(seq));
  return out;
}

std::optional<uint64_t> decode_cursor(std::string_view cursor) {
  if (!cursor.starts_with("c1.") || cursor.size() < 4 || cursor.size() > 19) return std::nullopt;
  uint64_t seq = 0;
  const char* end = cursor.data() + cursor.size();
  const auto [ptr, ec] = std::from_chars(cursor.data() + 3, end, seq, 16);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return seq;
}

std::string event_key(std::string_view channel_id, uint64_t seq) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(seq));
  return std::string(channel_id) + "/" + digits;
}

std::string event_block_prefix(std::string_view channel_id, uint64_t first) {
  std::string key = event_key(channel_id, first);
  key.resize(key.size() - 2);
  return key;
}

std::optional<uint64_t> seq_of_event_key(std::string_view key) {
  const size_t slash = key.rfind('/');
  if (slash == std::string_view::npos) return std::nullopt;
  uint64_t seq = 0;
  const char* end = key.data() + key.size();
  const auto [ptr, ec] = std::from_chars(key.data() + slash + 1, end, seq);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return seq;
}

bool may_moderate(const Standing& actor) {
  return actor.global_moderator || (actor.member && !actor.banned && actor.role >= Role::kModerator);
}

bool may_moderate_member(const Standing& actor, const Standing& subject) {
  if (actor.global_moderator) return true;
  if (!may_moderate(actor)) return false;
  return !subject.global_moderator && subject.role < actor.role;
}

bool muted(const Standing& s, int64_t now_unix_ms) {
  return s.muted_until_unix_ms > now_unix_ms;
}

}  // namespace gameverse::chat
