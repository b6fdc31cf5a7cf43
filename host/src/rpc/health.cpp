#include "rpc/health.hpp"

#include "grpc/health/v1/health.pb.h"

namespace gameverse::rpc {

grpc::Status health_check(const plugin::RouteTable& routes, bool host_serving, std::string_view request,
                          std::string& reply) {
  grpc::health::v1::HealthCheckRequest check;
  if (!check.ParseFromArray(request.data(), static_cast<int>(request.size()))) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "request does not parse as grpc.health.v1.HealthCheckRequest"};
  }
  grpc::health::v1::HealthCheckResponse response;
  if (check.service().empty()) {
    response.set_status(host_serving ? grpc::health::v1::HealthCheckResponse::SERVING
                                     : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  } else {
    const std::string prefix = "/" + check.service() + "/";
    bool served = false;
    for (const auto& [method, route] : routes) {
      if (method.compare(0, prefix.size(), prefix) == 0) {
        served = true;
        break;
      }
    }
    if (!served) return {grpc::StatusCode::NOT_FOUND, "no loaded plugin serves " + check.service()};
    response.set_status(host_serving ? grpc::health::v1::HealthCheckResponse::SERVING
                                     : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  reply = response.SerializeAsString();
  return grpc::Status::OK;
}

}  // namespace gameverse::rpc
