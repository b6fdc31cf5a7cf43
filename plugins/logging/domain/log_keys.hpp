// Where records live in the store, and the cursors that name a record's place. Records are kept in
// chunks per severity family and minute (of the record's own time), so that a query reads only
// the minutes and severities it asks for, and retention drops whole hours of one severity.
//   chunks    <family>/<YYYYMMDDHH>/<MM>/<chunk id>     the records
//   minutes   <YYYYMMDDHH>/<MM>/<family>                a minute and severity that hold records
//   sizes     <YYYYMMDDHH>/<family>/<writer>            bytes and records one writer stored there
//   requests  <request id>/<chunk key>                  the chunks that hold a request's records
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gameverse::logging {

// 0 unspecified, 1 TRACE .. 6 FATAL.
int severity_family(int32_t severity_number);
// The lowest severity number of a family (family 0: 0).
int32_t family_floor(int family);
inline constexpr int kFamilies = 7;

inline constexpr int64_t kNanosPerSecond = 1'000'000'000;
inline constexpr int64_t kNanosPerMinute = 60 * kNanosPerSecond;
inline constexpr int64_t kNanosPerHour = 60 * kNanosPerMinute;

// "YYYYMMDDHH" of the UTC hour that holds `unix_nano` (which must not be negative).
std::string hour_of(int64_t unix_nano);
// The start of an hour named as hour_of makes it; nullopt when `hour` is not such a name.
std::optional<int64_t> hour_start(std::string_view hour);

std::string chunk_prefix(int family, std::string_view hour, int minute);
std::string chunk_key(int family, std::string_view hour, int minute, std::string_view chunk_id);
std::string marker_key(std::string_view hour, int minute, int family);

struct MarkerKey {
  std::string hour;
  int minute = 0;
  int family = 0;
};
std::optional<MarkerKey> parse_marker_key(std::string_view key);

struct SizeKey {
  std::string hour;
  int family = 0;
  std::string writer;
};
std::string size_key(std::string_view hour, int family, std::string_view writer);
std::optional<SizeKey> parse_size_key(std::string_view key);

// Request ids that can be indexed: 1 to 64 of [A-Za-z0-9._:-]. Others are still stored and found
// by a scan of the time range.
bool indexable_request_id(std::string_view request_id);

// A record's place in the order of a query: by time, then chunk, then position in the chunk.
struct Position {
  int64_t time_unix_nano = 0;
  std::string chunk_key;
  int64_t index = 0;
  friend auto operator<=>(const Position&, const Position&) = default;
};

// Opaque text for clients; decode_cursor refuses anything encode_cursor did not make, saying why.
std::string encode_cursor(const Position& position);
// The position, or nullopt with `error` saying why; never throws.
std::optional<Position> decode_cursor(std::string_view cursor, std::string* error);

}  // namespace gameverse::logging
