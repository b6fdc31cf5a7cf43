// Protocol Buffers' wire format, written and read by hand: the room encodes each changed entity
// once per tick and splices the same bytes into every client's frame, which generated code cannot.
// The messages it writes are those of gameverse/world/v1/world.proto.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gameverse::world::wire {

enum WireType : uint32_t { kVarint = 0, kLengthDelimited = 2 };

inline uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t unzigzag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

inline void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
inline void tag(std::string& out, uint32_t field, WireType type) {
  varint(out, (field << 3) | type);
}
inline void uint_field(std::string& out, uint32_t field, uint64_t v) {
  if (v == 0) return;
  tag(out, field, kVarint);
  varint(out, v);
}
inline void sint_field(std::string& out, uint32_t field, int64_t v) {
  if (v == 0) return;
  tag(out, field, kVarint);
  varint(out, zigzag(v));
}
inline void bytes_field(std::string& out, uint32_t field, std::string_view v) {
  tag(out, field, kLengthDelimited);
  varint(out, v.size());
  out.append(v);
}

// Reads one message's fields in order; next() is false at the end or on malformed bytes (then
// ok() is false).
class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}
  bool next() {
    if (rest_.empty()) return false;
    uint64_t key = 0;
    if (!read_varint(key)) return fail();
    field_ = static_cast<uint32_t>(key >> 3);
    type_ = static_cast<uint32_t>(key & 7);
    if (type_ == kVarint) return read_varint(value_) || fail();
    if (type_ == kLengthDelimited) {
      uint64_t size = 0;
      if (!read_varint(size) || size > rest_.size()) return fail();
      bytes_ = rest_.substr(0, size);
      rest_.remove_prefix(size);
      return true;
    }
    if (type_ == 5 && rest_.size() >= 4) {  // fixed32 (float)
      bytes_ = rest_.substr(0, 4);
      rest_.remove_prefix(4);
      return true;
    }
    if (type_ == 1 && rest_.size() >= 8) {
      bytes_ = rest_.substr(0, 8);
      rest_.remove_prefix(8);
      return true;
    }
    return fail();
  }
  uint32_t field() const { return field_; }
  uint32_t type() const { return type_; }
  uint64_t value() const { return value_; }
  std::string_view bytes() const { return bytes_; }
  bool ok() const { return ok_; }
  // A packed repeated varint field's next element, from `packed` (advanced past it).
  static std::optional<uint64_t> packed_next(std::string_view& packed) {
    Reader r(packed);
    uint64_t v = 0;
    if (!r.read_varint(v)) return std::nullopt;
    packed = r.rest_;
    return v;
  }

 private:
  bool read_varint(uint64_t& out) {
    out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (rest_.empty()) return false;
      const auto byte = static_cast<uint8_t>(rest_.front());
      rest_.remove_prefix(1);
      out |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  bool fail() {
    ok_ = false;
    rest_ = {};
    return false;
  }
  std::string_view rest_;
  uint32_t field_ = 0;
  uint32_t type_ = 0;
  uint64_t value_ = 0;
  std::string_view bytes_;
  bool ok_ = true;
};

}  // namespace gameverse::world::wire
