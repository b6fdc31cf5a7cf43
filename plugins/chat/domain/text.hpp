// Checks on what players type: names and message text are valid UTF-8 with no control or
// bidirectional-override characters, within limits in bytes and code points, and pass the word
// filter. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gameverse::chat {

struct TextLimits {
  size_t max_bytes = 0;
  size_t max_code_points = 0;
  bool allow_newlines = false;  // message text may span lines; names may not
};

// Empty when `text` is acceptable, else what is wrong with it, naming `field`.
std::string check_text(std::string_view field, std::string_view text, const TextLimits& limits);

// The number of code points of valid UTF-8.
size_t code_points(std::string_view utf8);

// An identifier used in store keys and channel ids (room names, player ids): [A-Za-z0-9_.@-],
// 1..max_bytes. Empty when acceptable, else what is wrong, naming `field`.
std::string check_identifier(std::string_view field, std::string_view id, size_t max_bytes);

enum class FilterAction { kMask = 1, kReject = 2 };

// Whole words from a list, matched without regard to ASCII case; a match is masked with '*'
// (same length) or rejects the message.
class WordFilter {
 public:
  WordFilter() = default;
  // `words`: the filtered words (blank entries ignored). Throws std::invalid_argument for a word
  // that is not valid text or longer than 64 bytes.
  WordFilter(const std::vector<std::string>& words, FilterAction action);

  struct Result {
    bool rejected = false;
    std::string text;  // masked when the action is kMask
    std::string word;  // the first word found
  };
  Result apply(std::string_view text) const;
  size_t size() const { return words_.size(); }

 private:
  std::vector<std::string> words_;  // lower case
  FilterAction action_ = FilterAction::kMask;
};

}  // namespace gameverse::chat
