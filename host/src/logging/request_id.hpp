// Request ids: every call the host serves has one, carried in the metadata key `x-request-id`.
// A caller's own id is kept when it is sane, so a client or a proxy in front can tie its logs to
// the host's; otherwise the host makes one. Plugins read it as call metadata; calls between
// plugins carry the id of the call they are made for, so a chain of calls shares one id.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace gameverse::logging {

inline constexpr std::string_view kRequestIdKey = "x-request-id";
inline constexpr size_t kMaxRequestIdBytes = 128;

// True when `value` can stand as a request id as it is: 1 to 128 characters, each one of
// A-Z a-z 0-9 . _ : @ / + = - (nothing that could break a log line or a header).
bool is_sane_request_id(std::string_view value);

// True when `key` (NUL-terminated) is kRequestIdKey.
bool is_request_id_key(const char* key);

// A request id the host made: 128 random bits as 32 lower-case hex digits. Held by value, so a
// call keeps its id without an allocation.
class GeneratedRequestId {
 public:
  static constexpr size_t kLength = 32;
  // Draws from this thread's generator (seeded once per thread from std::random_device): no
  // lock and no system call per id.
  static GeneratedRequestId make();
  std::string_view view() const { return {chars_.data(), chars_.size()}; }

 private:
  std::array<char, kLength> chars_{};
};

}  // namespace gameverse::logging
