// OpenTelemetry's own Node.js logs SDK and OTLP/gRPC exporter (npm, installed by the test into the
// build tree) ship to the host as any service would, and every record comes back through Query.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "gameverse/logging/v1/logging.grpc.pb.h"
#include "host_process.hpp"
#include "npm_client.hpp"
#include "run_command.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::logging::v1;

constexpr const char* kOperatorToken = "otlp-exporter-test-operator-0123";

TEST(OtlpExporter, RecordsFromOpenTelemetrysNodeExporterAreStoredAndQueried) {
  ASSERT_EQ(run_command("node --version").exit_code, 0) << "node is missing: `tools/gv deps` installs it";
  const std::filesystem::path work = GV_OTLP_EXPORTER_WORK;
  const NpmInstall install = install_npm_client(GV_OTLP_EXPORTER_SOURCE, work, {"export_logs.mjs"});
  if (install.registry_unreachable) GTEST_SKIP() << "the npm registry is unreachable:\n" << install.output;
  ASSERT_TRUE(install.ok) << "npm ci failed:\n" << install.output;

  TempDir data;
  HostProcess host("[host]\nwatch = false\nship_logs = false\ndata_dir = \"" + data.path().string() +
                   "\"\n[admin]\ntoken = \"" + kOperatorToken +
                   "\"\n[[plugin]]\nname = \"logging\"\npath = \"" GV_PLUGIN_DIR "/logging.so\"\n");
  const CommandRun exporter =
      run_command("node '" + (work / "export_logs.mjs").string() +
                  "' 127.0.0.1:" + std::to_string(host.port()) + " " + kOperatorToken + " node-game 250");
  ASSERT_EQ(exporter.exit_code, 0) << exporter.output << "\nhost log:\n" << host.log();
  EXPECT_EQ(exporter.output.find("rror"), std::string::npos) << exporter.output;

  auto logging = pb::Logging::NewStub(host.channel());
  std::vector<pb::LogEntry> entries;
  std::string cursor;
  do {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    pb::QueryRequest request;
    request.mutable_filter()->add_services("node-game");
    request.set_order(pb::ORDER_OLDEST_FIRST);
    request.set_page_size(100);
    request.set_cursor(cursor);
    pb::QueryResponse response;
    const grpc::Status status = logging->Query(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    entries.insert(entries.end(), response.entries().begin(), response.entries().end());
    cursor = response.next_cursor();
  } while (!cursor.empty());

  ASSERT_EQ(entries.size(), 250u) << host.log();
  std::map<std::string, int> severities;
  std::set<std::string> bodies;
  for (const pb::LogEntry& e : entries) {
    ++severities[e.severity_text()];
    bodies.insert(e.body());
    EXPECT_EQ(e.host(), "node-exporter");
    std::map<std::string, std::string> attributes;
    for (const auto& a : e.attributes()) attributes[a.key()] = a.value();
    EXPECT_EQ(attributes["player.name"], "ada");
    EXPECT_EQ(attributes["otel.scope.name"], "otlp-exporter-test");
    EXPECT_EQ("otel line " + attributes["line.number"], e.body());
    EXPECT_EQ(attributes["match.ok"], e.severity_number() == 13 ? "false" : "true");
  }
  EXPECT_EQ(bodies.size(), 250u);
  EXPECT_EQ(severities["INFO"], 125);
  EXPECT_EQ(severities["WARN"], 125);
}

}  // namespace
}  // namespace gameverse::testing
