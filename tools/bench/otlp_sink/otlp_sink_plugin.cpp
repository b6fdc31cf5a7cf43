// A benchmark fixture: serves OTLP's LogsService/Export, reads each request and keeps nothing, so
// that `tools/gv bench logs` can tell what shipping log lines costs the host from what storing
// them costs the logging plugin.
#include <gameverse/sdk/plugin.hpp>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb.h"

namespace {

namespace sdk = gameverse::sdk;
namespace otlp = opentelemetry::proto::collector::logs::v1;

class OtlpSink final : public sdk::Plugin {
 public:
  explicit OtlpSink(sdk::InitContext&) {}
  static void describe(sdk::PluginBuilder<OtlpSink>& b) {
    b.service("opentelemetry.proto.collector.logs.v1.LogsService").unary("Export", &OtlpSink::export_logs);
  }
  sdk::Status export_logs(sdk::CallContext&, const otlp::ExportLogsServiceRequest&,
                          otlp::ExportLogsServiceResponse&) {
    return sdk::Status::ok();
  }
};

}  // namespace

GAMEVERSE_PLUGIN(OtlpSink, "otlp-sink", "1.0.0",
                 "Takes OTLP log exports and keeps nothing (a benchmark fixture)")
