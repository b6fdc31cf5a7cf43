// gv-load: a closed-loop gRPC load client. Keeps channels x outstanding unary calls in flight
// through a generic stub (raw bytes, so it measures the server and not client-side parsing),
// checks every status, and prints throughput and a latency histogram's percentiles. With --calls it
// makes exactly that many calls instead (no warm-up, no time limit), for instruction counts.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gameverse/echo/v1/echo.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

// Latency counts at 1 µs resolution up to 1 s; slower calls land in the last bucket.
class Histogram {
 public:
  void record(Clock::duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    ++counts_[std::min<size_t>(static_cast<size_t>(us), counts_.size() - 1)];
    ++total_;
  }
  double percentile_us(double p) const {
    const uint64_t target = static_cast<uint64_t>(p / 100.0 * static_cast<double>(total_));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen > target) return static_cast<double>(i);
    }
    return static_cast<double>(counts_.size() - 1);
  }
  uint64_t total() const { return total_; }

 private:
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(1'000'000, 0);
  uint64_t total_ = 0;
};

struct Slot {
  grpc::GenericStub* stub;
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
  grpc::ByteBuffer response;
  grpc::Status status;
  Clock::time_point started;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Closed-loop unary load against a gRPC server"};
  std::string target = "127.0.0.1:50051";
  std::string method = "/gameverse.echo.v1.Echo/Echo";
  size_t payload_bytes = 100;
  int channels = 4;
  int outstanding = 32;
  int warmup_ms = 1000;
  int duration_ms = 5000;
  uint64_t calls = 0;
  std::string token;
  app.add_option("--target", target, "host:port")->capture_default_str();
  app.add_option("--method", method, "Full method name; the request is an EchoRequest")
      ->capture_default_str();
  app.add_option("--payload-bytes", payload_bytes, "Payload size of each request")->capture_default_str();
  app.add_option("--channels", channels, "Separate connections")->capture_default_str();
  app.add_option("--outstanding", outstanding, "Calls in flight per channel")->capture_default_str();
  app.add_option("--warmup-ms", warmup_ms, "Load before measuring")->capture_default_str();
  app.add_option("--duration-ms", duration_ms, "Measured time")->capture_default_str();
  app.add_option("--calls", calls,
                 "Make exactly this many calls, all measured, then stop (0: run for a time)");
  app.add_option("--token", token, "Send authorization: Bearer TOKEN with every call");
  std::string relay;
  app.add_option("--relay", relay,
                 "Wrap the EchoRequest for this method in a platform-probe RelayRequest (--method names the "
                 "Relay method): the probe calls it in process, or on another host");
  CLI11_PARSE(app, argc, argv);

  gameverse::echo::v1::EchoRequest request;
  request.set_payload(std::string(payload_bytes, 'x'));
  std::string request_bytes = request.SerializeAsString();
  if (!relay.empty()) {
    // gameverse.platformprobe.v1.RelayRequest{method = 1, request = 2}, written by hand: the load
    // client does not link the probe's messages.
    auto field = [](uint8_t tag, const std::string& bytes) {
      std::string out(1, static_cast<char>(tag));
      for (size_t n = bytes.size();; n >>= 7) {
        if (n < 0x80) {
          out += static_cast<char>(n);
          break;
        }
        out += static_cast<char>((n & 0x7f) | 0x80);
      }
      return out + bytes;
    };
    request_bytes = field(0x0a, relay) + field(0x12, request_bytes);
  }

  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("gv.bench.channel", i);  // distinct arguments: a connection of its own
    args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
    stubs.push_back(std::make_unique<grpc::GenericStub>(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args)));
  }

  grpc::CompletionQueue queue;
  std::vector<Slot> slots(static_cast<size_t>(channels * outstanding));
  auto start_call = [&](Slot& slot) {
    slot.context = std::make_unique<grpc::ClientContext>();
    slot.context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!token.empty()) slot.context->AddMetadata("authorization", "Bearer " + token);
    grpc::Slice slice(request_bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    slot.started = Clock::now();
    slot.reader = slot.stub->PrepareUnaryCall(slot.context.get(), method, buffer, &queue);
    slot.reader->StartCall();
    slot.reader->Finish(&slot.response, &slot.status, &slot);
  };
  if (calls > 0) {
    warmup_ms = 0;
    if (slots.size() > calls) slots.resize(calls);
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].stub = stubs[i % stubs.size()].get();
    start_call(slots[i]);
  }
  uint64_t started = slots.size();

  Histogram histogram;
  uint64_t errors = 0;
  std::string first_error;
  const auto began = Clock::now();
  const auto measure_from = began + std::chrono::milliseconds(warmup_ms);
  const auto stop_at = measure_from + std::chrono::milliseconds(duration_ms);
  size_t in_flight = slots.size();
  void* tag = nullptr;
  bool ok = false;
  while (in_flight > 0 && queue.Next(&tag, &ok)) {
    auto& slot = *static_cast<Slot*>(tag);
    const auto now = Clock::now();
    if (calls > 0 || (now >= measure_from && now < stop_at)) {
      if (!ok || !slot.status.ok()) {
        if (++errors == 1)
          first_error = std::to_string(slot.status.error_code()) + " " + slot.status.error_message();
      } else {
        histogram.record(now - slot.started);
      }
    }
    if (calls > 0 ? started < calls : now < stop_at) {
      ++started;
      start_call(slot);
    } else {
      --in_flight;
    }
  }
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }

  const double seconds =
      calls > 0 ? std::chrono::duration<double>(Clock::now() - began).count() : duration_ms / 1000.0;
  std::printf("requests=%llu errors=%llu rps=%.0f p50_us=%.0f p99_us=%.0f\n",
              static_cast<unsigned long long>(histogram.total()), static_cast<unsigned long long>(errors),
              static_cast<double>(histogram.total()) / seconds, histogram.percentile_us(50),
              histogram.percentile_us(99));
  if (errors > 0) std::fprintf(stderr, "first error: %s\n", first_error.c_str());
  return errors == 0 && histogram.total() > 0 ? 0 : 1;
}
