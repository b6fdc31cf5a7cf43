// The JSON gateway and gRPC-Web on the HTTP port, against the real host and the echo plugin,
// driven by curl: transcoding both ways, errors naming the field, the status mapping, the gate,
// server streams as NDJSON and as gRPC-Web frames, CORS, the stream limit, a client that leaves
// mid-stream, a client that tries to pose as another address, and reloads.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "eventually.hpp"
#include "expect_contains.hpp"
#include "host_process.hpp"
#include "loopback.hpp"
#include "npm_client.hpp"
#include "run_command.hpp"

namespace gameverse::testing {
namespace {

constexpr const char* kToken = "gateway-test-operator-token-0123";

std::string config(const std::string& http_extra = "", const std::string& admin_extra = "") {
  return std::string("[host]\nwatch = false\nplugin_dir = \"") + GV_PLUGIN_DIR + "\"\n[admin]\n" +
         admin_extra + "token = \"" + kToken + "\"\n[http]\nlisten = \"127.0.0.1:0\"\ngateway = true\n" +
         http_extra +
         "[[plugin]]\nname = \"echo\"\n[plugin.access]\n\"/gameverse.echo.v1.Echo/WhoAmI\" = "
         "\"authenticated\"\n";
}

struct Reply {
  int status = 0;
  std::string headers;  // the response head, as curl prints it
  std::string body;
};

// POSTs `body` (a file when it begins with '@') to `path` with curl; `options` adds headers.
Reply post(const HostProcess& host, const std::string& path, const std::string& body,
           const std::string& options = "-H 'content-type: application/json'") {
  const auto head = std::filesystem::temp_directory_path() / ("gateway-head-" + std::to_string(getpid()));
  const std::string data =
      body.rfind('@', 0) == 0 ? "--data-binary '" + body + "'" : "--data-raw '" + body + "'";
  CommandRun run =
      run_command("curl -sS -N --max-time 30 -o - -D '" + head.string() + "' -X POST " + options + " " +
                  data + " http://127.0.0.1:" + std::to_string(host.http_port()) + path);
  Reply reply;
  reply.body = run.output;
  std::ifstream in(head);
  reply.headers.assign(std::istreambuf_iterator<char>(in), {});
  std::filesystem::remove(head);
  std::smatch status;
  if (std::regex_search(reply.headers, status, std::regex(R"(HTTP/1\.[01] (\d{3}))"))) {
    reply.status = std::stoi(status[1]);
  }
  return reply;
}

// The host's gameverse_rpc_calls_in_flight for `method` ("Echo/Sleep"), from a scrape; -1 when absent.
int calls_in_flight(const HostProcess& host, const std::string& method) {
  const CommandRun metrics =
      run_command("curl -sS http://127.0.0.1:" + std::to_string(host.http_port()) + "/metrics");
  const std::string series = "gameverse_rpc_calls_in_flight{method=\"/gameverse.echo.v1." + method + "\"} ";
  const size_t at = metrics.output.find(series);
  return at == std::string::npos ? -1 : std::atoi(metrics.output.c_str() + at + series.size());
}

// The last line a client script printed, as JSON (Node may warn before it).
nlohmann::json last_json_line(const std::string& output) {
  const std::string trimmed = output.substr(0, output.find_last_not_of('\n') + 1);
  return nlohmann::json::parse(trimmed.substr(trimmed.find_last_of('\n') + 1), nullptr, false);
}

nlohmann::json json_of(const Reply& reply) {
  return nlohmann::json::parse(reply.body, nullptr, false);
}

std::string base64(const std::string& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) |
                       uint32_t(uint8_t(bytes[i + 2]));
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

// A gRPC-Web request body: one uncompressed message frame.
std::string frame(const std::string& message) {
  std::string out(5, '\0');
  out[4] = static_cast<char>(message.size());
  return out + message;
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const auto path = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(getpid()));
  std::ofstream(path, std::ios::binary) << bytes;
  return path.string();
}

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run_command("command -v curl").exit_code != 0)
      GTEST_SKIP() << "curl is not installed (tools/gv deps)";
  }
};

TEST_F(GatewayTest, JsonCallsTranscodeBothWays) {
  HostProcess host(config());
  // bytes are base64 in protobuf's JSON mapping; uint64 is a string.
  const Reply echo = post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":"aGVsbG8="})");
  EXPECT_EQ(echo.status, 200) << echo.headers << echo.body;
  EXPECT_CONTAINS(echo.headers, "Content-Type: application/json");
  EXPECT_EQ(json_of(echo)["payload"], "aGVsbG8=");
  // An empty body is the empty message; field names in proto form are accepted too.
  const Reply empty = post(host, "/gameverse.echo.v1.Echo/Echo", "");
  EXPECT_EQ(empty.status, 200) << empty.body;
  EXPECT_EQ(json_of(empty), nlohmann::json::object());
  const Reply count = post(host, "/gameverse.echo.v1.Echo/Expand", R"({"payload":"eA==","count":2})");
  EXPECT_EQ(count.status, 200) << count.body;
}

TEST_F(GatewayTest, BadJsonUnknownFieldsAndWrongTypesAre400NamingTheField) {
  HostProcess host(config());
  const Reply unknown = post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":"eA==","colour":"red"})");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(json_of(unknown)["code"], 3);
  EXPECT_EQ(json_of(unknown)["status"], "INVALID_ARGUMENT");
  EXPECT_CONTAINS(json_of(unknown)["message"].get<std::string>(), "colour");

  const Reply wrong_type =
      post(host, "/gameverse.echo.v1.Echo/Expand", R"({"payload":"eA==","count":"many"})");
  EXPECT_EQ(wrong_type.status, 400);
  EXPECT_CONTAINS(json_of(wrong_type)["message"].get<std::string>(), "count");

  const Reply not_json = post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":)");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_CONTAINS(json_of(not_json)["message"].get<std::string>(), "gameverse.echo.v1.EchoRequest");

  const Reply not_base64 = post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":"***"})");
  EXPECT_EQ(not_base64.status, 400);
  EXPECT_CONTAINS(json_of(not_base64)["message"].get<std::string>(), "payload");

  // Nothing of it reached the plugin, and the host still serves.
  const Reply stats = post(host, "/gameverse.echo.v1.Echo/Stats", "{}");
  EXPECT_EQ(stats.status, 200) << stats.body;
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":"eA=="})").status, 200);
}

TEST_F(GatewayTest, GrpcStatusesMapToHttpStatusesWithAJsonBody) {
  HostProcess host(config());
  const std::vector<std::pair<int, int>> mapping = {{3, 400},  {16, 401}, {7, 403},  {5, 404},
                                                    {6, 409},  {10, 409}, {8, 429},  {12, 501},
                                                    {14, 503}, {4, 504},  {13, 500}, {9, 400}};
  for (const auto& [code, http] : mapping) {
    const Reply failed = post(host, "/gameverse.echo.v1.Echo/Fail",
                              R"({"message":"because \"quoted\"","code":)" + std::to_string(code) + "}");
    EXPECT_EQ(failed.status, http) << "gRPC code " << code << ": " << failed.body;
    const auto body = json_of(failed);
    EXPECT_EQ(body["code"], code);
    EXPECT_EQ(body["message"], "because \"quoted\"") << failed.body;
  }
  // A plain exception in the handler: UNKNOWN, 500.
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Fail", R"({"message":"boom"})").status, 500);
}

TEST_F(GatewayTest, TheAuthorizationHeaderGoesToTheGate) {
  HostProcess host(config());
  const Reply anonymous = post(host, "/gameverse.echo.v1.Echo/WhoAmI", "{}");
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  EXPECT_EQ(json_of(anonymous)["status"], "UNAUTHENTICATED");
  const Reply forged = post(host, "/gameverse.echo.v1.Echo/WhoAmI", "{}",
                            "-H 'content-type: application/json' -H 'authorization: Bearer not.a.token'");
  EXPECT_EQ(forged.status, 401) << forged.body;
  const Reply operator_call =
      post(host, "/gameverse.echo.v1.Echo/WhoAmI", "{}",
           "-H 'content-type: application/json' -H 'authorization: Bearer " + std::string(kToken) + "'");
  EXPECT_EQ(operator_call.status, 200) << operator_call.body;
  EXPECT_EQ(json_of(operator_call)["userId"], "operator");
}

TEST_F(GatewayTest, ServerStreamsAreNewlineDelimitedJson) {
  HostProcess host(config());
  const Reply stream = post(host, "/gameverse.echo.v1.Echo/Expand", R"({"payload":"eA==","count":3})");
  EXPECT_EQ(stream.status, 200);
  EXPECT_CONTAINS(stream.headers, "Content-Type: application/x-ndjson");
  EXPECT_CONTAINS(stream.headers, "Transfer-Encoding: chunked");
  std::istringstream lines(stream.body);
  std::string line;
  std::vector<nlohmann::json> results;
  while (std::getline(lines, line)) results.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(results.size(), 3u) << stream.body;
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i]["result"]["sequence"], std::to_string(i + 1));
    EXPECT_EQ(results[i]["result"]["payload"], "eA==");
  }
  // A stream that ends before its first message answers at once.
  const Reply empty = post(host, "/gameverse.echo.v1.Echo/Expand", R"({"payload":"eA==","count":0})");
  EXPECT_EQ(empty.status, 200) << empty.body;
  EXPECT_EQ(empty.body, "");
}

TEST_F(GatewayTest, WhatHttpCannotCarryIsRefusedClearly) {
  HostProcess host(config());
  const Reply unknown = post(host, "/no.such.Service/Method", "{}");
  EXPECT_EQ(unknown.status, 501);
  EXPECT_CONTAINS(json_of(unknown)["message"].get<std::string>(), "/no.such.Service/Method");
  const Reply client_stream = post(host, "/gameverse.echo.v1.Echo/Collect", "{}");
  EXPECT_EQ(client_stream.status, 501);
  EXPECT_CONTAINS(json_of(client_stream)["message"].get<std::string>(), "over gRPC");
  const Reply form = post(host, "/gameverse.echo.v1.Echo/Echo", "payload=x", "");
  EXPECT_EQ(form.status, 415);
  EXPECT_CONTAINS(json_of(form)["message"].get<std::string>(), "application/json");
  const CommandRun get = run_command("curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:" +
                                     std::to_string(host.http_port()) + "/gameverse.echo.v1.Echo/Echo");
  EXPECT_EQ(get.output, "405");
  const Reply timeout = post(host, "/gameverse.echo.v1.Echo/Sleep", R"({"durationMs":5000})",
                             "-H 'content-type: application/json' -H 'grpc-timeout: 100m'");
  EXPECT_EQ(timeout.status, 504) << timeout.body;
  const Reply bad_timeout = post(host, "/gameverse.echo.v1.Echo/Echo", "{}",
                                 "-H 'content-type: application/json' -H 'grpc-timeout: soon'");
  EXPECT_EQ(bad_timeout.status, 400);
}

TEST_F(GatewayTest, GrpcWebBinaryAndTextCallUnaryAndStreamingMethods) {
  HostProcess host(config());
  // EchoRequest{payload: "hi"}: field 1, length-delimited.
  const std::string request = frame(std::string("\x0a\x02hi", 4));
  const std::string file = write_temp("grpc-web-request", request);
  const Reply binary = post(host, "/gameverse.echo.v1.Echo/Echo", "@" + file,
                            "-H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1'");
  EXPECT_EQ(binary.status, 200);
  EXPECT_CONTAINS(binary.headers, "Content-Type: application/grpc-web+proto");
  // The reply frame (EchoReply{payload: "hi"}), then the trailer frame.
  const std::string message = frame(std::string("\x0a\x02hi", 4));
  ASSERT_GE(binary.body.size(), message.size()) << binary.body;
  EXPECT_EQ(binary.body.substr(0, message.size()), message);
  EXPECT_EQ(static_cast<uint8_t>(binary.body[message.size()]), 0x80);
  EXPECT_CONTAINS(binary.body.substr(message.size() + 5), "grpc-status:0\r\n");

  const Reply text =
      post(host, "/gameverse.echo.v1.Echo/Echo", base64(request),
           "-H 'content-type: application/grpc-web-text' -H 'accept: application/grpc-web-text'");
  EXPECT_EQ(text.status, 200);
  EXPECT_CONTAINS(text.headers, "Content-Type: application/grpc-web-text+proto");
  EXPECT_EQ(text.body, base64(binary.body));

  // A server stream: three message frames, then the trailers.
  const std::string expand = write_temp("grpc-web-expand", frame(std::string("\x0a\x01x\x10\x03", 5)));
  const Reply stream = post(host, "/gameverse.echo.v1.Echo/Expand", "@" + expand,
                            "-H 'content-type: application/grpc-web+proto'");
  size_t frames = 0, at = 0;
  while (at + 5 <= stream.body.size() && stream.body[at] == 0) {
    const size_t size = static_cast<uint8_t>(stream.body[at + 4]);
    at += 5 + size;
    ++frames;
  }
  EXPECT_EQ(frames, 3u);
  ASSERT_LT(at, stream.body.size());
  EXPECT_EQ(static_cast<uint8_t>(stream.body[at]), 0x80);
  EXPECT_CONTAINS(stream.body.substr(at), "grpc-status:0");

  // Errors travel in the trailers, percent-encoded.
  const std::string fail = write_temp("grpc-web-fail", frame(std::string("\x0a\x05no\xc3\xa9!\x10\x05", 9)));
  const Reply failed =
      post(host, "/gameverse.echo.v1.Echo/Fail", "@" + fail, "-H 'content-type: application/grpc-web+proto'");
  EXPECT_EQ(failed.status, 200);
  EXPECT_CONTAINS(failed.body, "grpc-status:5\r\ngrpc-message:no%C3%A9!\r\n");

  // A body that is no frame is refused in the trailers; the host keeps serving.
  const Reply garbage =
      post(host, "/gameverse.echo.v1.Echo/Echo", "xyz", "-H 'content-type: application/grpc-web+proto'");
  EXPECT_CONTAINS(garbage.body, "grpc-status:3\r\n");
  const Reply not_base64 =
      post(host, "/gameverse.echo.v1.Echo/Echo", "%%%%", "-H 'content-type: application/grpc-web-text'");
  EXPECT_EQ(not_base64.status, 200);
  const std::string trailers = "grpc-status:3\r\ngrpc-message:the request body is not base64\r\n";
  EXPECT_EQ(not_base64.body,
            base64(std::string("\x80\0\0\0", 4) + static_cast<char>(trailers.size()) + trailers));
  EXPECT_EQ(
      post(host, "/gameverse.echo.v1.Echo/Echo", "@" + file, "-H 'content-type: application/grpc-web+proto'")
          .status,
      200);
  for (const auto& path : {file, expand, fail}) std::filesystem::remove(path);
}

TEST_F(GatewayTest, CorsAllowsOnlyTheConfiguredOrigins) {
  HostProcess host(config("cors_origins = [\"https://game.example\"]\n"));
  const std::string url =
      "http://127.0.0.1:" + std::to_string(host.http_port()) + "/gameverse.echo.v1.Echo/Echo";
  const CommandRun preflight = run_command(
      "curl -sS -D - -o /dev/null -X OPTIONS -H 'Origin: https://game.example' "
      "-H 'Access-Control-Request-Method: POST' "
      "-H 'Access-Control-Request-Headers: content-type,x-grpc-web,authorization' " +
      url);
  EXPECT_CONTAINS(preflight.output, "HTTP/1.1 204");
  EXPECT_CONTAINS(preflight.output, "Access-Control-Allow-Origin: https://game.example");
  EXPECT_CONTAINS(preflight.output, "Access-Control-Allow-Methods: POST");
  EXPECT_CONTAINS(preflight.output, "authorization");
  EXPECT_CONTAINS(preflight.output, "x-grpc-web");

  const CommandRun stranger =
      run_command("curl -sS -D - -o /dev/null -X OPTIONS -H 'Origin: https://evil.example' " + url);
  EXPECT_CONTAINS(stranger.output, "HTTP/1.1 403");
  EXPECT_EQ(stranger.output.find("Access-Control-Allow-Origin"), std::string::npos) << stranger.output;

  const Reply allowed = post(host, "/gameverse.echo.v1.Echo/Echo", "{}",
                             "-H 'content-type: application/json' -H 'Origin: https://game.example'");
  EXPECT_CONTAINS(allowed.headers, "Access-Control-Allow-Origin: https://game.example");
  EXPECT_CONTAINS(allowed.headers, "Access-Control-Expose-Headers: grpc-status, grpc-message, x-request-id");
  const Reply other = post(host, "/gameverse.echo.v1.Echo/Echo", "{}",
                           "-H 'content-type: application/json' -H 'Origin: https://evil.example'");
  EXPECT_EQ(other.headers.find("Access-Control-Allow-Origin"), std::string::npos) << other.headers;
}

TEST_F(GatewayTest, StreamsAreBoundedAndALeavingClientEndsItsCall) {
  HostProcess host(config("max_streams = 1\n"));
  const std::string base = "http://127.0.0.1:" + std::to_string(host.http_port());
  // A stream that never ends by itself holds the one stream slot while curl reads it.
  std::thread holder([&] {
    run_command(
        "curl -sS -N --max-time 4 -X POST -H 'content-type: application/json' "
        "--data-raw '{\"intervalMs\":50}' " +
        base + "/gameverse.echo.v1.Echo/Count");
  });
  ASSERT_TRUE(eventually([&] { return calls_in_flight(host, "Echo/Count") == 1; }, std::chrono::seconds(20)));
  // Refused before any call is made: the plugin never sees the second stream.
  const Reply refused = post(host, "/gameverse.echo.v1.Echo/Expand", R"({"payload":"eA==","count":2})");
  EXPECT_EQ(refused.status, 503) << refused.body;
  // Unary calls still pass.
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Echo", "{}").status, 200);
  holder.join();
  // curl gave up after 4 s: its call was cancelled, not left running.
  EXPECT_TRUE(eventually([&] { return calls_in_flight(host, "Echo/Count") == 0; }, std::chrono::seconds(20)));
  const Reply after = post(host, "/gameverse.echo.v1.Echo/Expand", R"({"payload":"eA==","count":2})");
  EXPECT_EQ(after.status, 200) << after.body;
}

TEST_F(GatewayTest, AClientCannotPoseAsAnotherAddress) {
  HostProcess host(config());
  // The admin service names the caller's address when it refuses; a header claiming another is
  // dropped, and the address is the client's own.
  const Reply refused = post(host, "/gameverse.host.v1.PluginAdmin/ListPlugins", "{}",
                             "-H 'content-type: application/json' -H 'gameverse-http-peer: ipv4:10.9.8.7:1' "
                             "-H 'gameverse-forwarding-key: guess'");
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_CONTAINS(refused.body, "from ipv4:127.0.0.1:");
  EXPECT_EQ(refused.body.find("10.9.8.7"), std::string::npos) << refused.body;
  const Reply admin =
      post(host, "/gameverse.host.v1.PluginAdmin/ListPlugins", "{}",
           "-H 'content-type: application/json' -H 'authorization: Bearer " + std::string(kToken) + "'");
  EXPECT_EQ(admin.status, 200) << admin.body;
  EXPECT_CONTAINS(admin.body, "\"echo\"");
}

TEST_F(GatewayTest, UnloadLoadAndReloadChangeWhatTheGatewayServes) {
  HostProcess host(config());
  const std::string gvctl = std::string(GV_GVCTL_BINARY) + " --addr " + host.address() + " --token " + kToken;
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Echo", "{}").status, 200);
  ASSERT_EQ(run_command(gvctl + " unload echo").exit_code, 0);
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Echo", "{}").status, 501);
  ASSERT_EQ(run_command(gvctl + " load echo").exit_code, 0);
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":"eQ=="})").status, 200);
  const CommandRun reload = run_command(gvctl + " reload echo");
  ASSERT_EQ(reload.exit_code, 0) << reload.output;
  const Reply after = post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":"eg=="})");
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(json_of(after)["payload"], "eg==");
  const Reply wrong = post(host, "/gameverse.echo.v1.Echo/Echo", R"({"nope":1})");
  EXPECT_EQ(wrong.status, 400);
}

// A standard gRPC-Web client: Connect's gRPC-Web transport from npm (what browser builds use), fed
// only the echo plugin's descriptor set. Unary, server streaming, an error status, the gate.
TEST_F(GatewayTest, ConnectsGrpcWebClientCallsTheHost) {
  ASSERT_EQ(run_command("node --version").exit_code, 0) << "node is missing: `tools/gv deps` installs it";
  const std::filesystem::path work = GV_GRPC_WEB_CLIENT_WORK;
  const NpmInstall install =
      install_npm_client(GV_GRPC_WEB_CLIENT_SOURCE, work, {"grpc_web_client.mjs", "browser_client.mjs"});
  if (install.registry_unreachable) GTEST_SKIP() << "the npm registry is unreachable:\n" << install.output;
  ASSERT_TRUE(install.ok) << "npm ci failed:\n" << install.output;
  HostProcess host(config());
  const CommandRun client = run_command("node '" + (work / "grpc_web_client.mjs").string() +
                                        "' http://127.0.0.1:" + std::to_string(host.http_port()) + " '" +
                                        GV_ECHO_DESCRIPTOR_SET + "' " + kToken);
  ASSERT_EQ(client.exit_code, 0) << client.output;
  const auto result = last_json_line(client.output);
  ASSERT_TRUE(result.is_object()) << client.output;
  EXPECT_EQ(result["echo"], "from the browser client");
  EXPECT_EQ(result["expand"], nlohmann::json::array({1, 2, 3}));
  EXPECT_EQ(result["fail"]["code"], "NotFound");
  EXPECT_EQ(result["fail"]["message"], "not here");
  EXPECT_EQ(result["anonymous"], "Unauthenticated");
  EXPECT_EQ(result["user"], "operator");
}

// A page in a real browser (Debian's Chromium, headless) calls the host from another origin with
// Connect's gRPC-Web transport, as a browser build of a game does: the browser makes the CORS
// preflight and enforces the answer. From the allowed origin the calls go through and the page
// reads the request id; from another origin the browser blocks them.
TEST_F(GatewayTest, ABrowserPageOnAnAllowedOriginCallsTheHost) {
  ASSERT_EQ(run_command("test -x /usr/bin/chromium").exit_code, 0)
      << "Chromium is missing: `tools/gv test` installs Debian's chromium";
  const std::filesystem::path work = GV_GRPC_WEB_CLIENT_WORK;
  const NpmInstall install =
      install_npm_client(GV_GRPC_WEB_CLIENT_SOURCE, work, {"grpc_web_client.mjs", "browser_client.mjs"});
  if (install.registry_unreachable) GTEST_SKIP() << "the npm registry is unreachable:\n" << install.output;
  ASSERT_TRUE(install.ok) << "npm ci failed:\n" << install.output;
  const int page_port = free_port();
  HostProcess host(config("cors_origins = [\"http://127.0.0.1:" + std::to_string(page_port) + "\"]\n"));
  auto open_page = [&](const std::string& page_host) {
    return run_command("node '" + (work / "browser_client.mjs").string() + "' http://127.0.0.1:" +
                       std::to_string(host.http_port()) + " '" + GV_ECHO_DESCRIPTOR_SET + "' " + kToken +
                       " " + std::to_string(page_port) + " " + page_host);
  };
  const CommandRun allowed = open_page("127.0.0.1");
  ASSERT_EQ(allowed.exit_code, 0) << allowed.output;
  const auto result = last_json_line(allowed.output);
  ASSERT_TRUE(result.is_object()) << allowed.output;
  EXPECT_EQ(result["echo"], "from the page") << allowed.output;
  EXPECT_EQ(result["expand"], nlohmann::json::array({1, 2}));
  EXPECT_EQ(result["user"], "operator");
  EXPECT_TRUE(std::regex_match(result.value("requestId", ""), std::regex("[0-9a-f]{32}"))) << allowed.output;

  // localhost is another origin than 127.0.0.1: not in cors_origins.
  const CommandRun refused = open_page("localhost");
  ASSERT_EQ(refused.exit_code, 0) << refused.output;
  const auto blocked = last_json_line(refused.output);
  EXPECT_FALSE(blocked.contains("echo")) << refused.output;
  EXPECT_CONTAINS(refused.output, "blocked by CORS policy");
}

TEST_F(GatewayTest, RequestIdsAreAnsweredAndReachThePlugin) {
  HostProcess host(config());
  // None sent: the host makes one, answers it, and the plugin's context holds the same.
  const Reply made = post(host, "/gameverse.echo.v1.Echo/RequestId", R"({"path":"AFTER_CALL"})");
  ASSERT_EQ(made.status, 200) << made.body;
  std::smatch id;
  ASSERT_TRUE(std::regex_search(made.headers, id, std::regex("X-Request-Id: ([0-9a-f]{32})\r")))
      << made.headers;
  EXPECT_EQ(json_of(made)["requestId"], id[1].str());
  EXPECT_EQ(json_of(made)["innerRequestId"], id[1].str());  // and a call it makes in turn
  // A sane one is kept, also on a stream and on a refusal; one that is not is replaced.
  const std::string mine = "-H 'content-type: application/json' -H 'x-request-id: trace-42.a'";
  const Reply kept = post(host, "/gameverse.echo.v1.Echo/RequestId", "{}", mine);
  EXPECT_CONTAINS(kept.headers, "X-Request-Id: trace-42.a\r");
  EXPECT_EQ(json_of(kept)["requestId"], "trace-42.a");
  EXPECT_CONTAINS(post(host, "/gameverse.echo.v1.Echo/Expand", R"({"count":1})", mine).headers,
                  "X-Request-Id: trace-42.a\r");
  EXPECT_CONTAINS(post(host, "/gameverse.echo.v1.Echo/Echo", R"({"nope":1})", mine).headers,
                  "X-Request-Id: trace-42.a\r");
  const Reply replaced = post(host, "/gameverse.echo.v1.Echo/RequestId", "{}",
                              "-H 'content-type: application/json' -H 'x-request-id: a b<script>'");
  EXPECT_TRUE(std::regex_search(replaced.headers, std::regex("X-Request-Id: [0-9a-f]{32}\r")))
      << replaced.headers;
}

// What a browser page can send without a preflight never makes a call: a foreign Origin, or a
// body that is not declared JSON. And the admin service does not take a gateway caller for a
// loopback one, whatever its address: a proxy or a page may stand in between.
TEST_F(GatewayTest, CrossSiteRequestsNeverReachAPlugin) {
  HostProcess host(config("cors_origins = [\"https://play.example\"]\n", "allow_loopback = true\n"));
  const std::string unload = "/gameverse.host.v1.PluginAdmin/UnloadPlugin";
  const Reply foreign = post(host, unload, R"({"name":"echo"})",
                             "-H 'content-type: application/json' -H 'Origin: https://evil.example'");
  EXPECT_EQ(foreign.status, 403) << foreign.body;
  EXPECT_CONTAINS(foreign.body, "https://evil.example may not call");
  const Reply untyped = post(host, unload, R"({"name":"echo"})", "-H 'content-type:'");
  EXPECT_EQ(untyped.status, 415) << untyped.body;
  const Reply plain = post(host, unload, R"({"name":"echo"})", "-H 'content-type: text/plain'");
  EXPECT_EQ(plain.status, 415) << plain.body;
  const Reply loopback = post(host, unload, R"({"name":"echo"})");
  EXPECT_EQ(loopback.status, 403) << loopback.body;
  EXPECT_CONTAINS(loopback.body, "operator's credential");
  // echo still serves.
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Echo", "{}").status, 200);
  // Paths that are no method stay 404, whatever the method.
  const CommandRun favicon = run_command("curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:" +
                                         std::to_string(host.http_port()) + "/favicon.ico");
  EXPECT_EQ(favicon.output, "404");
}

// Calls in progress are bounded below the connection limit, so that a client holding slow calls
// cannot take the probes' connections; and a client's grpc-timeout never outlasts the gateway's.
TEST_F(GatewayTest, SlowCallsCannotPinThePortOrOutstayTheTimeout) {
  HostProcess host(config("max_connections = 4\ngateway_timeout_ms = 3000\n"));
  const std::string base = "http://127.0.0.1:" + std::to_string(host.http_port());
  std::vector<std::thread> sleepers;
  for (int i = 0; i < 2; ++i) {
    sleepers.emplace_back([&] {
      run_command(
          "curl -sS --max-time 20 -X POST -H 'content-type: application/json' -H 'grpc-timeout: 99M' "
          "--data-raw '{\"durationMs\":60000}' " +
          base + "/gameverse.echo.v1.Echo/Sleep");
    });
  }
  ASSERT_TRUE(eventually([&] { return calls_in_flight(host, "Echo/Sleep") == 2; }, std::chrono::seconds(10)));
  const Reply third = post(host, "/gameverse.echo.v1.Echo/Echo", "{}");
  EXPECT_EQ(third.status, 503) << third.body;
  EXPECT_CONTAINS(third.headers, "Retry-After: 1");
  EXPECT_EQ(run_command("curl -sS --max-time 5 " + base + "/healthz").output, "ok\n");
  for (auto& sleeper : sleepers) sleeper.join();
  // The sleepers asked for 99 minutes; the gateway's 3 s ended them.
  const CommandRun metrics = run_command("curl -sS " + base + "/metrics");
  EXPECT_CONTAINS(
      metrics.output,
      "gameverse_rpc_calls_total{method=\"/gameverse.echo.v1.Echo/Sleep\",code=\"DEADLINE_EXCEEDED\"} 2");
  EXPECT_EQ(post(host, "/gameverse.echo.v1.Echo/Echo", "{}").status, 200);
}

// A client that closes its side of the connection has gone (a half-close cannot be told from a
// close): its call ends as cancelled at once, not when the plugin or the deadline would end it.
TEST_F(GatewayTest, AClientThatClosesCancelsItsCall) {
  HostProcess host(config());
  const int fd = connect_to(host.http_port());
  ASSERT_GE(fd, 0);
  const std::string body = R"({"durationMs":20000})";
  const std::string request =
      "POST /gameverse.echo.v1.Echo/Sleep HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  const std::string metrics_url =
      "curl -sS http://127.0.0.1:" + std::to_string(host.http_port()) + "/metrics";
  ASSERT_TRUE(eventually([&] { return calls_in_flight(host, "Echo/Sleep") == 1; }, std::chrono::seconds(10)));
  shutdown(fd, SHUT_WR);
  const std::string cancelled =
      "gameverse_rpc_calls_total{method=\"/gameverse.echo.v1.Echo/Sleep\",code=\"CANCELLED\"} 1";
  EXPECT_TRUE(eventually([&] { return run_command(metrics_url).output.find(cancelled) != std::string::npos; },
                         std::chrono::seconds(10)))
      << run_command(metrics_url).output;
  close(fd);
  // The plugin was told too (its cancel hook ended the sleep).
  EXPECT_TRUE(eventually(
      [&] { return json_of(post(host, "/gameverse.echo.v1.Echo/Stats", "{}"))["sleepsCancelled"] == "1"; },
      std::chrono::seconds(10)))
      << post(host, "/gameverse.echo.v1.Echo/Stats", "{}").body;
}

// On SIGTERM the gateway refuses new calls with 503 and waits for the unary calls in progress:
// one that sleeps 5 s is answered in full. A second, which the test ends by closing its
// connection, holds the drain, so the port is certainly still up for the checks.
TEST_F(GatewayTest, ShutdownRefusesNewCallsAndLetsAUnaryCallInProgressFinish) {
  HostProcess host("[server]\ndrain_timeout_ms = 120000\n" + config("gateway_timeout_ms = 120000\n"));
  const int holder = connect_to(host.http_port());
  ASSERT_GE(holder, 0);
  const std::string body = R"({"durationMs":60000})";
  const std::string request =
      "POST /gameverse.echo.v1.Echo/Sleep HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(send(holder, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  CommandRun finished;  // its body, then "HTTP <status>" (not post(): its head file is one per process)
  std::thread sleeper([&] {
    finished = run_command(
        "curl -sS --max-time 60 -w '\\nHTTP %{http_code}' -X POST -H 'content-type: application/json' "
        "--data-raw '{\"durationMs\":5000}' http://127.0.0.1:" +
        std::to_string(host.http_port()) + "/gameverse.echo.v1.Echo/Sleep");
  });
  EXPECT_TRUE(eventually([&] { return calls_in_flight(host, "Echo/Sleep") == 2; }, std::chrono::seconds(10)));
  host.signal(SIGTERM);
  const std::string healthz = "curl -sS http://127.0.0.1:" + std::to_string(host.http_port()) + "/healthz";
  EXPECT_TRUE(eventually([&] { return run_command(healthz).output == "stopping\n"; })) << host.log();
  const Reply refused = post(host, "/gameverse.echo.v1.Echo/Echo", R"({"payload":"eA=="})");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_CONTAINS(refused.headers, "Retry-After: 1");
  EXPECT_EQ(json_of(refused)["message"], "the host is shutting down") << refused.body;
  sleeper.join();
  EXPECT_CONTAINS(finished.output, "{\"sleptMs\":5000}");
  EXPECT_CONTAINS(finished.output, "\nHTTP 200");
  close(holder);  // its call is cancelled; nothing is left for the drain
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// The gateway's settings take effect at start: a reload that changes them says so, and the
// running gateway keeps the ones it started with.
TEST_F(GatewayTest, ChangedGatewaySettingsAreNamedAsNeedingARestart) {
  HostProcess host(config("cors_origins = [\"https://play.example\"]\n"));
  host.write_config(config("cors_origins = [\"https://other.example\"]\n"));
  host.signal(SIGHUP);
  EXPECT_TRUE(eventually(
      [&] { return host.log().find("[http] and [metrics] settings changed") != std::string::npos; },
      std::chrono::seconds(10)))
      << host.log();
  const Reply still = post(host, "/gameverse.echo.v1.Echo/Echo", "{}",
                           "-H 'content-type: application/json' -H 'Origin: https://play.example'");
  EXPECT_EQ(still.status, 200) << still.body;
}

TEST_F(GatewayTest, TheGatewayCanBeTurnedOff) {
  HostProcess host(std::string("[host]\nwatch = false\nplugin_dir = \"") + GV_PLUGIN_DIR +
                   "\"\n[http]\nlisten = \"127.0.0.1:0\"\n[[plugin]]\nname = \"echo\"\n");
  const Reply off = post(host, "/gameverse.echo.v1.Echo/Echo", "{}");
  EXPECT_EQ(off.status, 404);
  EXPECT_EQ(run_command("curl -sS http://127.0.0.1:" + std::to_string(host.http_port()) + "/healthz").output,
            "ok\n");
}

}  // namespace
}  // namespace gameverse::testing
