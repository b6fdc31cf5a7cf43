// The failure of a platform service a plugin called — store, cache, pub/sub, Redis: a gRPC
// status code and a message, which reach the plugin as they are.
#pragma once

#include <gameverse/abi.h>

#include <stdexcept>
#include <string>

namespace gameverse::platform {

// Codes used: ABORTED, ALREADY_EXISTS, NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION,
// UNAVAILABLE (the backend is unreachable; nothing was written), INTERNAL.
class PlatformError : public std::runtime_error {
 public:
  PlatformError(gv_status_code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  gv_status_code code() const { return code_; }

 private:
  gv_status_code code_;
};

}  // namespace gameverse::platform
