// Calls from one plugin to another service's unary method, in process: through the route table,
// with no network hop, carrying the caller's principal and deadline. A method no plugin here
// serves goes to another host through Platform::remote when the host has one (remote_calls.hpp).
#pragma once

#include <gameverse/abi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "platform/platform.hpp"

namespace gameverse::platform {

// Who a call is made for, as the plugin it reaches sees it.
struct CallOrigin {
  std::string peer;     // gRPC's peer format: "ipv4:1.2.3.4:5", "inproc:<plugin>"
  std::string user_id;  // empty: anonymous
  std::string session_id;
  std::vector<std::string> roles;
  std::vector<std::pair<std::string, std::string>> metadata;  // lower-case keys
  std::string request_id;
  int64_t deadline_unix_ms = INT64_MAX;
  // Set: fills in user_id, session_id and roles when first needed (the plugin asks who calls, or
  // the method turns out not to be public), so a public method's caller costs nothing unless used.
  std::function<void(CallOrigin&)> identify;
};

// Starts the call; `done` runs exactly once, on some thread, possibly before this returns.
// `owner`: the plugin generation whose code `done` is (null: the host's); a call forwarded to
// another host is cancelled and waited for when that generation retires (RemoteCalls::cancel_owned).
void call_unary(const Platform& platform, const std::string& caller, gv_call* parent, std::string method,
                std::string request, uint64_t timeout_ms, gv_call_done_fn done, void* context,
                const void* owner = nullptr);

// A unary call for a client of the host's HTTP gateway, whose gate already admitted `origin`'s
// caller: the same in-process path as calls between plugins, with no gRPC in between. `done`
// runs exactly once (status, message, reply), possibly before this returns. The function returned
// ends the call as CANCELLED when the client leaves; it does nothing once the call ended.
using ClientCallDone =
    std::function<void(gv_status_code code, std::string_view message, std::string_view reply)>;
std::function<void()> call_unary_for_client(const Platform& platform, CallOrigin origin, std::string method,
                                            std::string request, ClientCallDone done);

}  // namespace gameverse::platform
