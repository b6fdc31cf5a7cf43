// The request path: a method name and request bytes into the host's server as a client sends
// them — route lookup, the host's own methods, dispatch through the host table into the real
// echo plugin and its replies — over an in-process channel to the real server, set up as
// gameverse sets it up, the gate included (two echo methods are configured to need a caller).
// Input: a selector byte; when its bit 0x40 is set, an authorization header up to the first '\n';
// then either (selector >= 0x80) a method name of its own up to the next '\n' or (else) one of
// the methods the host serves; then the request message.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "platform/platform.hpp"
#include "platform/timers.hpp"
#include "platform/work_pool.hpp"
#include "plugin/manager.hpp"
#include "rpc/gate.hpp"
#include "rpc/server.hpp"

namespace {

namespace gv = gameverse;

// The host as gameverse runs it, minus the network: timers and the blocking pool the echo plugin
// uses, the plugin manager with the echo plugin loaded from its file, and the server. It lives
// as long as the process (libFuzzer exits without unwinding).
struct Host {
  Host() {
    spdlog::set_level(spdlog::level::off);
    const auto scratch =
        std::filesystem::temp_directory_path() / ("gv-fuzz-request-" + std::to_string(::getpid()));
    std::filesystem::create_directories(scratch);
    plugins = std::make_unique<gv::plugin::PluginManager>(
        gv::plugin::PluginManager::Options{scratch / "staging", std::chrono::milliseconds(1000), &platform});
    gv::config::PluginConfig echo;
    echo.name = "echo";
    echo.path = GV_ECHO_PLUGIN;
    // Small bounds, so that no input holds a call for long.
    echo.settings.insert("max_stream_messages", 4);
    echo.settings.insert("max_sleep_ms", 5);
    // Policies the gate checks against the authorization header (the others are public). No
    // plugin serves verification keys here, so every token is refused, for its own reason.
    echo.access["/gameverse.echo.v1.Echo/Stats"] = *gv::config::AccessPolicy::parse("authenticated");
    echo.access["/gameverse.echo.v1.Echo/WhoAmI"] = *gv::config::AccessPolicy::parse("role:admin");
    gv::config::Config config;
    config.plugins.push_back(echo);
    for (const auto& outcome : plugins->load_all(config)) {
      if (!outcome.ok()) {
        fprintf(stderr, "the echo plugin did not load: %s\n", outcome.message.c_str());
        std::abort();
      }
    }
    platform.routes = [this] { return plugins->routes(); };
    gv::config::ServerConfig server_config;
    server_config.listen = "unix:" + (scratch / "fuzz.sock").string();
    server_config.worker_threads = 1;
    // Unary methods known at start ride the registered unary path, as gameverse sets them up.
    std::vector<std::string> unary_methods;
    for (const auto& [name, route] : *plugins->routes()) {
      if (route.kind == GV_CALL_UNARY) unary_methods.push_back(name);
    }
    server = std::make_unique<gv::rpc::Server>(
        server_config, [this] { return plugins->routes(); }, std::move(unary_methods));
    gate = std::make_unique<gv::rpc::Gate>(platform);
    server->set_gate(gate.get());
    server->start();
    stub = std::make_unique<grpc::GenericStub>(server->in_process_channel());
    for (const auto& [name, route] : *plugins->routes()) methods.push_back(name);
    std::sort(methods.begin(), methods.end());
    methods.push_back("/grpc.health.v1.Health/Check");  // answered by the host itself
    methods.push_back("/gameverse.echo.v1.Echo/Missing");
    std::filesystem::remove_all(scratch);  // the socket and staged copy stay open or mapped
  }

  gv::platform::TimerService timers;
  gv::platform::WorkPool blocking{{}, nullptr};
  gv::platform::Platform platform{.timers = &timers, .blocking = &blocking, .routes = {}};
  std::unique_ptr<gv::plugin::PluginManager> plugins;
  std::unique_ptr<gv::rpc::Gate> gate;
  std::unique_ptr<gv::rpc::Server> server;
  std::unique_ptr<grpc::GenericStub> stub;
  std::vector<std::string> methods;
  grpc::CompletionQueue queue;
};

// Waits for the one operation in flight on `queue`; whether it succeeded.
bool completed(grpc::CompletionQueue& queue) {
  void* tag = nullptr;
  bool ok = false;
  if (!queue.Next(&tag, &ok)) std::abort();
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Host* const host = new Host();
  if (size == 0) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  grpc::ClientContext context;
  if (data[0] & 0x40) {
    // What an HTTP/2 client can put in a header value: printable ASCII.
    std::string authorization(input.substr(0, input.find('\n')));
    input.remove_prefix(std::min(input.size(), authorization.size() + 1));
    std::erase_if(authorization, [](char c) { return c < 0x20 || c > 0x7e; });
    context.AddMetadata("authorization", authorization);
  }
  std::string method;
  std::string_view request;
  if (data[0] >= 0x80) {
    const size_t newline = input.find('\n');
    method = input.substr(0, newline);
    request = newline == std::string_view::npos ? "" : input.substr(newline + 1);
  } else {
    method = host->methods[data[0] % host->methods.size()];
    request = input;
  }
  // One call shape for every kind: one request message, half-close, read up to a few replies,
  // then cancel what still streams.
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  grpc::Slice slice(request.data(), request.size());
  const grpc::ByteBuffer request_buffer(&slice, 1);
  auto call = host->stub->PrepareCall(&context, method, &host->queue);
  void* const tag = call.get();
  call->StartCall(tag);
  bool ok = completed(host->queue);
  if (ok) {
    call->Write(request_buffer, tag);
    ok = completed(host->queue);
  }
  if (ok) {
    call->WritesDone(tag);
    ok = completed(host->queue);
  }
  grpc::ByteBuffer reply;
  for (int replies = 0; ok && replies < 8; ++replies) {
    call->Read(&reply, tag);
    ok = completed(host->queue);
  }
  context.TryCancel();
  grpc::Status status;
  call->Finish(&status, tag);
  completed(host->queue);
  return 0;
}
