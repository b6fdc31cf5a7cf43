// gameverse/sdk/status.hpp — status codes, Status, Error and log levels.
#pragma once

#include <gameverse/abi.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace gameverse::sdk {

enum class StatusCode : int32_t {
  kOk = GV_STATUS_OK,
  kCancelled = GV_STATUS_CANCELLED,
  kUnknown = GV_STATUS_UNKNOWN,
  kInvalidArgument = GV_STATUS_INVALID_ARGUMENT,
  kDeadlineExceeded = GV_STATUS_DEADLINE_EXCEEDED,
  kNotFound = GV_STATUS_NOT_FOUND,
  kAlreadyExists = GV_STATUS_ALREADY_EXISTS,
  kPermissionDenied = GV_STATUS_PERMISSION_DENIED,
  kResourceExhausted = GV_STATUS_RESOURCE_EXHAUSTED,
  kFailedPrecondition = GV_STATUS_FAILED_PRECONDITION,
  kAborted = GV_STATUS_ABORTED,
  kOutOfRange = GV_STATUS_OUT_OF_RANGE,
  kUnimplemented = GV_STATUS_UNIMPLEMENTED,
  kInternal = GV_STATUS_INTERNAL,
  kUnavailable = GV_STATUS_UNAVAILABLE,
  kDataLoss = GV_STATUS_DATA_LOSS,
  kUnauthenticated = GV_STATUS_UNAUTHENTICATED,
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Thrown from a handler or constructor to end the call (or refuse the load) with this status.
// The SDK's host wrappers throw it with the host's status and message.
class Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  explicit Error(const Status& status) : Error(status.code(), status.message()) {}
  StatusCode code() const { return code_; }
  Status status() const { return {code_, what()}; }

 private:
  StatusCode code_;
};

enum class LogLevel : int32_t {
  kTrace = GV_LOG_TRACE,
  kDebug = GV_LOG_DEBUG,
  kInfo = GV_LOG_INFO,
  kWarn = GV_LOG_WARN,
  kError = GV_LOG_ERROR,
};

}  // namespace gameverse::sdk
