// gameverse/domain_error.hpp — the refusal a plugin's domain throws: a kind that names the gRPC
// status it maps to, and a message that names what is wrong. Plain C++ with no SDK or protobuf, so
// domain code may throw it; the SDK maps it to a status (gameverse/sdk/domain_error.hpp).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace gameverse {

class DomainError : public std::runtime_error {
 public:
  // One kind per gRPC status code a domain refuses with; zero is none of them.
  enum class Kind {
    kInvalidArgument = 1,
    kNotFound,
    kAlreadyExists,
    kPermissionDenied,
    kUnauthenticated,
    kFailedPrecondition,
    kAborted,
    kOutOfRange,
    kResourceExhausted,
    kUnavailable,
    kDataLoss,
  };
  // `retry_after_ms`: when a retry may succeed (0: not said); the message says it to the caller.
  DomainError(Kind kind, const std::string& message, int64_t retry_after_ms = 0)
      : std::runtime_error(message), kind_(kind), retry_after_ms_(retry_after_ms) {}
  Kind kind() const { return kind_; }
  int64_t retry_after_ms() const { return retry_after_ms_; }

 private:
  Kind kind_;
  int64_t retry_after_ms_;
};

}  // namespace gameverse
