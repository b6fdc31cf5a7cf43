// Calls from one plugin to another service's unary method, in process: through the route table,
// with no network hop, carrying the caller's principal and deadline.
#pragma once

#include <gameverse/abi.h>

#include <string>

#include "platform/platform.hpp"

namespace gameverse::platform {

// Starts the call; `done` runs exactly once, on some thread, possibly before this returns.
void call_unary(const Platform& platform, const std::string& caller, gv_call* parent, std::string method,
                std::string request, uint64_t timeout_ms, gv_call_done_fn done, void* context);

}  // namespace gameverse::platform
