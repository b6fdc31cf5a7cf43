// Plugin methods over HTTP/1.1 on the HTTP port, for clients that do not speak gRPC:
//  - JSON: POST /<package.Service>/<Method> with a JSON body, transcoded with protobuf's JSON
//    mapping over the plugin's own descriptor pool; a server stream answers newline-delimited JSON.
//  - gRPC-Web (application/grpc-web[+proto] and application/grpc-web-text[+proto]), what browser
//    builds of a game call with the standard gRPC-Web clients.
// Unary calls take the host's in-process call path straight to the plugin; server streams go
// through the host's own gRPC server on its in-process channel, so that they move across reloads.
// Either way a call meets the same gate, routing, metrics, request ids and drain as on the gRPC
// port.
#pragma once

#include <grpcpp/channel.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http/http_server.hpp"
#include "platform/platform.hpp"
#include "plugin/manager.hpp"

namespace gameverse::rpc {
class Gate;
class CallMetrics;
}  // namespace gameverse::rpc

namespace gameverse::http {

struct GatewayOptions {
  // A unary call's deadline when the request names none (grpc-timeout); streams have none.
  std::chrono::milliseconds unary_timeout{30'000};
  // Origins whose pages may call from a browser; "*" allows any. Empty: no CORS headers.
  std::vector<std::string> cors_origins;
  // The gRPC server's forwarding key, with which the client's address is believed.
  std::string forwarding_key;
  // Calls in progress at once, and of them server streams; more are refused with 503 at once.
  // Keep max_calls below the port's connection limit: probes and scrapes need connections too.
  size_t max_calls = 32;
  size_t max_streams = 16;
};

// How unary calls reach plugins without the in-process channel: the host's in-process call path
// (as calls between plugins take), past the same gate and counted in the same metrics.
struct DirectCalls {
  const platform::Platform* platform = nullptr;  // required
  rpc::Gate* gate = nullptr;                     // null: calls are anonymous
  rpc::CallMetrics* metrics = nullptr;           // null: not counted
};

// gRPC status code → HTTP status, the usual mapping (google.rpc.Code's documentation).
unsigned http_status_of(int grpc_code);
// A grpc-timeout header value ("10S", "250m", ...) in milliseconds; -1 when malformed.
int64_t parse_grpc_timeout_ms(std::string_view value);

class Gateway {
 public:
  using RouteSource = std::function<std::shared_ptr<const plugin::RouteTable>()>;
  // `channel`: the host's in-process channel to its own gRPC server.
  Gateway(RouteSource routes, std::shared_ptr<grpc::Channel> channel, GatewayOptions options,
          DirectCalls direct);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Becomes the router's fallback: every path the host's own endpoints do not name.
  void serve(Router& router);

  // Refuses new calls (UNAVAILABLE) and waits until the unary calls in progress have answered, or
  // `deadline` passed (false). For shutdown, before the gRPC server drains the streams.
  bool stop_and_wait(std::chrono::steady_clock::time_point deadline);

  struct Core;

 private:
  std::shared_ptr<Core> core_;  // shared with the calls in flight, which may end after the gateway
};

}  // namespace gameverse::http
