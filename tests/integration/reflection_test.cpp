// gRPC server reflection against the real host: through stubs generated from the standard
// reflection.proto, and through a third-party client (npm's grpc-js-reflection-client) that has
// no .proto of the host's services and calls Echo with what reflection told it.
#include <google/protobuf/descriptor.pb.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <set>
#include <vector>

#include "expect_contains.hpp"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "host_services.hpp"
#include "npm_client.hpp"
#include "run_command.hpp"

namespace gameverse::testing {
namespace {

namespace reflection = grpc::reflection::v1;

// One reflection stream: each question is written and its answer read, with a deadline.
class ReflectionStream {
 public:
  explicit ReflectionStream(const std::shared_ptr<grpc::Channel>& channel)
      : stub_(reflection::ServerReflection::NewStub(channel)) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stream_ = stub_->ServerReflectionInfo(&context_);
  }

  ~ReflectionStream() {
    stream_->WritesDone();
    reflection::ServerReflectionResponse rest;
    while (stream_->Read(&rest)) {
    }
    stream_->Finish();
  }

  reflection::ServerReflectionResponse ask(const reflection::ServerReflectionRequest& request) {
    reflection::ServerReflectionResponse response;
    EXPECT_TRUE(stream_->Write(request));
    EXPECT_TRUE(stream_->Read(&response));
    return response;
  }

  std::set<std::string> services() {
    reflection::ServerReflectionRequest request;
    request.set_list_services("");
    const reflection::ServerReflectionResponse response = ask(request);
    std::set<std::string> names;
    for (const auto& service : response.list_services_response().service()) names.insert(service.name());
    return names;
  }

  reflection::ServerReflectionResponse file_containing_symbol(const std::string& symbol) {
    reflection::ServerReflectionRequest request;
    request.set_file_containing_symbol(symbol);
    return ask(request);
  }

  reflection::ServerReflectionResponse file_by_filename(const std::string& name) {
    reflection::ServerReflectionRequest request;
    request.set_file_by_filename(name);
    return ask(request);
  }

 private:
  std::unique_ptr<reflection::ServerReflection::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<reflection::ServerReflectionRequest, reflection::ServerReflectionResponse>>
      stream_;
};

// The files of a file answer, in the order sent.
std::vector<google::protobuf::FileDescriptorProto> files_of(
    const reflection::ServerReflectionResponse& response) {
  std::vector<google::protobuf::FileDescriptorProto> files;
  for (const auto& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    files.emplace_back().ParseFromString(bytes);
  }
  return files;
}

std::vector<std::string> names_of(const reflection::ServerReflectionResponse& response) {
  std::vector<std::string> names;
  for (const auto& file : files_of(response)) names.push_back(file.name());
  return names;
}

using ReflectionTest = HostServicesTest;

TEST_F(ReflectionTest, ListsWhatServesAndFollowsUnloadLoadAndReload) {
  ReflectionStream stream(host_->channel());
  const std::set<std::string> all = stream.services();
  for (const char* service :
       {"gameverse.echo.v1.Echo", "gameverse.hello.v1.Hello", "gameverse.deps.v1.E",
        "gameverse.host.v1.PluginAdmin", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_TRUE(all.contains(service)) << service << " is not listed";
  }

  // The same stream sees each change at once: every request reads the routes serving then.
  unload("echo");
  EXPECT_FALSE(stream.services().contains("gameverse.echo.v1.Echo"));
  EXPECT_EQ(stream.file_containing_symbol("gameverse.echo.v1.Echo").error_response().error_code(),
            grpc::StatusCode::NOT_FOUND);

  load("echo");
  EXPECT_TRUE(stream.services().contains("gameverse.echo.v1.Echo"));
  EXPECT_EQ(names_of(stream.file_containing_symbol("gameverse.echo.v1.Echo")),
            std::vector<std::string>{"gameverse/echo/v1/echo.proto"});

  std::filesystem::copy_file(GV_RELOAD_FIXTURE_DIR "/echo-b.so", dir_.path() / "echo.so",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_GT(reload("echo"), 0u);
  EXPECT_EQ(stream.services(), all);
  EXPECT_EQ(names_of(stream.file_containing_symbol("gameverse.echo.v1.Echo.Expand")),
            std::vector<std::string>{"gameverse/echo/v1/echo.proto"});
}

TEST_F(ReflectionTest, FindsServicesMethodsMessagesFieldsAndNestedEnums) {
  ReflectionStream stream(host_->channel());
  for (const char* symbol : {"gameverse.echo.v1.Echo", "gameverse.echo.v1.Echo.Chat",
                             "gameverse.echo.v1.EchoRequest", "gameverse.echo.v1.EchoRequest.payload"}) {
    const auto files = files_of(stream.file_containing_symbol(symbol));
    ASSERT_EQ(files.size(), 1u) << symbol;
    EXPECT_EQ(files[0].name(), "gameverse/echo/v1/echo.proto") << symbol;
    ASSERT_EQ(files[0].service_size(), 1) << symbol;
    EXPECT_EQ(files[0].service(0).name(), "Echo");
  }
  // The host's own services answer from their pools too, nested enum included.
  const auto health =
      files_of(stream.file_containing_symbol("grpc.health.v1.HealthCheckResponse.ServingStatus"));
  ASSERT_EQ(health.size(), 1u);
  EXPECT_EQ(health[0].name(), "grpc/health/v1/health.proto");
  EXPECT_EQ(names_of(stream.file_by_filename("gameverse/echo/v1/echo.proto")),
            std::vector<std::string>{"gameverse/echo/v1/echo.proto"});

  reflection::ServerReflectionRequest extension_numbers;
  extension_numbers.set_all_extension_numbers_of_type("gameverse.echo.v1.EchoRequest");
  const auto numbers = stream.ask(extension_numbers);
  EXPECT_EQ(numbers.all_extension_numbers_response().base_type_name(), "gameverse.echo.v1.EchoRequest");
  EXPECT_EQ(numbers.all_extension_numbers_response().extension_number_size(), 0);
}

TEST_F(ReflectionTest, WhatIsNotThereIsNotFoundAndTheStreamGoesOn) {
  ReflectionStream stream(host_->channel());
  const auto symbol = stream.file_containing_symbol("no.such.Symbol");
  EXPECT_EQ(symbol.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_CONTAINS(symbol.error_response().error_message(), "no.such.Symbol");
  EXPECT_EQ(symbol.original_request().file_containing_symbol(), "no.such.Symbol");

  EXPECT_EQ(stream.file_by_filename("no/such.proto").error_response().error_code(),
            grpc::StatusCode::NOT_FOUND);

  reflection::ServerReflectionRequest extension;
  extension.mutable_file_containing_extension()->set_containing_type("gameverse.echo.v1.EchoRequest");
  extension.mutable_file_containing_extension()->set_extension_number(100);
  const auto no_extension = stream.ask(extension);
  EXPECT_EQ(no_extension.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_CONTAINS(no_extension.error_response().error_message(),
                  "no extension 100 of 'gameverse.echo.v1.EchoRequest'");

  reflection::ServerReflectionRequest numbers;
  numbers.set_all_extension_numbers_of_type("no.such.Type");
  EXPECT_EQ(stream.ask(numbers).error_response().error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(stream.ask(reflection::ServerReflectionRequest()).error_response().error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(stream.services().contains("gameverse.echo.v1.Echo"));
}

TEST_F(ReflectionTest, SendsEachDependencyOncePerStream) {
  const std::vector<std::string> with_imports{"importer.proto", "deps.proto",
                                              "google/protobuf/timestamp.proto"};
  {
    ReflectionStream stream(host_->channel());
    const auto first = names_of(stream.file_containing_symbol("gameverse.deps.v1.E"));
    EXPECT_EQ(std::multiset<std::string>(first.begin(), first.end()),
              std::multiset<std::string>(with_imports.begin(), with_imports.end()));
    EXPECT_EQ(first.front(), "importer.proto");  // the file asked for comes first
    // Asked again on the same stream: the file itself, never its imports again.
    EXPECT_EQ(names_of(stream.file_by_filename("importer.proto")),
              std::vector<std::string>{"importer.proto"});
    EXPECT_EQ(names_of(stream.file_containing_symbol("gameverse.deps.v1.Stamped.at")),
              std::vector<std::string>{"importer.proto"});
    EXPECT_EQ(names_of(stream.file_containing_symbol("google.protobuf.Timestamp")),
              std::vector<std::string>{"google/protobuf/timestamp.proto"});
  }
  // A new stream knows nothing yet.
  ReflectionStream fresh(host_->channel());
  EXPECT_EQ(names_of(fresh.file_by_filename("importer.proto")).size(), with_imports.size());
}

TEST_F(ReflectionTest, ShutdownEndsAnOpenStreamBeforeTheDrain) {
  // A drain this long would outlast the stream's deadline: the stream must end before it.
  restart("drain_timeout_ms = 120000\n");
  auto stub = reflection::ServerReflection::NewStub(host_->channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->ServerReflectionInfo(&context);
  reflection::ServerReflectionRequest request;
  request.set_list_services("");
  reflection::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Read(&response));

  host_->signal(SIGTERM);
  EXPECT_FALSE(stream->Read(&response));
  const grpc::Status ended = stream->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE) << ended.error_message();
  EXPECT_CONTAINS(ended.error_message(), "shutting down");
  EXPECT_EQ(host_->stop(), 0);
}

// The third-party client: npm's grpc-js-reflection-client, installed into the build directory
// from the package.json and package-lock.json beside its script.
TEST_F(ReflectionTest, AThirdPartyClientListsDescribesAndCallsWithoutProtoFiles) {
  ASSERT_EQ(run_command("node --version").exit_code, 0) << "node is missing: `tools/gv deps` installs it";
  ASSERT_EQ(run_command("npm --version").exit_code, 0) << "npm is missing: `tools/gv deps` installs it";
  const std::filesystem::path work = GV_REFLECTION_CLIENT_WORK;
  const NpmInstall install = install_npm_client(GV_REFLECTION_CLIENT_SOURCE, work, {"reflection_client.js"});
  if (install.registry_unreachable) GTEST_SKIP() << "the npm registry is unreachable:\n" << install.output;
  ASSERT_TRUE(install.ok) << "npm ci failed:\n" << install.output;
  for (const char* version : {"v1", "v1alpha"}) {
    const CommandRun client = run_command("node '" + (work / "reflection_client.js").string() + "' " +
                                          host_->address() + " " + version);
    ASSERT_EQ(client.exit_code, 0) << version << ": " << client.output;
    // The client prints its result as the last line; Node may warn before it.
    const std::string output = client.output.substr(0, client.output.find_last_not_of('\n') + 1);
    const auto result = nlohmann::json::parse(output.substr(output.find_last_of('\n') + 1));
    const auto services = result["services"].get<std::vector<std::string>>();
    for (const char* service :
         {"gameverse.echo.v1.Echo", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"}) {
      EXPECT_NE(std::find(services.begin(), services.end(), service), services.end())
          << version << ": " << service;
    }
    bool described = false;
    for (const auto& method : result["methods"]) {
      if (method["name"] != "Expand") continue;
      described = true;
      EXPECT_EQ(method["request"], "ExpandRequest");
      EXPECT_EQ(method["response"], "EchoReply");
      EXPECT_EQ(method["serverStreaming"], true);
    }
    EXPECT_TRUE(described) << version << ": Echo.Expand is not described: " << client.output;
    EXPECT_EQ(result["echo"], "through reflection") << version;
    EXPECT_CONTAINS(result["missing"].get<std::string>(), "no.such.Symbol");
  }
}

}  // namespace
}  // namespace gameverse::testing
