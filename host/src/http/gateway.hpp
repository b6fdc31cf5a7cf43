// Plugin methods over HTTP/1.1 on the HTTP port, for clients that do not speak gRPC:
//  - JSON: POST /<package.Service>/<Method> with a JSON body, transcoded with protobuf's JSON
//    mapping over the plugin's own descriptor pool; a server stream answers newline-delimited JSON.
//  - gRPC-Web (application/grpc-web[+proto] and application/grpc-web-text[+proto]), what browser
//    builds of a game call with the standard gRPC-Web clients.
// Every call goes through the host's own gRPC server on its in-process channel, so it meets the
// same gate, routing, metrics, request ids, hot reload and drain as a call on the gRPC port.
#pragma once

#include <grpcpp/channel.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http/http_server.hpp"
#include "plugin/manager.hpp"

namespace gameverse::http {

struct GatewayOptions {
  // A unary call's deadline when the request names none (grpc-timeout); streams have none.
  std::chrono::milliseconds unary_timeout{30'000};
  // Origins whose pages may call from a browser; "*" allows any. Empty: no CORS headers.
  std::vector<std::string> cors_origins;
  // The gRPC server's forwarding key, with which the client's address is believed.
  std::string forwarding_key;
};

// gRPC status code → HTTP status, the usual mapping (google.rpc.Code's documentation).
unsigned http_status_of(int grpc_code);
// "INVALID_ARGUMENT", ... for a gRPC status code.
const char* grpc_code_name(int grpc_code);
// A grpc-timeout header value ("10S", "250m", ...) in milliseconds; -1 when malformed.
int64_t parse_grpc_timeout_ms(std::string_view value);

class Gateway {
 public:
  using RouteSource = std::function<std::shared_ptr<const plugin::RouteTable>()>;
  // `channel`: the host's in-process channel to its own gRPC server.
  Gateway(RouteSource routes, std::shared_ptr<grpc::Channel> channel, GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Becomes the router's fallback: every path the host's own endpoints do not name.
  void serve(Router& router);

  struct Core;

 private:
  std::shared_ptr<Core> core_;  // shared with the calls in flight, which may end after the gateway
};

}  // namespace gameverse::http
