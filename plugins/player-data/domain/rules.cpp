#include "domain/rules.hpp"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cstdio>
#include <limits>

namespace gameverse::playerdata {

namespace {

using K = PlayerDataError::Kind;

[[noreturn]] void invalid(std::string_view field, const std::string& why) {
  throw PlayerDataError(K::kInvalidArgument, std::string(field) + ": " + why);
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// The character printed in a message: printable ASCII as is, anything else as its byte in hex.
std::string shown(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x21 && byte < 0x7f) return std::string("'") + c + "'";
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("byte 0x") + kHex[byte >> 4] + kHex[byte & 0xf];
}

}  // namespace

bool Caller::staff() const {
  return std::any_of(roles.begin(), roles.end(), [](const std::string& r) {
    return r == "moderator" || r == "admin" || r == "operator";
  });
}

bool Caller::admin() const {
  return std::any_of(roles.begin(), roles.end(),
                     [](const std::string& r) { return r == "admin" || r == "operator"; });
}

bool player_writable(std::string_view name, const Limits& limits) {
  return std::any_of(limits.player_writable_stats.begin(), limits.player_writable_stats.end(),
                     [&](const std::string& pattern) {
                       if (pattern.ends_with('*'))
                         return name.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1));
                       return name == pattern;
                     });
}

void check_stat_pattern(std::string_view pattern, std::string_view field) {
  if (pattern == "*") return;
  check_token(pattern.ends_with('*') ? pattern.substr(0, pattern.size() - 1) : pattern, 64, field);
}

void check_player_id(std::string_view id, std::string_view field) {
  if (id.empty() || id.size() > 128) {
    invalid(field, "a player id has 1 to 128 bytes, not " + std::to_string(id.size()));
  }
  for (size_t i = 0; i < id.size(); ++i) {
    if (!is_alnum(id[i]) && id[i] != '_' && id[i] != '-') {
      invalid(field, "a player id has [A-Za-z0-9_-] only; " + shown(id[i]) + " at byte " + std::to_string(i) +
                         " is not");
    }
  }
}

void check_avatar(const Avatar& avatar, const Limits& limits, std::string_view field) {
  const std::string_view v = avatar.value;
  switch (avatar.kind) {
    case AvatarKind::kNone: return;
    case AvatarKind::kUrl: {
      const std::string f = std::string(field) + "_url";
      if (static_cast<int64_t>(v.size()) > limits.max_avatar_bytes) {
        invalid(f, "at most " + std::to_string(limits.max_avatar_bytes) + " bytes, not " +
                       std::to_string(v.size()));
      }
      constexpr std::string_view kScheme = "https://";
      if (!v.starts_with(kScheme)) invalid(f, "an avatar URL begins with https://");
      for (size_t i = 0; i < v.size(); ++i) {
        const auto byte = static_cast<unsigned char>(v[i]);
        if (byte <= 0x20 || byte >= 0x7f || v[i] == '"' || v[i] == '<' || v[i] == '>' || v[i] == '\\') {
          invalid(f, "an avatar URL is printable ASCII without spaces, quotes, '<', '>' or '\\'; " +
                         shown(v[i]) + " at byte " + std::to_string(i) + " is not");
        }
      }
      const std::string_view rest = v.substr(kScheme.size());
      const size_t host_end = rest.find_first_of("/?#");
      const std::string_view host = rest.substr(0, host_end);
      if (host.empty() || host.find('@') != std::string_view::npos) {
        invalid(f, "an avatar URL names a host (and no user: '@' is refused)");
      }
      // A URL on a host a player chose makes every client that shows the avatar tell that host
      // its address.
      if (limits.allowed_avatar_hosts.empty()) {
        invalid(f, "avatar URLs are off here (allowed_avatar_hosts is empty); give an avatar_asset_id");
      }
      std::string lower(host);
      for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      if (std::find(limits.allowed_avatar_hosts.begin(), limits.allowed_avatar_hosts.end(), lower) ==
          limits.allowed_avatar_hosts.end()) {
        std::string allowed;
        for (const auto& h : limits.allowed_avatar_hosts) allowed += (allowed.empty() ? "" : ", ") + h;
        invalid(f, "an avatar URL names one of the hosts allowed_avatar_hosts lists (" + allowed +
                       "), not '" + std::string(host) + "'");
      }
      return;
    }
    case AvatarKind::kAssetId: {
      const std::string f = std::string(field) + "_asset_id";
      if (v.empty() || v.size() > 128) {
        invalid(f, "an asset id has 1 to 128 bytes, not " + std::to_string(v.size()));
      }
      for (size_t i = 0; i < v.size(); ++i) {
        const char c = v[i];
        if (!is_alnum(c) && c != '_' && c != '.' && c != ':' && c != '-') {
          invalid(f, "an asset id has [A-Za-z0-9_.:-] only; " + shown(c) + " at byte " + std::to_string(i) +
                         " is not");
        }
      }
      return;
    }
  }
}

void check_token(std::string_view value, int64_t max_bytes, std::string_view field) {
  if (value.empty() || static_cast<int64_t>(value.size()) > max_bytes) {
    invalid(field, "1 to " + std::to_string(max_bytes) + " bytes, not " + std::to_string(value.size()));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (!is_alnum(c) && c != '_' && c != '.' && c != '-') {
      invalid(field, "[A-Za-z0-9_.-] only; " + shown(c) + " at byte " + std::to_string(i) + " is not");
    }
  }
}

bool valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      length = 2;
      code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3;
      code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3f);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((length == 2 && code < 0x80) || (length == 3 && code < 0x800) || (length == 4 && code < 0x10000) ||
        (code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) {
      return false;
    }
    i += length;
  }
  return true;
}

void check_plain_text(std::string_view text, std::string_view field) {
  if (!valid_utf8(text)) invalid(field, "not UTF-8");
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  const auto length = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < length;) {
    const int32_t at = i;
    UChar32 c = 0;
    U8_NEXT(bytes, i, length, c);
    const int8_t type = u_charType(c);
    if (type == U_CONTROL_CHAR || type == U_FORMAT_CHAR) {
      char code[16];
      std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
      invalid(field, std::string(code) + " at byte " + std::to_string(at) +
                         " is a control or format character (line breaks, bidi overrides, zero-width "
                         "characters); text here has none");
    }
  }
}

int64_t checked_add(int64_t a, int64_t b, std::string_view field) {
  int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) {
    throw PlayerDataError(K::kOutOfRange, std::string(field) + ": " + std::to_string(a) + " + " +
                                              std::to_string(b) + " is outside int64 [" +
                                              std::to_string(std::numeric_limits<int64_t>::min()) + ", " +
                                              std::to_string(std::numeric_limits<int64_t>::max()) + "]");
  }
  return out;
}

}  // namespace gameverse::playerdata
