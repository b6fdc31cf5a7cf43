// The generic dispatch path: a server started without registered unary methods routes every
// call, unary included, through the AsyncGenericService — as it does for methods of plugins
// loaded after start-up. In process: the real server, the real echo plugin, a real client.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <future>

#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "platform/platform.hpp"
#include "platform/timers.hpp"
#include "platform/work_pool.hpp"
#include "plugin/manager.hpp"
#include "rpc/server.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::echo::v1;

class GenericPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config::PluginConfig echo;
    echo.name = "echo";
    echo.path = GV_PLUGIN_DIR "/echo.so";
    config::Config config;
    config.plugins.push_back(echo);
    for (const auto& outcome : plugins_.load_all(config)) ASSERT_TRUE(outcome.ok()) << outcome.message;
    config::ServerConfig server_config;
    server_config.listen = "127.0.0.1:0";
    server_config.worker_threads = 2;
    server_ = std::make_unique<rpc::Server>(server_config, [this] { return plugins_.routes(); });
    const int port = server_->start();
    stub_ = pb::Echo::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->shutdown(std::chrono::milliseconds(1000));
    plugins_.unload_all();
  }

  // Timers and the blocking pool, which the echo plugin runs its sleeps and blocking calls on.
  platform::TimerService timers_;
  platform::WorkPool blocking_{{}, nullptr};
  platform::Platform platform_{.timers = &timers_, .blocking = &blocking_, .routes = {}};
  plugin::PluginManager plugins_{
      {std::filesystem::temp_directory_path() / ("gv-generic-test-" + std::to_string(getpid())),
       std::chrono::milliseconds(1000), &platform_}};
  std::unique_ptr<rpc::Server> server_;
  std::unique_ptr<pb::Echo::Stub> stub_;
};

TEST_F(GenericPathTest, UnaryEcho) {
  grpc::ClientContext context;
  pb::EchoRequest request;
  request.set_payload(std::string(64 * 1024, 'g'));
  pb::EchoReply reply;
  ASSERT_TRUE(stub_->Echo(&context, request, &reply).ok());
  EXPECT_EQ(reply.payload(), request.payload());
}

// The request id as on the registered unary path (tests/integration/request_id_test.cpp).
TEST_F(GenericPathTest, RequestIds) {
  for (const std::string sent : {"generic-1", "not sane"}) {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", sent);
    pb::RequestIdReply reply;
    ASSERT_TRUE(stub_->RequestId(&context, pb::RequestIdRequest(), &reply).ok());
    const auto& header = context.GetServerInitialMetadata();
    ASSERT_EQ(header.count("x-request-id"), 1u);
    const std::string id(header.find("x-request-id")->second.data(),
                         header.find("x-request-id")->second.size());
    EXPECT_EQ(reply.request_id(), id);
    if (sent == "generic-1") {
      EXPECT_EQ(id, sent);
    } else {
      EXPECT_EQ(id.size(), 32u);
    }
  }
}

TEST_F(GenericPathTest, UnaryErrors) {
  grpc::ClientContext context;
  pb::FailRequest request;
  request.set_message("generic boom");
  pb::EchoReply reply;
  grpc::Status status = stub_->Fail(&context, request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(status.error_message(), "generic boom");
}

TEST_F(GenericPathTest, AsyncUnaryAndCancellation) {
  grpc::ClientContext sleep_context;
  pb::SleepRequest request;
  request.set_duration_ms(30000);
  pb::SleepReply reply;
  std::promise<grpc::Status> done;
  stub_->async()->Sleep(&sleep_context, &request, &reply, [&done](grpc::Status s) { done.set_value(s); });
  auto stats = [this] {
    grpc::ClientContext context;
    pb::StatsReply out;
    EXPECT_TRUE(stub_->Stats(&context, pb::StatsRequest(), &out).ok());
    return out;
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (stats().sleeps_started() == 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  sleep_context.TryCancel();
  EXPECT_EQ(done.get_future().get().error_code(), grpc::StatusCode::CANCELLED);
  while (stats().sleeps_cancelled() == 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(stats().sleeps_cancelled(), 1u);
}

TEST_F(GenericPathTest, Bidi) {
  grpc::ClientContext context;
  auto stream = stub_->Chat(&context);
  pb::EchoRequest request;
  request.set_payload("x");
  ASSERT_TRUE(stream->Write(request));
  pb::EchoReply reply;
  ASSERT_TRUE(stream->Read(&reply));
  EXPECT_EQ(reply.sequence(), 1u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace gameverse::testing
