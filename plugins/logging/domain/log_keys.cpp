#include "domain/log_keys.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>

namespace gameverse::logging {

namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

template <class T>
std::optional<T> number(std::string_view s) {
  T value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::string two_digits(int n) {
  char out[16];
  std::snprintf(out, sizeof out, "%02d", n);
  return out;
}

constexpr std::string_view kBase64Url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(std::string_view in) {
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (unsigned char c : in) {
    bits = (bits << 8) | c;
    count += 8;
    while (count >= 6) {
      out += kBase64Url[(bits >> (count - 6)) & 63];
      count -= 6;
    }
  }
  if (count > 0) out += kBase64Url[(bits << (6 - count)) & 63];
  return out;
}

std::optional<std::string> unbase64url(std::string_view in) {
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : in) {
    const size_t v = kBase64Url.find(c);
    if (v == std::string_view::npos) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      out += static_cast<char>((bits >> (count - 8)) & 0xff);
      count -= 8;
    }
  }
  return out;
}

bool chunk_key_shape(std::string_view key) {
  // <family>/<YYYYMMDDHH>/<MM>/<id>, the id of [0-9a-f-]
  if (key.size() < 17 || key.size() > 80) return false;
  if (key[0] < '0' || key[0] > '6' || key[1] != '/' || key[12] != '/' || key[15] != '/') return false;
  if (!hour_start(key.substr(2, 10)) || !all_digits(key.substr(13, 2))) return false;
  const std::string_view id = key.substr(16);
  return !id.empty() && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-';
  });
}

}  // namespace

int severity_family(int32_t severity_number) {
  if (severity_number <= 0) return 0;
  return std::min(6, (severity_number - 1) / 4 + 1);
}

int32_t family_floor(int family) {
  return family <= 0 ? 0 : (family - 1) * 4 + 1;
}

std::string hour_of(int64_t unix_nano) {
  using namespace std::chrono;
  const sys_seconds t{seconds(unix_nano / kNanosPerSecond)};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const auto hour = duration_cast<hours>(t - day).count();
  char out[32];
  std::snprintf(out, sizeof out, "%04d%02u%02u%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), static_cast<int>(hour));
  return out;
}

std::optional<int64_t> hour_start(std::string_view hour) {
  using namespace std::chrono;
  if (hour.size() != 10 || !all_digits(hour)) return std::nullopt;
  const int y = *number<int>(hour.substr(0, 4));
  const unsigned m = *number<unsigned>(hour.substr(4, 2));
  const unsigned d = *number<unsigned>(hour.substr(6, 2));
  const int h = *number<int>(hour.substr(8, 2));
  const year_month_day ymd{year(y), month(m), day(d)};
  if (!ymd.ok() || h > 23 || y < 1970) return std::nullopt;
  return (sys_days(ymd).time_since_epoch().count() * 24 + h) * kNanosPerHour;
}

std::string chunk_prefix(int family, std::string_view hour, int minute) {
  return std::to_string(family) + "/" + std::string(hour) + "/" + two_digits(minute) + "/";
}

std::string chunk_key(int family, std::string_view hour, int minute, std::string_view chunk_id) {
  return chunk_prefix(family, hour, minute) + std::string(chunk_id);
}

std::string marker_key(std::string_view hour, int minute, int family) {
  return std::string(hour) + "/" + two_digits(minute) + "/" + std::to_string(family);
}

std::optional<MarkerKey> parse_marker_key(std::string_view key) {
  if (key.size() != 15 || key[10] != '/' || key[13] != '/') return std::nullopt;
  if (!hour_start(key.substr(0, 10)) || !all_digits(key.substr(11, 2))) return std::nullopt;
  const int minute = *number<int>(key.substr(11, 2));
  const int family = key[14] - '0';
  if (minute > 59 || family < 0 || family >= kFamilies) return std::nullopt;
  return MarkerKey{std::string(key.substr(0, 10)), minute, family};
}

std::string size_key(std::string_view hour, int family, std::string_view writer) {
  return std::string(hour) + "/" + std::to_string(family) + "/" + std::string(writer);
}

std::optional<SizeKey> parse_size_key(std::string_view key) {
  if (key.size() < 14 || key[10] != '/' || key[12] != '/') return std::nullopt;
  if (!hour_start(key.substr(0, 10))) return std::nullopt;
  const int family = key[11] - '0';
  if (family < 0 || family >= kFamilies) return std::nullopt;
  return SizeKey{std::string(key.substr(0, 10)), family, std::string(key.substr(13))};
}

bool indexable_request_id(std::string_view request_id) {
  return !request_id.empty() && request_id.size() <= 64 &&
         std::all_of(request_id.begin(), request_id.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == ':' || c == '-';
         });
}

std::string encode_cursor(const Position& position) {
  return "c1." + base64url(std::to_string(position.time_unix_nano) + "|" + position.chunk_key + "|" +
                           std::to_string(position.index));
}

std::optional<Position> decode_cursor(std::string_view cursor, std::string* error) {
  auto fail = [&](const char* why) -> std::optional<Position> {
    if (error != nullptr) *error = std::string("cursor: ") + why;
    return std::nullopt;
  };
  if (cursor.size() > 256) return fail("longer than any cursor this service gives");
  if (cursor.substr(0, 3) != "c1.") return fail("not a cursor this service gave (wrong version)");
  const std::optional<std::string> text = unbase64url(cursor.substr(3));
  if (!text) return fail("not base64url");
  const size_t first = text->find('|');
  const size_t last = text->rfind('|');
  if (first == std::string::npos || first == last) return fail("damaged");
  const std::optional<int64_t> time = number<int64_t>(std::string_view(*text).substr(0, first));
  const std::optional<int64_t> index = number<int64_t>(std::string_view(*text).substr(last + 1));
  const std::string_view key = std::string_view(*text).substr(first + 1, last - first - 1);
  // A scan's place between minutes has no chunk (an empty key or the highest one).
  const bool between_minutes = key.empty() || key == "~";
  if (!time || *time < 0 || !index || (!between_minutes && (!chunk_key_shape(key) || *index < 0))) {
    return fail("damaged");
  }
  return Position{*time, std::string(key), *index};
}

}  // namespace gameverse::logging
