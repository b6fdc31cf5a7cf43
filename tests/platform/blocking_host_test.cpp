// Blocking handlers on the host's pool, through the real host and real gRPC clients: one plugin
// saturating its share of the pool does not slow another, a full queue answers at once, and work
// whose call ended before its turn never runs. The held calls last far longer than any deadline
// here, so the outcomes do not depend on the machine's speed.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "eventually.hpp"
#include "expect_contains.hpp"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/storeprobe/v1/store_probe.grpc.pb.h"
#include "host_process.hpp"

namespace gameverse::testing {
namespace {

namespace echo = gameverse::echo::v1;
namespace probe = gameverse::storeprobe::v1;

std::string config(const TempDir& data, int threads, int per_plugin, int queue) {
  return "[host]\nwatch = false\nplugin_dir = \"" GV_PLUGIN_DIR "\"\ndata_dir = \"" + data.path().string() +
         "\"\n[blocking]\nthreads = " + std::to_string(threads) +
         "\nthreads_per_plugin = " + std::to_string(per_plugin) +
         "\nqueue_per_plugin = " + std::to_string(queue) +
         "\n[[plugin]]\nname = \"echo\"\n[[plugin]]\nname = \"store-probe\"\npath = \"" GV_PROBE_DIR
         "/store-probe.so\"\n";
}

// Hold calls in flight, each with its context so the test can cancel them.
class Holds {
 public:
  explicit Holds(echo::Echo::Stub& stub) : stub_(stub) {}
  ~Holds() {
    cancel_all();
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return done_ == calls_.size(); });
  }
  void start(uint32_t duration_ms) {
    auto call = std::make_unique<Call>();
    call->request.set_duration_ms(duration_ms);
    Call& c = *call;
    {
      std::lock_guard lock(mu_);
      calls_.push_back(std::move(call));
    }
    stub_.async()->Hold(&c.context, &c.request, &c.reply, [this, &c](grpc::Status status) {
      std::lock_guard lock(mu_);
      c.status = std::move(status);
      c.finished = true;
      ++done_;
      done_cv_.notify_all();
    });
  }
  void cancel_all() {
    std::lock_guard lock(mu_);
    for (auto& call : calls_) call->context.TryCancel();
  }
  // The statuses of the calls that have ended so far.
  std::vector<grpc::Status> ended() {
    std::lock_guard lock(mu_);
    std::vector<grpc::Status> out;
    for (auto& call : calls_) {
      if (call->finished) out.push_back(call->status);
    }
    return out;
  }

 private:
  struct Call {
    grpc::ClientContext context;
    echo::SleepRequest request;
    echo::SleepReply reply;
    grpc::Status status;
    bool finished = false;
  };
  echo::Echo::Stub& stub_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::vector<std::unique_ptr<Call>> calls_;
  size_t done_ = 0;
};

grpc::Status blocking_echo(echo::Echo::Stub& stub, std::chrono::milliseconds deadline) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  echo::EchoRequest request;
  request.set_payload("ping");
  echo::EchoReply reply;
  return stub.BlockingEcho(&context, request, &reply);
}

echo::StatsReply stats(echo::Echo::Stub& stub) {
  grpc::ClientContext context;
  echo::StatsReply reply;
  EXPECT_TRUE(stub.Stats(&context, echo::StatsRequest(), &reply).ok());
  return reply;
}

TEST(BlockingPool, OnePluginSaturatingItsShareLeavesTheRestToOthers) {
  TempDir data;
  // 4 threads, at most 2 for one plugin, 4 waiting per plugin.
  HostProcess host(config(data, 4, 2, 4));
  auto echo_stub = echo::Echo::NewStub(host.channel());
  auto probe_stub = probe::StoreProbe::NewStub(host.channel());

  // Ten holds of a minute: at most two run and four wait; the rest are refused at once. (Four to
  // six are refused: a hold taken off the queue by a thread makes room for another.)
  Holds holds(*echo_stub);
  for (int i = 0; i < 10; ++i) holds.start(60000);
  ASSERT_TRUE(eventually([&] { return holds.ended().size() >= 4; })) << host.log();
  auto all_refused = [&] {
    for (const grpc::Status& status : holds.ended()) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_CONTAINS(status.error_message(), "plugin 'echo' has 4 blocking calls waiting");
    }
  };
  all_refused();

  // The store probe's blocking calls run meanwhile: echo holds its share, not the pool.
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    probe::Write write;
    write.set_collection("items");
    write.set_key("k" + std::to_string(i));
    write.set_value("v");
    probe::Versions versions;
    grpc::Status status = probe_stub->Put(&context, write, &versions);
    ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << host.log();
  }
  all_refused();  // the others are still held
  EXPECT_LE(holds.ended().size(), 6u);

  // Cancelled, the running holds stop and the waiting ones are dropped: echo answers again.
  holds.cancel_all();
  ASSERT_TRUE(eventually([&] { return holds.ended().size() == 10; }));
  EXPECT_TRUE(eventually([&] { return blocking_echo(*echo_stub, std::chrono::seconds(10)).ok(); }))
      << host.log();
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST(BlockingPool, WorkWhoseDeadlinePassedInTheQueueNeverRuns) {
  TempDir data;
  HostProcess host(config(data, 1, 1, 16));
  auto stub = echo::Echo::NewStub(host.channel());
  Holds holds(*stub);
  holds.start(3000);  // takes echo's only thread for three seconds
  // A BlockingEcho with a short deadline waits behind it, and fails (those sent before the hold
  // took the thread may still run and answer).
  uint64_t answered = 0;
  ASSERT_TRUE(eventually([&] {
    const grpc::Status status = blocking_echo(*stub, std::chrono::milliseconds(200));
    answered += status.ok();
    return status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  }));
  ASSERT_TRUE(eventually([&] { return holds.ended().size() == 1; }));
  EXPECT_TRUE(holds.ended()[0].ok());
  // The hold is over: the expired echo was skipped, never run.
  EXPECT_EQ(stats(*stub).blocking_echoes(), answered);
  EXPECT_TRUE(blocking_echo(*stub, std::chrono::seconds(10)).ok());
  EXPECT_EQ(stats(*stub).blocking_echoes(), answered + 1);
  EXPECT_EQ(host.stop(), 0) << host.log();
}

}  // namespace
}  // namespace gameverse::testing
