// The real host binary, the real example plugins and a real gRPC client.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <future>

#include "expect_contains.hpp"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/hello/v1/hello.grpc.pb.h"
#include "host_process.hpp"
#include "run_command.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::echo::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The config of a host serving the example plugins, plus `extra` TOML appended.
inline std::string example_config(const std::string& extra = "") {
  return std::string("[server]\nworker_threads = 2\ndrain_timeout_ms = 3000\n") +
         "[host]\nlog_level = \"debug\"\nplugin_dir = \"" GV_PLUGIN_DIR "\"\n" +
         "[[plugin]]\nname = \"echo\"\n[plugin.config]\nmax_stream_messages = 1000\n" +
         "[[plugin]]\nname = \"hello-c\"\n[plugin.config]\ngreeting = \"Hi\"\n" + extra;
}

std::chrono::system_clock::time_point in(std::chrono::milliseconds d) {
  return std::chrono::system_clock::now() + d;
}

// One unary call with raw request bytes through a generic stub.
grpc::Status raw_call(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                      const std::string& request, std::string* response = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(in(seconds(10)));
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer, &response_buffer,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  grpc::Status status = done.get_future().get();
  if (status.ok() && response != nullptr) {
    grpc::Slice out;
    EXPECT_TRUE(response_buffer.DumpToSingleSlice(&out).ok());
    response->assign(reinterpret_cast<const char*>(out.begin()), out.size());
  }
  return status;
}

pb::StatsReply stats(pb::Echo::Stub& stub) {
  grpc::ClientContext context;
  pb::StatsReply reply;
  EXPECT_TRUE(stub.Stats(&context, pb::StatsRequest(), &reply).ok());
  return reply;
}

class HostTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { host_ = new HostProcess(example_config()); }
  static void TearDownTestSuite() {
    EXPECT_EQ(host_->stop(), 0) << host_->log();
    delete host_;
  }
  void SetUp() override {
    channel_ = host_->channel();
    echo_ = pb::Echo::NewStub(channel_);
  }
  static HostProcess* host_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Echo::Stub> echo_;
};
HostProcess* HostTest::host_ = nullptr;

TEST_F(HostTest, UnaryEcho) {
  for (size_t size : {0, 1, 100, 10 * 1024, 1024 * 1024}) {
    grpc::ClientContext context;
    pb::EchoRequest request;
    request.set_payload(std::string(size, 'x') + "end");
    pb::EchoReply reply;
    grpc::Status status = echo_->Echo(&context, request, &reply);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(reply.payload(), request.payload());
  }
}

TEST_F(HostTest, ServerStreaming) {
  grpc::ClientContext context;
  pb::ExpandRequest request;
  request.set_payload("p");
  request.set_count(50);
  auto reader = echo_->Expand(&context, request);
  pb::EchoReply reply;
  uint64_t expected = 1;
  while (reader->Read(&reply)) {
    EXPECT_EQ(reply.sequence(), expected++);
    EXPECT_EQ(reply.payload(), "p");
  }
  EXPECT_EQ(expected, 51u);
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(HostTest, ServerStreamingErrorReachesTheClient) {
  grpc::ClientContext context;
  pb::ExpandRequest request;
  request.set_count(5000);  // over the configured max_stream_messages of 1000
  auto reader = echo_->Expand(&context, request);
  pb::EchoReply reply;
  EXPECT_FALSE(reader->Read(&reply));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "count 5000 exceeds max_stream_messages 1000");
}

// The handler throws after the stream it was given is gone (dropped as the exception left it): the
// exception's status ends the call, not the OK a dropped stream otherwise ends it with.
TEST_F(HostTest, AStreamHandlerThatThrowsEndsTheCallWithItsError) {
  grpc::ClientContext context;
  pb::CountRequest request;
  request.set_interval_ms(0);
  auto reader = echo_->Count(&context, request);
  pb::CountReply reply;
  EXPECT_FALSE(reader->Read(&reply));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "interval_ms 0 is not between 1 and 60000");
}

TEST_F(HostTest, ClientStreaming) {
  grpc::ClientContext context;
  pb::CollectReply reply;
  auto writer = echo_->Collect(&context, &reply);
  for (const char* part : {"a", "bc", "def"}) {
    pb::EchoRequest request;
    request.set_payload(part);
    ASSERT_TRUE(writer->Write(request));
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.joined(), "abcdef");
  EXPECT_EQ(reply.message_count(), 3u);
}

TEST_F(HostTest, BidiAnswersEachMessageAsItArrives) {
  grpc::ClientContext context;
  auto stream = echo_->Chat(&context);
  for (int i = 1; i <= 20; ++i) {
    pb::EchoRequest request;
    request.set_payload("m" + std::to_string(i));
    ASSERT_TRUE(stream->Write(request));
    pb::EchoReply reply;
    ASSERT_TRUE(stream->Read(&reply));  // the reply comes before the next request is sent
    EXPECT_EQ(reply.payload(), request.payload());
    EXPECT_EQ(reply.sequence(), static_cast<uint64_t>(i));
  }
  stream->WritesDone();
  pb::EchoReply extra;
  EXPECT_FALSE(stream->Read(&extra));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(HostTest, PlainCPlugin) {
  auto hello = gameverse::hello::v1::Hello::NewStub(channel_);
  grpc::ClientContext context;
  gameverse::hello::v1::GreetRequest request;
  request.set_name("Ada");
  gameverse::hello::v1::GreetReply reply;
  grpc::Status status = hello->Greet(&context, request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.message(), "Hi, Ada!");  // "Hi" from [plugin.config] greeting
}

TEST_F(HostTest, PlainCPluginLongName) {
  auto hello = gameverse::hello::v1::Hello::NewStub(channel_);
  grpc::ClientContext context;
  gameverse::hello::v1::GreetRequest request;
  request.set_name(std::string(200, 'n'));  // the reply's length needs a two-byte varint
  gameverse::hello::v1::GreetReply reply;
  ASSERT_TRUE(hello->Greet(&context, request, &reply).ok());
  EXPECT_EQ(reply.message(), "Hi, " + std::string(200, 'n') + "!");
}

TEST_F(HostTest, PlainCPluginRejectsBadBytes) {
  grpc::Status status = raw_call(channel_, "/gameverse.hello.v1.Hello/Greet", "\x0a\x7f");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(status.error_message(), "gameverse.hello.v1.GreetRequest");
}

TEST_F(HostTest, UnparsableRequestIsInvalidArgument) {
  grpc::Status status = raw_call(channel_, "/gameverse.echo.v1.Echo/Echo", "\xff\xff\xff\xff");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "request does not parse as gameverse.echo.v1.EchoRequest");
}

TEST_F(HostTest, UnknownMethodIsUnimplementedAndNamed) {
  grpc::Status status = raw_call(channel_, "/gameverse.nothing.v1.Nothing/Call", "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(status.error_message(),
            "method /gameverse.nothing.v1.Nothing/Call is not served by any loaded plugin");
}

TEST_F(HostTest, ThrowingHandlerGivesInternalAndTheHostServesOn) {
  grpc::ClientContext context;
  pb::FailRequest request;
  request.set_message("boom");
  pb::EchoReply reply;
  grpc::Status status = echo_->Fail(&context, request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(status.error_message(), "boom");

  grpc::ClientContext again;
  pb::EchoRequest echo_request;
  echo_request.set_payload("still here");
  ASSERT_TRUE(echo_->Echo(&again, echo_request, &reply).ok());
  EXPECT_EQ(reply.payload(), "still here");
}

TEST_F(HostTest, StatusErrorKeepsItsCode) {
  grpc::ClientContext context;
  pb::FailRequest request;
  request.set_message("no such item");
  request.set_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
  pb::EchoReply reply;
  grpc::Status status = echo_->Fail(&context, request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "no such item");
}

TEST_F(HostTest, AsyncReplyFromAnotherThread) {
  grpc::ClientContext context;
  pb::SleepRequest request;
  request.set_duration_ms(20);
  pb::SleepReply reply;
  ASSERT_TRUE(echo_->Sleep(&context, request, &reply).ok());
  EXPECT_EQ(reply.slept_ms(), 20u);
}

TEST_F(HostTest, ClientCancellationReachesTheHandler) {
  const pb::StatsReply before = stats(*echo_);
  grpc::ClientContext context;
  pb::SleepRequest request;
  request.set_duration_ms(30000);
  pb::SleepReply reply;
  std::promise<grpc::Status> done;
  echo_->async()->Sleep(&context, &request, &reply, [&done](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(eventually([&] { return stats(*echo_).sleeps_started() > before.sleeps_started(); }));
  context.TryCancel();
  EXPECT_EQ(done.get_future().get().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(eventually([&] { return stats(*echo_).sleeps_cancelled() > before.sleeps_cancelled(); }))
      << "the plugin never saw the cancellation";
  EXPECT_EQ(stats(*echo_).sleeps_completed(), before.sleeps_completed());
}

TEST_F(HostTest, DeadlineReachesTheHandler) {
  const pb::StatsReply before = stats(*echo_);
  grpc::ClientContext context;
  context.set_deadline(in(milliseconds(300)));
  pb::SleepRequest request;
  request.set_duration_ms(30000);
  pb::SleepReply reply;
  EXPECT_EQ(echo_->Sleep(&context, request, &reply).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(eventually([&] { return stats(*echo_).sleeps_cancelled() > before.sleeps_cancelled(); }))
      << "the plugin never saw the deadline pass";
}

TEST_F(HostTest, MessageOverTheLimitIsRefused) {
  grpc::ClientContext context;
  pb::EchoRequest request;
  request.set_payload(std::string(5 * 1024 * 1024, 'x'));  // over the default 4 MiB
  pb::EchoReply reply;
  EXPECT_EQ(echo_->Echo(&context, request, &reply).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(HostTest, HealthServiceAnswers) {
  std::string response;
  // grpc.health.v1.HealthCheckRequest{} is empty; SERVING is field 1 = 1.
  grpc::Status status = raw_call(channel_, "/grpc.health.v1.Health/Check", "", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response, std::string("\x08\x01", 2));
  // HealthCheckRequest{service = "gameverse.echo.v1.Echo"}: served by the echo plugin.
  const std::string echo_service = "gameverse.echo.v1.Echo";
  ASSERT_TRUE(raw_call(channel_, "/grpc.health.v1.Health/Check",
                       "\x0a" + std::string(1, static_cast<char>(echo_service.size())) + echo_service,
                       &response)
                  .ok());
  EXPECT_EQ(response, std::string("\x08\x01", 2));
  const std::string unknown = "gameverse.nope.v1.Nope";
  status = raw_call(channel_, "/grpc.health.v1.Health/Check",
                    "\x0a" + std::string(1, static_cast<char>(unknown.size())) + unknown);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "no loaded plugin serves gameverse.nope.v1.Nope");
}

TEST_F(HostTest, ConcurrentCallsOfEveryKind) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto stub = pb::Echo::NewStub(channel_);
      for (int i = 0; i < 50; ++i) {
        grpc::ClientContext context;
        pb::EchoRequest request;
        request.set_payload(std::to_string(t) + ":" + std::to_string(i));
        pb::EchoReply reply;
        if (!stub->Echo(&context, request, &reply).ok() || reply.payload() != request.payload()) failures++;
        grpc::ClientContext stream_context;
        pb::ExpandRequest expand;
        expand.set_count(10);
        auto reader = stub->Expand(&stream_context, expand);
        int n = 0;
        while (reader->Read(&reply)) n++;
        if (!reader->Finish().ok() || n != 10) failures++;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
}

TEST(HostLifecycle, ShutdownDrainsCallsInFlight) {
  HostProcess host(example_config());
  auto echo = pb::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  pb::SleepRequest request;
  request.set_duration_ms(500);
  pb::SleepReply reply;
  std::promise<grpc::Status> done;
  echo->async()->Sleep(&context, &request, &reply, [&done](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(eventually([&] { return stats(*echo).sleeps_started() == 1; }));
  host.signal(SIGTERM);
  grpc::Status status = done.get_future().get();
  EXPECT_TRUE(status.ok()) << "in-flight call was not drained: " << status.error_message();
  EXPECT_EQ(reply.slept_ms(), 500u);
  EXPECT_EQ(host.stop(), 0) << host.log();
  EXPECT_CONTAINS(host.log(), "SIGTERM received: draining calls");
}

TEST(HostLifecycle, DrainDeadlineCancelsWhatIsLeft) {
  HostProcess host(std::string("[server]\ndrain_timeout_ms = 200\n[host]\nplugin_dir = \"" GV_PLUGIN_DIR
                               "\"\n[[plugin]]\nname = \"echo\"\n"));
  auto echo = pb::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  pb::SleepRequest request;
  request.set_duration_ms(30000);
  pb::SleepReply reply;
  std::promise<grpc::Status> done;
  echo->async()->Sleep(&context, &request, &reply, [&done](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(eventually([&] { return stats(*echo).sleeps_started() == 1; }));
  host.signal(SIGTERM);
  EXPECT_FALSE(done.get_future().get().ok());
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST(HostLifecycle, RefusedPluginsLeaveTheOthersServing) {
  std::string config = "[host]\nplugin_dir = \"" GV_PLUGIN_DIR "\"\n[[plugin]]\nname = \"echo\"\n";
  for (const char* fixture : {"abi-no-entry", "abi-major-mismatch", "abi-struct-too-large", "abi-init-fails",
                              "abi-method-twice", "abi-malformed-descriptor-set", "abi-kind-mismatch"}) {
    config += std::string("[[plugin]]\nname = \"") + fixture + "\"\npath = \"" GV_FIXTURE_DIR "/" + fixture +
              ".so\"\n";
  }
  HostProcess host(config);
  auto echo = pb::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  pb::EchoRequest request;
  request.set_payload("alive");
  pb::EchoReply reply;
  ASSERT_TRUE(echo->Echo(&context, request, &reply).ok());
  EXPECT_EQ(reply.payload(), "alive");
  const std::string log = host.log();
  EXPECT_CONTAINS(log, "plugin 'abi-no-entry'");
  EXPECT_CONTAINS(log, "exports no gv_plugin_entry_v1 symbol");
  EXPECT_CONTAINS(log, "was built for ABI major 2");
  EXPECT_CONTAINS(log, "it needs a newer host");
  EXPECT_CONTAINS(log, "the fixture's backing store is unreachable");
  EXPECT_CONTAINS(log, "is already served by plugin 'echo'");
  EXPECT_CONTAINS(log, "malformed descriptor set");
  EXPECT_CONTAINS(log, "its .proto makes it unary");
  EXPECT_CONTAINS(log, "7 plugins refused");
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST(HostLifecycle, PluginConfigErrorRefusesOnlyThatPlugin) {
  HostProcess host(std::string("[host]\nplugin_dir = \"" GV_PLUGIN_DIR "\"\n") +
                   "[[plugin]]\nname = \"echo\"\n[plugin.config]\nmax_stream_mesages = 3\n" +
                   "[[plugin]]\nname = \"hello-c\"\n");
  EXPECT_CONTAINS(host.log(), "gameverse.toml:6:1: plugin[0].config.max_stream_mesages: unknown key");
  EXPECT_EQ(raw_call(host.channel(), "/gameverse.echo.v1.Echo/Echo", "").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  std::string response;
  ASSERT_TRUE(raw_call(host.channel(), "/gameverse.hello.v1.Hello/Greet", "\x0a\x01x", &response).ok());
  EXPECT_EQ(response.substr(2), "Hello, x!");  // the declared default greeting
}

TEST(HostLifecycle, InvalidConfigStopsStartUpWithEveryError) {
  TempDir dir;
  const auto config = dir.path() / "bad.toml";
  std::ofstream(config) << "[server]\nlisten = 5\n[hots]\n";
  const CommandRun run = run_command(std::string(GV_HOST_BINARY) + " --config " + config.string());
  const std::string& output = run.output;
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_CONTAINS(output, "bad.toml:2:10: server.listen: must be a string, not an integer");
  EXPECT_CONTAINS(output, "bad.toml:3:2: hots: unknown key");
  EXPECT_CONTAINS(output, "2 error(s); nothing was started");
}

}  // namespace
}  // namespace gameverse::testing
