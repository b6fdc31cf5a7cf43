// The dispatch benchmark's baseline: a native, typed gRPC completion-queue server doing the echo
// plugin's work (parse EchoRequest, build EchoReply) with no plugin host in between.
#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <fstream>
#include <thread>

#include "gameverse/echo/v1/echo.grpc.pb.h"

namespace {

namespace pb = gameverse::echo::v1;

class EchoCall {
 public:
  EchoCall(pb::Echo::AsyncService& service, grpc::ServerCompletionQueue* queue)
      : service_(service), queue_(queue) {
    service_.RequestEcho(&context_, &request_, &responder_, queue_, queue_, this);
  }
  void proceed(bool ok) {
    if (!ok || replied_) {
      delete this;
      return;
    }
    new EchoCall(service_, queue_);
    pb::EchoReply reply;
    reply.set_payload(request_.payload());
    replied_ = true;
    responder_.Finish(reply, grpc::Status::OK, this);
  }

 private:
  pb::Echo::AsyncService& service_;
  grpc::ServerCompletionQueue* queue_;
  grpc::ServerContext context_;
  pb::EchoRequest request_;
  grpc::ServerAsyncResponseWriter<pb::EchoReply> responder_{&context_};
  bool replied_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Native typed echo server (benchmark baseline)"};
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  int threads = 1;
  int slots = 64;
  app.add_option("--listen", listen)->capture_default_str();
  app.add_option("--port-file", port_file);
  app.add_option("--threads", threads, "Completion-queue threads")->capture_default_str();
  app.add_option("--slots", slots, "Calls requested ahead per completion queue")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  pb::Echo::AsyncService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(4 * 1024 * 1024);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues;
  for (int i = 0; i < threads; ++i) queues.push_back(builder.AddCompletionQueue());
  auto server = builder.BuildAndStart();
  if (!server || port == 0) return 1;
  std::vector<std::thread> workers;
  for (auto& queue : queues) {
    // Waiting slots: at least as many as the host keeps for one busy method, so both accept
    // bursts alike. Each is a tag that Debian's gRPC scans on every completion.
    for (int i = 0; i < slots; ++i) new EchoCall(service, queue.get());
    workers.emplace_back([q = queue.get()] {
      void* tag = nullptr;
      bool ok = false;
      while (q->Next(&tag, &ok)) static_cast<EchoCall*>(tag)->proceed(ok);
    });
  }
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << port << '\n';
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  int signal = 0;
  sigwait(&signals, &signal);
  server->Shutdown(std::chrono::system_clock::now());
  for (auto& queue : queues) queue->Shutdown();
  for (auto& worker : workers) worker.join();
  return 0;
}
