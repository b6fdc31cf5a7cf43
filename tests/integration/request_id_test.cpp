// Request ids and structured logs: the real host binary, the echo plugin and a real gRPC client.
// Every reply carries the call's x-request-id (the client's when sane, else a new one), the plugin
// reads the same id from its call context, calls between plugins carry it, and every line logged
// during the call names it.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <set>
#include <sstream>

#include "expect_contains.hpp"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "host_process.hpp"
#include "run_command.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::echo::v1;

const std::regex kGeneratedId("[0-9a-f]{32}");

std::string config(const std::string& host_extra = "") {
  return "[server]\nworker_threads = 2\n[host]\nwatch = false\nplugin_dir = \"" GV_PLUGIN_DIR "\"\n" +
         host_extra + "[[plugin]]\nname = \"echo\"\n";
}

// A unary call through a generic stub, for methods without a generated stub.
grpc::Status generic_call(const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext& context,
                          const std::string& method) {
  grpc::GenericStub generic(channel);
  const grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                    [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

// The x-request-id of a finished call's reply: its one value in the initial metadata.
std::string reply_request_id(const grpc::ClientContext& context) {
  const auto& metadata = context.GetServerInitialMetadata();
  const auto [begin, end] = metadata.equal_range("x-request-id");
  EXPECT_EQ(std::distance(begin, end), 1) << "x-request-id values in the reply's initial metadata";
  return begin == end ? "" : std::string(begin->second.data(), begin->second.size());
}

grpc::Status request_id_call(pb::Echo::Stub& stub, grpc::ClientContext& context, pb::RequestIdReply& reply,
                             pb::RequestIdRequest::Path path = pb::RequestIdRequest::INLINE) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  pb::RequestIdRequest request;
  request.set_path(path);
  return stub.RequestId(&context, request, &reply);
}

class RequestIdTest : public ::testing::Test {
 protected:
  void start(const std::string& host_extra = "") {
    host_ = std::make_unique<HostProcess>(config(host_extra));
    stub_ = pb::Echo::NewStub(host_->channel());
  }
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::Echo::Stub> stub_;
};

TEST_F(RequestIdTest, ACallWithoutOneGetsANewIdThatThePluginSeesToo) {
  start();
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    pb::RequestIdReply reply;
    ASSERT_TRUE(request_id_call(*stub_, context, reply).ok());
    const std::string id = reply_request_id(context);
    EXPECT_TRUE(std::regex_match(id, kGeneratedId)) << id;
    EXPECT_EQ(reply.request_id(), id);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 3u);
}

TEST_F(RequestIdTest, ASaneIdIsKeptAndEchoed) {
  start();
  const std::vector<std::string> kept = {"req-42", "a", "Trace:1/2+3=4@edge_proxy.example-5",
                                         std::string(128, 'z')};
  for (const std::string& sent : kept) {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", sent);
    pb::RequestIdReply reply;
    ASSERT_TRUE(request_id_call(*stub_, context, reply).ok());
    EXPECT_EQ(reply_request_id(context), sent);
    EXPECT_EQ(reply.request_id(), sent);
  }
}

TEST_F(RequestIdTest, AnInsaneIdIsReplaced) {
  start();
  const std::vector<std::vector<std::string>> refused = {
      {std::string(129, 'z')}, {"has spaces"}, {"quote\"d"}, {"<script>"}, {"semi;colon"}, {"one", "two"}};
  for (const auto& sent : refused) {
    grpc::ClientContext context;
    for (const auto& value : sent) context.AddMetadata("x-request-id", value);
    pb::RequestIdReply reply;
    ASSERT_TRUE(request_id_call(*stub_, context, reply).ok());
    const std::string id = reply_request_id(context);
    EXPECT_TRUE(std::regex_match(id, kGeneratedId)) << sent.front() << " gave " << id;
    EXPECT_EQ(reply.request_id(), id);
  }
}

TEST_F(RequestIdTest, ErrorRepliesCarryTheIdToo) {
  start();
  {  // the plugin's error
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "failing-1");
    pb::FailRequest request;
    request.set_code(static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
    request.set_message("no");
    pb::EchoReply reply;
    EXPECT_EQ(stub_->Fail(&context, request, &reply).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(reply_request_id(context), "failing-1");
  }
  {  // the host's: a method nobody serves
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "unknown-1");
    EXPECT_EQ(generic_call(host_->channel(), context, "/nobody.v1.Nothing/Serves").error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_EQ(reply_request_id(context), "unknown-1");
  }
  {  // a request the plugin refuses: a Sleep longer than its max_sleep_ms
    grpc::ClientContext context;
    pb::SleepRequest request;
    request.set_duration_ms(100000000);
    pb::SleepReply reply;
    EXPECT_EQ(stub_->Sleep(&context, request, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(std::regex_match(reply_request_id(context), kGeneratedId));
  }
}

TEST_F(RequestIdTest, StreamsAndTheHostsOwnMethodsCarryTheIdToo) {
  start();
  {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "stream-1");
    pb::ExpandRequest request;
    request.set_count(3);
    auto reader = stub_->Expand(&context, request);
    pb::EchoReply reply;
    int replies = 0;
    while (reader->Read(&reply)) ++replies;
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(replies, 3);
    EXPECT_EQ(reply_request_id(context), "stream-1");
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", "chat-1");
    auto stream = stub_->Chat(&context);
    pb::EchoRequest request;
    request.set_payload("hi");
    ASSERT_TRUE(stream->Write(request));
    stream->WritesDone();
    pb::EchoReply reply;
    while (stream->Read(&reply)) {
    }
    ASSERT_TRUE(stream->Finish().ok());
    EXPECT_EQ(reply_request_id(context), "chat-1");
  }
  {  // grpc.health.v1.Health/Check, answered by the host itself: an empty request asks for the server
    grpc::ClientContext context;
    EXPECT_TRUE(generic_call(host_->channel(), context, "/grpc.health.v1.Health/Check").ok());
    EXPECT_TRUE(std::regex_match(reply_request_id(context), kGeneratedId));
  }
}

TEST_F(RequestIdTest, ACallBetweenPluginsCarriesItsCallersId) {
  start();
  for (const bool client_sends_one : {true, false}) {
    grpc::ClientContext context;
    if (client_sends_one) context.AddMetadata("x-request-id", "chain-1");
    pb::RequestIdReply reply;
    ASSERT_TRUE(request_id_call(*stub_, context, reply, pb::RequestIdRequest::AFTER_CALL).ok());
    const std::string id = reply_request_id(context);
    if (client_sends_one) {
      EXPECT_EQ(id, "chain-1");
    }
    EXPECT_EQ(reply.request_id(), id);
    EXPECT_EQ(reply.inner_request_id(), id);
  }
}

// The host's log as JSON objects, one a line; fails the test on a line that does not parse.
std::vector<nlohmann::json> json_lines(const std::string& log) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    try {
      lines.push_back(nlohmann::json::parse(line));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a JSON line: " << line << " (" << e.what() << ")";
    }
  }
  return lines;
}

const nlohmann::json* line_with_message(const std::vector<nlohmann::json>& lines,
                                        const std::string& message) {
  for (const auto& line : lines) {
    if (line.value("message", "") == message) return &line;
  }
  return nullptr;
}

TEST_F(RequestIdTest, JsonLogLinesParseAndNameTheCallTheyAreAbout) {
  start("log_format = \"json\"\n");
  const auto call = [&](const std::string& id, pb::RequestIdRequest::Path path) {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", id);
    pb::RequestIdReply reply;
    ASSERT_TRUE(request_id_call(*stub_, context, reply, path).ok());
  };
  call("json-inline", pb::RequestIdRequest::INLINE);
  call("json-pool", pb::RequestIdRequest::ON_POOL);
  call("json-chain", pb::RequestIdRequest::AFTER_CALL);
  // The lines are written before the replies are sent: they are all in the log now.
  const std::vector<nlohmann::json> lines = json_lines(host_->log());
  ASSERT_FALSE(lines.empty());
  const std::regex rfc3339_utc_ms(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  for (const auto& line : lines) {
    ASSERT_TRUE(line.is_object()) << line;
    EXPECT_TRUE(std::regex_match(line.at("time").get<std::string>(), rfc3339_utc_ms)) << line;
    EXPECT_TRUE(line.at("level").is_string()) << line;
    EXPECT_TRUE(line.at("logger").is_string()) << line;
    EXPECT_TRUE(line.at("message").is_string()) << line;
  }

  const auto expect_plugin_line = [&](const std::string& message, const std::string& id) {
    const nlohmann::json* line = line_with_message(lines, message);
    ASSERT_NE(line, nullptr) << "no line '" << message << "' in:\n" << host_->log();
    EXPECT_EQ(line->at("logger"), "echo") << *line;
    EXPECT_EQ(line->at("generation"), 1) << *line;
    EXPECT_EQ(line->at("level"), "info") << *line;
    EXPECT_EQ(line->value("request_id", ""), id) << *line;
  };
  expect_plugin_line("request id json-inline (inline)", "json-inline");
  expect_plugin_line("request id json-pool (on the pool)", "json-pool");
  // Both ends of the chain: the in-process call's handler, then the one that made the call.
  expect_plugin_line("request id json-chain (inline)", "json-chain");
  expect_plugin_line("request id json-chain (after an in-process call)", "json-chain");

  const nlohmann::json* ready = line_with_message(lines, "echo ready");  // from init: no call
  ASSERT_NE(ready, nullptr);
  EXPECT_EQ(ready->at("logger"), "echo");
  EXPECT_EQ(ready->at("generation"), 1);
  EXPECT_FALSE(ready->contains("request_id"));
  bool host_line = false;
  for (const auto& line : lines) host_line = host_line || line.at("logger") == "host";
  EXPECT_TRUE(host_line) << "the host's own lines have the logger \"host\"";
}

// The first line whose message starts with `prefix` and holds `part`, or null.
const nlohmann::json* line_starting(const std::vector<nlohmann::json>& lines, const std::string& prefix,
                                    const std::string& part = "") {
  for (const auto& line : lines) {
    const std::string message = line.value("message", "");
    if (message.rfind(prefix, 0) == 0 && message.find(part) != std::string::npos) return &line;
  }
  return nullptr;
}

// Lines the host itself writes about a call name its request id too: an operator's reload that the
// host refuses (a file that is no plugin) and then one that it carries out.
TEST_F(RequestIdTest, HostLinesAboutACallNameItsRequestId) {
  TempDir plugins;
  std::filesystem::copy_file(GV_PLUGIN_DIR "/echo.so", plugins.path() / "echo.so");
  host_ = std::make_unique<HostProcess>("[host]\nwatch = false\nlog_format = \"json\"\nplugin_dir = \"" +
                                        plugins.path().string() +
                                        "\"\n[admin]\nallow_loopback = true\n[[plugin]]\nname = \"echo\"\n");
  auto admin = gameverse::host::v1::PluginAdmin::NewStub(host_->channel());
  const auto reload = [&](const std::string& id) {
    grpc::ClientContext context;
    context.AddMetadata("x-request-id", id);
    gameverse::host::v1::ReloadPluginRequest request;
    request.set_name("echo");
    request.set_force(true);
    gameverse::host::v1::OperationResult result;
    const grpc::Status status = admin->ReloadPlugin(&context, request, &result);
    EXPECT_EQ(reply_request_id(context), id);
    return status;
  };

  std::filesystem::rename(plugins.path() / "echo.so", plugins.path() / "echo.so.good");
  std::ofstream(plugins.path() / "echo.so") << "not a shared library";
  const grpc::Status refused = reload("reload-refused-1");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << refused.error_message();
  std::filesystem::rename(plugins.path() / "echo.so.good", plugins.path() / "echo.so");
  const grpc::Status done = reload("reload-done-2");
  EXPECT_TRUE(done.ok()) << done.error_message();

  // Both lines are written before the replies are sent.
  const std::vector<nlohmann::json> lines = json_lines(host_->log());
  const nlohmann::json* refusal = line_starting(lines, "refused ", "echo");
  ASSERT_NE(refusal, nullptr) << host_->log();
  EXPECT_EQ(refusal->at("logger"), "host") << *refusal;
  EXPECT_EQ(refusal->at("level"), "error") << *refusal;
  EXPECT_EQ(refusal->value("request_id", ""), "reload-refused-1") << *refusal;
  const nlohmann::json* serving = line_starting(lines, "plugin 'echo' generation ", "replaces generation 1");
  ASSERT_NE(serving, nullptr) << host_->log();
  EXPECT_EQ(serving->at("logger"), "host") << *serving;
  EXPECT_EQ(serving->value("request_id", ""), "reload-done-2") << *serving;
  // Start-up's line about generation 1 belongs to no call.
  const nlohmann::json* first = line_starting(lines, "plugin 'echo' generation 1 serving");
  ASSERT_NE(first, nullptr) << host_->log();
  EXPECT_FALSE(first->contains("request_id")) << *first;
}

// The same through the JSON gateway: the operator's reload over HTTP, with its X-Request-Id.
TEST_F(RequestIdTest, HostLinesAboutAGatewayCallNameItsRequestId) {
  if (run_command("command -v curl").exit_code != 0) GTEST_SKIP() << "curl is not installed (tools/gv deps)";
  const std::string token = "request-id-test-operator-token-0123";
  host_ = std::make_unique<HostProcess>(config("log_format = \"json\"\n") + "[admin]\ntoken = \"" + token +
                                        "\"\n[http]\nlisten = \"127.0.0.1:0\"\ngateway = true\n");
  const CommandRun reload = run_command(
      "curl -sS --max-time 30 -w '\\nHTTP %{http_code}' -X POST -H 'content-type: application/json' "
      "-H 'x-request-id: http-reload-1' -H 'authorization: Bearer " +
      token + "' --data-raw '{\"name\":\"echo\",\"force\":true}' http://127.0.0.1:" +
      std::to_string(host_->http_port()) + "/gameverse.host.v1.PluginAdmin/ReloadPlugin");
  EXPECT_CONTAINS(reload.output, "HTTP 200");
  const std::vector<nlohmann::json> lines = json_lines(host_->log());
  const nlohmann::json* serving = line_starting(lines, "plugin 'echo' generation 2 serving");
  ASSERT_NE(serving, nullptr) << host_->log();
  EXPECT_EQ(serving->at("logger"), "host") << *serving;
  EXPECT_EQ(serving->value("request_id", ""), "http-reload-1") << *serving;
}

TEST_F(RequestIdTest, TextLogLinesEndWithTheRequestId) {
  start();
  grpc::ClientContext context;
  context.AddMetadata("x-request-id", "text-1");
  pb::RequestIdReply reply;
  ASSERT_TRUE(request_id_call(*stub_, context, reply).ok());
  const std::string log = host_->log();
  EXPECT_NE(log.find(" info [echo] request id text-1 (inline) [request_id=text-1]\n"), std::string::npos)
      << log;
}

}  // namespace
}  // namespace gameverse::testing
