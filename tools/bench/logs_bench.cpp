// OTLP log ingestion, as an OpenTelemetry exporter sends it: each client sends
// ExportLogsServiceRequests of --batch records (a 120-byte body, three attributes, one resource)
// one after another on a channel of its own, for --seconds. Prints records acknowledged a second
// (the logging plugin answers once they are committed to the store), the payload's MiB a second
// and the latency of an Export.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "opentelemetry/proto/collector/logs/v1/logs_service.grpc.pb.h"
#include "percentile.hpp"

namespace otlp = opentelemetry::proto;

namespace {

otlp::collector::logs::v1::ExportLogsServiceRequest batch_of(int records, int client, int64_t& serial) {
  otlp::collector::logs::v1::ExportLogsServiceRequest request;
  auto* resource = request.add_resource_logs();
  auto* service = resource->mutable_resource()->add_attributes();
  service->set_key("service.name");
  service->mutable_value()->set_string_value("bench-game-server");
  auto* scope = resource->add_scope_logs();
  scope->mutable_scope()->set_name("bench");
  const auto now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  for (int i = 0; i < records; ++i, ++serial) {
    auto* record = scope->add_log_records();
    record->set_time_unix_nano(now + static_cast<uint64_t>(i));
    record->set_severity_number(i % 10 == 0 ? otlp::logs::v1::SEVERITY_NUMBER_WARN
                                            : otlp::logs::v1::SEVERITY_NUMBER_INFO);
    record->set_severity_text(i % 10 == 0 ? "WARN" : "INFO");
    std::string body = "player " + std::to_string(serial % 5000) + " finished match " +
                       std::to_string(serial) + " on map harbour in mode ranked; client " +
                       std::to_string(client) + " ";
    body.resize(120, '.');
    record->mutable_body()->set_string_value(body);
    for (const auto& [key, value] : {std::pair<const char*, std::string>{"match.id", std::to_string(serial)},
                                     {"map", "harbour"},
                                     {"gameverse.request_id", "bench-" + std::to_string(serial / 10)}}) {
      auto* kv = record->add_attributes();
      kv->set_key(key);
      kv->mutable_value()->set_string_value(value);
    }
  }
  return request;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"OTLP log ingestion benchmark"};
  std::string target;
  std::string token;
  int batch = 100;
  int clients = 4;
  double seconds = 10;
  app.add_option("--target", target, "host:port")->required();
  app.add_option("--token", token, "Bearer token with the telemetry role (the [admin] token)");
  app.add_option("--batch", batch, "Records per Export")->check(CLI::Range(1, 100000));
  app.add_option("--clients", clients, "Clients sending at once")->check(CLI::Range(1, 256));
  app.add_option("--seconds", seconds, "How long to send");
  CLI11_PARSE(app, argc, argv);

  std::atomic<int64_t> records{0}, bytes{0}, requests{0}, errors{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  std::string first_error;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      grpc::ChannelArguments args;
      args.SetInt("gameverse.bench.client", c);  // a connection of its own
      args.SetMaxSendMessageSize(64 * 1024 * 1024);
      auto stub = otlp::collector::logs::v1::LogsService::NewStub(
          grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
      std::vector<double> mine;
      int64_t serial = static_cast<int64_t>(c) * 1'000'000'000;
      while (std::chrono::steady_clock::now() < end) {
        const auto request = batch_of(batch, c, serial);
        grpc::ClientContext context;
        if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
        otlp::collector::logs::v1::ExportLogsServiceResponse response;
        const auto sent = std::chrono::steady_clock::now();
        const grpc::Status status = stub->Export(&context, request, &response);
        mine.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent).count());
        ++requests;
        if (!status.ok() || response.partial_success().rejected_log_records() != 0) {
          ++errors;
          std::lock_guard lock(mu);
          if (first_error.empty()) {
            first_error = status.ok() ? response.partial_success().error_message()
                                      : std::to_string(status.error_code()) + " " + status.error_message();
          }
          continue;
        }
        records += batch;
        bytes += static_cast<int64_t>(request.ByteSizeLong());
      }
      std::lock_guard lock(mu);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!first_error.empty()) std::cerr << "first error: " << first_error << "\n";
  std::cout << "batch=" << batch << " clients=" << clients << " records=" << records
            << " requests=" << requests << " errors=" << errors
            << " records_per_s=" << static_cast<int64_t>(records / elapsed)
            << " mib_per_s=" << (static_cast<double>(bytes) / elapsed / (1024 * 1024))
            << " p50_ms=" << gameverse::bench::percentile(latencies_ms, 0.50)
            << " p99_ms=" << gameverse::bench::percentile(latencies_ms, 0.99) << "\n";
  return errors == 0 ? 0 : 1;
}
