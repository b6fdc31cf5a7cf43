// grpc.health.v1.Health/Watch against the real host, through stubs generated from the standard
// health.proto: each change of a service's status reaches its watchers, a name nobody serves is
// SERVICE_UNKNOWN until it is served, shutdown says NOT_SERVING, and watchers are bounded.
#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>

#include "expect_contains.hpp"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "host_services.hpp"

namespace gameverse::testing {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream; each read blocks until the next status, or fails when the stream ends or the
// deadline passes (a generous one: it bounds a hang, not how fast the host is).
class Watch {
 public:
  Watch(const std::shared_ptr<grpc::Channel>& channel, const std::string& service)
      : stub_(grpc::health::v1::Health::NewStub(channel)) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    HealthCheckRequest request;
    request.set_service(service);
    reader_ = stub_->Watch(&context_, request);
  }

  ~Watch() {
    context_.TryCancel();
    finish();
  }

  // The next status sent, or UNKNOWN when the stream ended.
  HealthCheckResponse::ServingStatus next() {
    HealthCheckResponse response;
    return reader_->Read(&response) ? response.status() : HealthCheckResponse::UNKNOWN;
  }

  grpc::Status finish() {
    if (!finished_) {
      status_ = reader_->Finish();
      finished_ = true;
    }
    return status_;
  }

 private:
  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader_;
  bool finished_ = false;
  grpc::Status status_;
};

using HealthWatchTest = HostServicesTest;

TEST_F(HealthWatchTest, AServiceGoesNotServingOnUnloadAndServingAgainOnLoad) {
  Watch echo(host_->channel(), "gameverse.echo.v1.Echo");
  Watch overall(host_->channel(), "");
  EXPECT_EQ(echo.next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(overall.next(), HealthCheckResponse::SERVING);

  unload("echo");
  EXPECT_EQ(echo.next(), HealthCheckResponse::NOT_SERVING);
  load("echo");
  EXPECT_EQ(echo.next(), HealthCheckResponse::SERVING);

  // A reload swaps generations without a gap in serving: nothing to tell the watcher, and a new
  // watcher sees SERVING at once.
  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/echo-b.so", dir_.path() / "echo.so",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_GT(reload("echo"), 0u);
  Watch after_reload(host_->channel(), "gameverse.echo.v1.Echo");
  EXPECT_EQ(after_reload.next(), HealthCheckResponse::SERVING);

  // Then an unload reaches both: the earlier watcher's next status is this one, not a stale one.
  unload("echo");
  EXPECT_EQ(echo.next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(after_reload.next(), HealthCheckResponse::NOT_SERVING);
}

// A reload the host refuses (a file of another ABI major, then one that is no plugin at all)
// leaves generation 1 serving: the watchers hear nothing until shutdown, whose NOT_SERVING is then
// the only status they get before their streams end. A blip would come before it, as NOT_SERVING
// and SERVING again.
TEST_F(HealthWatchTest, ARefusedReloadKeepsTheServiceServing) {
  Watch echo(host_->channel(), "gameverse.echo.v1.Echo");
  Watch overall(host_->channel(), "");
  EXPECT_EQ(echo.next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(overall.next(), HealthCheckResponse::SERVING);

  std::filesystem::copy_file(GV_FIXTURE_DIR "/abi-major-mismatch.so", dir_.path() / "echo.so",
                             std::filesystem::copy_options::overwrite_existing);
  const grpc::Status wrong_abi = try_reload("echo");
  EXPECT_EQ(wrong_abi.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << wrong_abi.error_message();
  EXPECT_CONTAINS(wrong_abi.error_message(), "ABI");
  std::ofstream(dir_.path() / "echo.so", std::ios::trunc) << "not a shared library";
  const grpc::Status corrupt = try_reload("echo");
  EXPECT_FALSE(corrupt.ok());

  // Generation 1 still answers.
  auto stub = gameverse::echo::v1::Echo::NewStub(host_->channel());
  grpc::ClientContext context;
  gameverse::echo::v1::EchoRequest request;
  request.set_payload("still here");
  gameverse::echo::v1::EchoReply reply;
  ASSERT_TRUE(stub->Echo(&context, request, &reply).ok());
  EXPECT_EQ(reply.payload(), "still here");

  host_->signal(SIGTERM);
  EXPECT_EQ(echo.next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(echo.next(), HealthCheckResponse::UNKNOWN) << "the watch went on past shutdown";
  EXPECT_EQ(overall.next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(overall.next(), HealthCheckResponse::UNKNOWN) << "the watch went on past shutdown";
  EXPECT_EQ(host_->stop(), 0);
}

// A reload to a build of the same plugin that serves another service: the service it dropped goes
// NOT_SERVING, the one it brought goes from SERVICE_UNKNOWN to SERVING, and the host stays SERVING.
TEST_F(HealthWatchTest, AReloadToABuildWithoutTheServiceMakesItNotServing) {
  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/dep-b.so", dir_.path() / "dep-b.so");
  load("dep-b", (dir_.path() / "dep-b.so").string());
  Watch dropped(host_->channel(), "gameverse.deps.v1.B");
  Watch brought(host_->channel(), "gameverse.deps.v1.C");
  Watch overall(host_->channel(), "");
  EXPECT_EQ(dropped.next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(brought.next(), HealthCheckResponse::SERVICE_UNKNOWN);
  EXPECT_EQ(overall.next(), HealthCheckResponse::SERVING);

  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/dep-b-serving-c.so", dir_.path() / "dep-b.so",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(reload("dep-b"), 2u);
  EXPECT_EQ(dropped.next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(brought.next(), HealthCheckResponse::SERVING);

  // And back: the first build serves B again, and C is no longer served.
  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/dep-b.so", dir_.path() / "dep-b.so",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(reload("dep-b"), 3u);
  EXPECT_EQ(dropped.next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(brought.next(), HealthCheckResponse::NOT_SERVING);
  // The host itself never changed: its first change is shutdown's.
  host_->signal(SIGTERM);
  EXPECT_EQ(overall.next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(overall.next(), HealthCheckResponse::UNKNOWN);
  EXPECT_EQ(host_->stop(), 0);
}

TEST_F(HealthWatchTest, ANameNobodyServedIsServiceUnknownOneNoLongerServedIsNotServing) {
  Watch never(host_->channel(), "no.such.Service");
  EXPECT_EQ(never.next(), HealthCheckResponse::SERVICE_UNKNOWN);
  unload("hello-c");
  Watch hello(host_->channel(), "gameverse.hello.v1.Hello");
  EXPECT_EQ(hello.next(), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthWatchTest, AServiceUnknownWatchGoesOnAndSeesTheServiceArrive) {
  // The importer's file is missing at start-up: it is refused, and nothing serves its service.
  std::filesystem::remove(dir_.path() / "importer.so");
  restart("");
  Watch importer(host_->channel(), "gameverse.deps.v1.E");
  EXPECT_EQ(importer.next(), HealthCheckResponse::SERVICE_UNKNOWN);
  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/importer.so", dir_.path() / "importer.so");
  load("importer");
  EXPECT_EQ(importer.next(), HealthCheckResponse::SERVING);
}

TEST_F(HealthWatchTest, ShutdownSendsNotServingAndEndsTheWatch) {
  Watch overall(host_->channel(), "");
  Watch echo(host_->channel(), "gameverse.echo.v1.Echo");
  EXPECT_EQ(overall.next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(echo.next(), HealthCheckResponse::SERVING);
  host_->signal(SIGTERM);
  EXPECT_EQ(overall.next(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(echo.next(), HealthCheckResponse::NOT_SERVING);
  // The stream ends by itself, before the drain: nothing is left for the drain to wait on.
  EXPECT_EQ(overall.next(), HealthCheckResponse::UNKNOWN);
  EXPECT_TRUE(overall.finish().ok()) << overall.finish().error_message();
  EXPECT_EQ(host_->stop(), 0);
}

TEST_F(HealthWatchTest, WatchersAreBounded) {
  restart("health_watchers = 2\n");
  auto first = std::make_unique<Watch>(host_->channel(), "");
  Watch second(host_->channel(), "gameverse.echo.v1.Echo");
  EXPECT_EQ(first->next(), HealthCheckResponse::SERVING);
  EXPECT_EQ(second.next(), HealthCheckResponse::SERVING);
  Watch third(host_->channel(), "");
  EXPECT_EQ(third.next(), HealthCheckResponse::UNKNOWN);
  const grpc::Status refused = third.finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_CONTAINS(refused.error_message(), "health_watchers");

  // A watcher that leaves frees its place.
  first.reset();
  EXPECT_TRUE(eventually([&] { return Watch(host_->channel(), "").next() == HealthCheckResponse::SERVING; }));
}

TEST_F(HealthWatchTest, AServiceNameLongerThanAnyIsRefused) {
  Watch long_name(host_->channel(), std::string(2000, 'x'));
  EXPECT_EQ(long_name.next(), HealthCheckResponse::UNKNOWN);
  const grpc::Status refused = long_name.finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(refused.error_message(), "service: 2000 bytes, longer than 1024");
}

}  // namespace
}  // namespace gameverse::testing
