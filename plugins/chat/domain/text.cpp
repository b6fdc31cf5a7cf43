#include "domain/text.hpp"

#include <stdexcept>

namespace gameverse::chat {
namespace {

// Decodes one code point at `i`; false for malformed, overlong or surrogate sequences.
bool next_code_point(std::string_view s, size_t& i, char32_t& out) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  size_t length = 0;
  char32_t value = 0;
  if (c < 0x80) {
    out = c;
    ++i;
    return true;
  } else if ((c & 0xE0) == 0xC0) {
    length = 2;
    value = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    length = 3;
    value = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    length = 4;
    value = c & 0x07;
  } else {
    return false;
  }
  if (i + length > s.size()) return false;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return false;
    value = (value << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr char32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (value < kMinimum[length] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return false;
  out = value;
  i += length;
  return true;
}

// Controls (C0, DEL, C1) and the bidirectional overrides, embeddings and isolates that can make
// text read differently from how it is stored.
bool forbidden(char32_t c, bool allow_newlines) {
  if (c == '\n' && allow_newlines) return false;
  if (c < 0x20 || (c >= 0x7F && c <= 0x9F)) return true;
  if (c >= 0x202A && c <= 0x202E) return true;  // LRE RLE PDF LRO RLO
  if (c >= 0x2066 && c <= 0x2069) return true;  // LRI RLI FSI PDI
  if (c == 0x200E || c == 0x200F || c == 0x061C) return true;
  return false;
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool word_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || u >= 0x80;
}

}  // namespace

size_t code_points(std::string_view utf8) {
  size_t count = 0;
  for (char c : utf8) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

std::string check_text(std::string_view field, std::string_view text, const TextLimits& limits) {
  const std::string name(field);
  if (text.empty()) return name + ": must not be empty";
  if (text.size() > limits.max_bytes) {
    return name + ": " + std::to_string(text.size()) + " bytes, at most " + std::to_string(limits.max_bytes);
  }
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) {
    const size_t at = i;
    char32_t c = 0;
    if (!next_code_point(text, i, c)) return name + ": not valid UTF-8 at byte " + std::to_string(at);
    if (forbidden(c, limits.allow_newlines)) {
      return name + ": a control or bidirectional-override character at byte " + std::to_string(at);
    }
  }
  if (count > limits.max_code_points) {
    return name + ": " + std::to_string(count) + " characters, at most " +
           std::to_string(limits.max_code_points);
  }
  bool blank = true;
  for (char c : text) blank = blank && (c == ' ' || c == '\n');
  if (blank) return name + ": must not be blank";
  return {};
}

std::string check_identifier(std::string_view field, std::string_view id, size_t max_bytes) {
  const std::string name(field);
  if (id.empty()) return name + ": must not be empty";
  if (id.size() > max_bytes) return name + ": at most " + std::to_string(max_bytes) + " bytes";
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == '@';
    if (!ok) return name + ": only letters, digits and _ - . @ are allowed";
  }
  return {};
}

WordFilter::WordFilter(const std::vector<std::string>& words, FilterAction action) : action_(action) {
  for (const std::string& word : words) {
    if (word.empty()) continue;
    if (word.size() > 64) throw std::invalid_argument("word_filter: '" + word + "' is longer than 64 bytes");
    if (std::string problem = check_text("word_filter", word, {64, 64, false}); !problem.empty()) {
      throw std::invalid_argument(problem);
    }
    std::string lowered;
    for (char c : word) lowered += lower(c);
    words_.push_back(std::move(lowered));
  }
}

WordFilter::Result WordFilter::apply(std::string_view text) const {
  Result result{false, std::string(text), {}};
  if (words_.empty()) return result;
  std::string lowered;
  lowered.reserve(text.size());
  for (char c : text) lowered += lower(c);
  std::vector<bool> masked(text.size(), false);
  for (const std::string& word : words_) {
    for (size_t at = lowered.find(word); at != std::string::npos; at = lowered.find(word, at + 1)) {
      const size_t end = at + word.size();
      if ((at > 0 && word_char(lowered[at - 1])) || (end < lowered.size() && word_char(lowered[end])))
        continue;
      if (result.word.empty()) result.word = word;
      if (action_ == FilterAction::kReject) {
        result.rejected = true;
        return result;
      }
      for (size_t k = at; k < end; ++k) masked[k] = true;
    }
  }
  if (result.word.empty()) return result;
  // One '*' per masked code point, so the text stays valid UTF-8 of the same length in characters.
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const bool continuation = (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80;
    if (!masked[i]) {
      out += text[i];
    } else if (!continuation) {
      out += '*';
    }
  }
  result.text = std::move(out);
  return result;
}

}  // namespace gameverse::chat
