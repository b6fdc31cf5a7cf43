// grpc.health.v1.Health/Check, answered by the host: "" is the host itself, SERVING until it
// begins to shut down; a service name is SERVING while a loaded plugin serves it, else NOT_FOUND.
#pragma once

#include <grpcpp/support/status.h>

#include <string>
#include <string_view>

#include "plugin/manager.hpp"

namespace gameverse::rpc {

grpc::Status health_check(const plugin::RouteTable& routes, bool host_serving, std::string_view request,
                          std::string& reply);

}  // namespace gameverse::rpc
