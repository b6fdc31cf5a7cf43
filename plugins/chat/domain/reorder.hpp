// Live events of a channel arrive out of band (two hosts' announcements cross, pub/sub drops one)
// and must leave in seq order, each once. Reorder holds those ahead of a missing seq and hands
// out each run that has become next in order. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace gameverse::chat {

template <class T>
class Reorder {
 public:
  // Keeps `value` unless seq is at or before `delivered` (the last seq that went out in order).
  void add(uint64_t seq, T value, uint64_t delivered) {
    if (seq > delivered) waiting_.emplace(seq, std::move(value));
  }

  // The run of waiting events that follows `delivered` with no gap, in order; what is at or
  // before `delivered` is dropped as a repeat.
  std::vector<std::pair<uint64_t, T>> take_ready(uint64_t delivered) {
    std::vector<std::pair<uint64_t, T>> out;
    uint64_t next = delivered + 1;
    while (!waiting_.empty()) {
      auto first = waiting_.begin();
      if (first->first > next) break;
      if (first->first == next) {
        out.emplace_back(first->first, std::move(first->second));
        ++next;
      }
      waiting_.erase(first);
    }
    return out;
  }

  // The seqs missing before the first waiting event: [first, last], to read from the store.
  std::optional<std::pair<uint64_t, uint64_t>> gap(uint64_t delivered) const {
    if (waiting_.empty() || waiting_.begin()->first <= delivered + 1) return std::nullopt;
    return std::make_pair(delivered + 1, waiting_.begin()->first - 1);
  }

  size_t size() const { return waiting_.size(); }

 private:
  std::map<uint64_t, T> waiting_;
};

}  // namespace gameverse::chat
