// gv-game-metrics-bench: what the metrics plugin takes and answers through the host. Ingest:
// measurements (counters and histogram observations over a bounded set of series) recorded per
// second by concurrent clients, and OTLP data points exported per second. Query: the latency of
// a 1-hour-range query over an hour of stored windows (backfilled over OTLP first), at the 10 s
// and 1 min resolutions. The baseline: the same batches into the metrics domain in this process,
// on one thread, without gRPC, the host or the store.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "domain/metrics_service.hpp"
#include "gameverse/metrics/v1/metrics.grpc.pb.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.grpc.pb.h"
#include "percentile.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace pb = gameverse::metrics::v1;
namespace collector = opentelemetry::proto::collector::metrics::v1;
namespace otlp = opentelemetry::proto::metrics::v1;

uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void fail(const char* what, const grpc::Status& status) {
  std::fprintf(stderr, "%s failed: %s\n", what, status.error_message().c_str());
  std::exit(1);
}

// A batch of `size` measurements over `series` series: counters and histogram observations.
pb::RecordRequest record_batch(int size, int series, int seed) {
  pb::RecordRequest request;
  for (int i = 0; i < size; ++i) {
    pb::Measurement* m = request.add_measurements();
    const int s = (seed + i) % series;
    (*m->mutable_labels())["shard"] = std::to_string(s);
    if (i % 2 == 0) {
      m->set_name("player_bench_kills");
      m->set_counter_add(1);
    } else {
      m->set_name("player_bench_frame_seconds");
      m->set_histogram_observe(0.001 * (i % 40));
    }
  }
  return request;
}

// Delta sums of `series` series at `time_ns`.
collector::ExportMetricsServiceRequest otlp_batch(int series, uint64_t time_ns, const std::string& name) {
  collector::ExportMetricsServiceRequest request;
  otlp::Metric* m = request.add_resource_metrics()->add_scope_metrics()->add_metrics();
  m->set_name(name);
  m->mutable_sum()->set_is_monotonic(true);
  m->mutable_sum()->set_aggregation_temporality(otlp::AGGREGATION_TEMPORALITY_DELTA);
  for (int s = 0; s < series; ++s) {
    otlp::NumberDataPoint* p = m->mutable_sum()->add_data_points();
    p->set_start_time_unix_nano(time_ns - 1);
    p->set_time_unix_nano(time_ns);
    p->set_as_int(1);
    auto* a = p->add_attributes();
    a->set_key("shard");
    a->mutable_value()->set_string_value(std::to_string(s));
  }
  return request;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Metrics ingest (observations/s) and 1-hour-range query latency through the host"};
  std::string target, token;
  int seconds = 10, clients = 4, batch = 100, series = 200, queries = 50, backfill_series = 20;
  app.add_option("--target", target, "The host, host:port")->required();
  app.add_option("--token", token, "A bearer token for Record, Export and Query (the host's [admin] token)")
      ->required();
  app.add_option("--seconds", seconds, "Seconds of each ingest run")->capture_default_str();
  app.add_option("--clients", clients, "Concurrent clients")->capture_default_str();
  app.add_option("--batch", batch, "Measurements or data points per call")->capture_default_str();
  app.add_option("--series", series, "Series the ingest spreads over")->capture_default_str();
  app.add_option("--queries", queries, "Queries timed per resolution")->capture_default_str();
  app.add_option("--backfill-series", backfill_series, "Series of the hour queried")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel_for = [&](int i) {
    args.SetInt("gv.bench.channel", i);  // a connection per client
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  };

  // Ingest through Record.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> recorded{0}, refused{0};
  std::vector<std::thread> threads;
  const auto record_start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = pb::Metrics::NewStub(channel_for(c));
      const pb::RecordRequest request = record_batch(batch, series, c * 7);
      while (!stop) {
        grpc::ClientContext context;
        context.AddMetadata("authorization", "Bearer " + token);
        pb::RecordReply reply;
        if (stub->Record(&context, request, &reply).ok()) {
          recorded += reply.accepted();
        } else {
          ++refused;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  threads.clear();
  const double record_s = std::chrono::duration<double>(Clock::now() - record_start).count();

  // Ingest through OTLP Export.
  stop = false;
  std::atomic<int64_t> exported{0};
  const auto export_start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = collector::MetricsService::NewStub(channel_for(100 + c));
      while (!stop) {
        grpc::ClientContext context;
        context.AddMetadata("authorization", "Bearer " + token);
        collector::ExportMetricsServiceResponse reply;
        const grpc::Status status =
            stub->Export(&context, otlp_batch(batch, unix_ns(), "bench_otlp_requests"), &reply);
        if (status.ok()) {
          exported += batch - reply.partial_success().rejected_data_points();
        } else {
          ++refused;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double export_s = std::chrono::duration<double>(Clock::now() - export_start).count();

  // An hour of windows: one export per 10 s of the past hour, then the flush stores them.
  auto otlp = collector::MetricsService::NewStub(channel_for(200));
  const uint64_t now = unix_ns();
  const uint64_t hour = 3600ull * 1000000000ull;
  for (uint64_t t = now - hour + 20ull * 1000000000ull; t <= now; t += 10ull * 1000000000ull) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    collector::ExportMetricsServiceResponse reply;
    const grpc::Status status = otlp->Export(&context, otlp_batch(backfill_series, t, "bench_hour"), &reply);
    if (!status.ok()) fail("backfill", status);
    if (reply.partial_success().rejected_data_points() > 0) {
      std::fprintf(stderr, "backfill refused: %s\n", reply.partial_success().error_message().c_str());
      return 1;
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(5));  // the flush timer stores the closed windows

  // The baseline: the same batches into the domain in process.
  namespace m = gameverse::metrics;
  m::Settings settings;
  settings.limits = {100000, 100000, 100000};
  settings.histogram_bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  settings.resolutions = {{"10s", "w10s", 10, 3600}, {"1m", "w1m", 60, 3600}, {"1h", "w1h", 3600, 3600}};
  m::MetricsService domain(settings, nullptr, 0);
  std::vector<m::Measurement> domain_batch;
  const pb::RecordRequest same_batch = record_batch(batch, series, 0);
  for (const pb::Measurement& in : same_batch.measurements()) {
    m::Measurement out;
    out.name = in.name();
    out.labels.insert(in.labels().begin(), in.labels().end());
    out.type =
        in.has_counter_add() ? m::Measurement::Type::kCounterAdd : m::Measurement::Type::kHistogramObserve;
    out.value = in.has_counter_add() ? in.counter_add() : in.histogram_observe();
    domain_batch.push_back(std::move(out));
  }
  int64_t in_process = 0;
  const auto domain_start = Clock::now();
  while (Clock::now() - domain_start < std::chrono::seconds(seconds)) {
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    in_process += static_cast<int64_t>(domain.record("bench", domain_batch, now_ms));
    if (in_process % (static_cast<int64_t>(batch) * 1000) == 0) domain.take_closed(now_ms / 1000);
  }
  const double domain_s = std::chrono::duration<double>(Clock::now() - domain_start).count();

  auto metrics = pb::Metrics::NewStub(channel_for(201));
  std::printf("ingest: %d clients, %d per call, %d series\n", clients, batch, series);
  std::printf("  Record:      %10.0f observations/s (%lld refused calls)\n",
              static_cast<double>(recorded) / record_s, static_cast<long long>(refused.load()));
  std::printf("  OTLP Export: %10.0f data points/s\n", static_cast<double>(exported) / export_s);
  std::printf("  baseline, the domain in process on one thread: %.0f observations/s (Record/baseline %.2f)\n",
              static_cast<double>(in_process) / domain_s,
              (static_cast<double>(recorded) / record_s) / (static_cast<double>(in_process) / domain_s));
  for (int64_t step : {10, 60}) {
    std::vector<double> ms;
    size_t points = 0;
    for (int i = 0; i < queries; ++i) {
      grpc::ClientContext context;
      context.AddMetadata("authorization", "Bearer " + token);
      pb::QueryRequest request;
      request.set_metric("bench_hour");
      request.set_end_unix_s(static_cast<int64_t>(now / 1000000000ull));
      request.set_start_unix_s(request.end_unix_s() - 3600);
      request.set_step_s(step);
      request.set_aggregation(pb::AGGREGATION_RATE);
      request.add_by("shard");
      pb::QueryReply reply;
      const auto begin = Clock::now();
      const grpc::Status status = metrics->Query(&context, request, &reply);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
      if (!status.ok()) fail("query", status);
      points = 0;
      for (const auto& s : reply.series()) points += static_cast<size_t>(s.points_size());
    }
    std::printf("query 1 h, step %3llds (%d series, %zu points): p50 %.2f ms, p99 %.2f ms\n",
                static_cast<long long>(step), backfill_series, points, gameverse::bench::percentile(ms, 0.5),
                gameverse::bench::percentile(ms, 0.99));
  }
  return 0;
}
