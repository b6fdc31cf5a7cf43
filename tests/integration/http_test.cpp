// The HTTP port against the real host, with clients nobody here wrote: curl for the endpoints,
// Prometheus's own promtool for the metrics text, gvctl to unload and load a plugin; raw sockets
// for the clients that misbehave (oversized header, idle connections, slowloris).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <regex>
#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include "eventually.hpp"
#include "expect_contains.hpp"

#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "host_process.hpp"
#include "loopback.hpp"
#include "run_command.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::echo::v1;

constexpr const char* kToken = "http-test-operator-token-0123";

CommandRun curl(const HostProcess& host, const std::string& path, const std::string& options = "") {
  return run_command("curl -sS --max-time 30 -w '\\nHTTP %{http_code}' " + options +
                     " http://127.0.0.1:" + std::to_string(host.http_port()) + path);
}

bool have(const char* tool) {
  return run_command(std::string("command -v ") + tool).exit_code == 0;
}

std::string config(const std::string& http_extra = "") {
  return std::string("[host]\nwatch = false\nplugin_dir = \"") + GV_PLUGIN_DIR + "\"\n[admin]\ntoken = \"" +
         kToken + "\"\n[http]\nlisten = \"127.0.0.1:0\"\n" + http_extra + "[[plugin]]\nname = \"echo\"\n";
}

// Whether the server has closed `fd`: a read that returns end of file (or a reset) without blocking.
bool closed_by_server(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  char byte;
  return recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
}

// Sends `request` on a new connection and reads until the server closes it.
std::string exchange(int port, const std::string& request) {
  const int fd = connect_to(port);
  if (fd < 0) return "";
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string reply;
  char buffer[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 30'000) <= 0) break;
    const ssize_t got = recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0) break;
    reply.append(buffer, static_cast<size_t>(got));
  }
  close(fd);
  return reply;
}

TEST(HttpTest, MetricsPassPromtoolOnAScrapeUnderLoad) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  if (!have("promtool"))
    GTEST_SKIP() << "promtool is not installed: Debian's prometheus package (tools/gv deps)";
  HostProcess host(config());
  ASSERT_GT(host.http_port(), 0) << host.log();
  auto echo = pb::Echo::NewStub(host.channel());
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0};
  std::thread load([&] {
    while (!stop) {
      grpc::ClientContext context;
      pb::EchoRequest request;
      request.set_payload("load");
      pb::EchoReply reply;
      if (echo->Echo(&context, request, &reply).ok()) ++calls;
    }
  });
  {  // an error by code, and a label value that needs escaping: a method no plugin serves
    grpc::ClientContext context;
    pb::FailRequest request;
    request.set_code(grpc::StatusCode::NOT_FOUND);
    pb::EchoReply reply;
    EXPECT_EQ(echo->Fail(&context, request, &reply).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  ASSERT_TRUE(eventually([&] { return calls > 50; }, std::chrono::seconds(60)));
  const auto file =
      std::filesystem::temp_directory_path() / ("gameverse-scrape-" + std::to_string(getpid()) + ".txt");
  CommandRun fetched = run_command("curl -sS --max-time 30 -D - -o " + file.string() +
                                   " http://127.0.0.1:" + std::to_string(host.http_port()) + "/metrics");
  stop = true;
  load.join();
  ASSERT_EQ(fetched.exit_code, 0) << fetched.output;
  EXPECT_CONTAINS(fetched.output, "Content-Type: text/plain; version=0.0.4");
  const std::string text = read_file(file);
  CommandRun check = run_command("promtool check metrics < " + file.string());
  std::filesystem::remove(file);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;

  EXPECT_TRUE(std::regex_search(
      text,
      std::regex(R"(gameverse_rpc_calls_total\{method="/gameverse.echo.v1.Echo/Echo",code="OK"\} [1-9])")))
      << text;
  EXPECT_CONTAINS(
      text, "gameverse_rpc_calls_total{method=\"/gameverse.echo.v1.Echo/Fail\",code=\"NOT_FOUND\"} 1\n");
  EXPECT_CONTAINS(
      text,
      "gameverse_rpc_call_duration_seconds_bucket{method=\"/gameverse.echo.v1.Echo/Echo\",le=\"+Inf\"}");
  EXPECT_CONTAINS(text, "gameverse_rpc_calls_in_flight{method=\"/gameverse.echo.v1.Echo/Echo\"}");
  EXPECT_CONTAINS(text, "gameverse_plugin_generation{plugin=\"echo\"} 1\n");
  EXPECT_CONTAINS(text, "gameverse_plugin_reloads_total{plugin=\"echo\"} 0\n");
}

TEST(HttpTest, UnknownMethodsAreCountedTogetherNotOneSeriesEach) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  HostProcess host(config());
  auto channel = host.channel();
  for (int i = 0; i < 3; ++i) {
    grpc::GenericStub stub(channel);
    grpc::ClientContext context;
    grpc::Slice empty("", 0);
    grpc::ByteBuffer request(&empty, 1), reply;
    grpc::Status status;
    std::atomic<bool> done{false};
    stub.UnaryCall(&context, "/no.Such/Method" + std::to_string(i), {}, &request, &reply,
                   [&](grpc::Status s) {
                     status = s;
                     done = true;
                   });
    ASSERT_TRUE(eventually([&] { return done.load(); }));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  }
  CommandRun metrics = curl(host, "/metrics");
  EXPECT_CONTAINS(metrics.output,
                  "gameverse_rpc_calls_total{method=\"unrouted\",code=\"UNIMPLEMENTED\"} 3\n");
  EXPECT_EQ(metrics.output.find("no.Such"), std::string::npos) << metrics.output;
}

TEST(HttpTest, HealthzReadyzFollowAPluginUnloadedAndLoaded) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  HostProcess host(config());
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");
  EXPECT_EQ(curl(host, "/readyz").output, "ready\n\nHTTP 200");
  const std::string gvctl = std::string(GV_GVCTL_BINARY) + " --addr " + host.address() + " --token " + kToken;
  CommandRun unload = run_command(gvctl + " unload echo");
  ASSERT_EQ(unload.exit_code, 0) << unload.output;
  CommandRun not_ready = curl(host, "/readyz");
  EXPECT_CONTAINS(not_ready.output, "plugin echo is not serving");
  EXPECT_CONTAINS(not_ready.output, "HTTP 503");
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");  // alive all the same
  CommandRun load = run_command(gvctl + " load echo");
  ASSERT_EQ(load.exit_code, 0) << load.output;
  EXPECT_EQ(curl(host, "/readyz").output, "ready\n\nHTTP 200");
}

TEST(HttpTest, RoutesMethodsAndKeepAlive) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  HostProcess host(config());
  EXPECT_EQ(curl(host, "/nope").output, "not found\n\nHTTP 404");
  CommandRun post = curl(host, "/metrics", "-X POST -d x -D -");
  EXPECT_CONTAINS(post.output, "HTTP 405");
  EXPECT_CONTAINS(post.output, "Allow: GET, HEAD");
  CommandRun head = curl(host, "/healthz", "-I");
  EXPECT_CONTAINS(head.output, "HTTP/1.1 200");
  EXPECT_CONTAINS(head.output, "Content-Length: 3");
  EXPECT_EQ(head.output.find("ok\n"), std::string::npos) << head.output;
  // Two requests on one connection.
  CommandRun both =
      run_command("curl -sv --max-time 30 http://127.0.0.1:" + std::to_string(host.http_port()) +
                  "/healthz http://127.0.0.1:" + std::to_string(host.http_port()) + "/readyz");
  EXPECT_CONTAINS(both.output, "Re-using existing connection");
  EXPECT_CONTAINS(both.output, "ok\n");
  EXPECT_CONTAINS(both.output, "ready\n");
}

TEST(HttpTest, AnOversizedHeaderIs431AndTheHostKeepsServing) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  HostProcess host(config("max_header_bytes = 1024\n"));
  CommandRun big = curl(host, "/healthz", "-H 'X-Big: " + std::string(4096, 'a') + "'");
  EXPECT_CONTAINS(big.output, "HTTP 431");
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");
  // A body announced larger than max_body_bytes (64 KiB by default) is refused before it is read.
  EXPECT_CONTAINS(
      exchange(host.http_port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"),
      "HTTP/1.1 413");
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");
}

// A chunked body announces no length: the limit counts its bytes as they come, and the host answers
// 413 once they pass it, while the client is still sending (it never sends the last chunk).
TEST(HttpTest, AChunkedBodyOverTheLimitIs413BeforeItEnds) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  // A long request timeout: the unfinished body is not cut off by the timeout instead.
  HostProcess host(config("gateway = true\nmax_body_bytes = 1024\nrequest_timeout_ms = 120000\n"));
  const int fd = connect_to(host.http_port());
  ASSERT_GE(fd, 0);
  const std::string head =
      "POST /gameverse.echo.v1.Echo/Echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  ASSERT_EQ(send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
  const std::string chunk = "200\r\n" + std::string(0x200, ' ') + "\r\n";  // 512 bytes of body
  std::string reply;
  int chunks_sent = 0;
  // Up to 256 KiB of body, 256 times the limit, and never the terminating chunk.
  for (; chunks_sent < 512 && reply.find("\r\n\r\n") == std::string::npos; ++chunks_sent) {
    if (send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(chunk.size())) break;
    char buffer[4096];
    pollfd p{fd, POLLIN, 0};
    while (poll(&p, 1, chunks_sent < 4 ? 0 : 50) > 0) {
      const ssize_t got = recv(fd, buffer, sizeof buffer, 0);
      if (got <= 0) break;
      reply.append(buffer, static_cast<size_t>(got));
    }
  }
  // The rest of the answer, then the end of the connection: the rest of the body is never read.
  bool closed = false;
  eventually(
      [&] {
        char buffer[4096];
        const ssize_t got = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (got > 0) reply.append(buffer, static_cast<size_t>(got));
        closed = got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
        return closed;
      },
      std::chrono::seconds(30));
  EXPECT_TRUE(closed) << "the connection stayed open after the 413";
  close(fd);
  EXPECT_EQ(reply.rfind("HTTP/1.1 413", 0), 0u) << reply;
  EXPECT_CONTAINS(reply, "request body too large");
  EXPECT_GT(chunks_sent, 2) << "the limit was not passed";
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");
  // No call was made: none started for the method.
  const std::string metrics = curl(host, "/metrics").output;
  EXPECT_FALSE(std::regex_search(
      metrics,
      std::regex(R"(gameverse_rpc_calls_started_total\{method="/gameverse.echo.v1.Echo/Echo"\} [1-9])")))
      << metrics;
}

// Once SIGTERM arrives /healthz and /readyz answer 503, while a slow call holds the drain and the
// port is still up; the call is the test's, and ends when the test cancels it.
TEST(HttpTest, HealthzIs503OnceShutdownBegins) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  HostProcess host(config());
  auto echo = pb::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  pb::SleepRequest request;
  request.set_duration_ms(60'000);
  pb::SleepReply reply;
  std::atomic<bool> done{false};
  grpc::Status status;
  echo->async()->Sleep(&context, &request, &reply, [&](grpc::Status s) {
    status = std::move(s);
    done = true;
  });
  const std::string in_flight = "gameverse_rpc_calls_in_flight{method=\"/gameverse.echo.v1.Echo/Sleep\"} 1\n";
  ASSERT_TRUE(eventually([&] { return curl(host, "/metrics").output.find(in_flight) != std::string::npos; }))
      << curl(host, "/metrics").output;
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");
  host.signal(SIGTERM);
  EXPECT_TRUE(eventually([&] { return curl(host, "/healthz").output == "stopping\n\nHTTP 503"; }))
      << curl(host, "/healthz").output << "\n"
      << host.log();
  EXPECT_EQ(curl(host, "/readyz").output, "stopping\n\nHTTP 503");
  EXPECT_FALSE(done.load()) << "the drain did not wait for the call";
  context.TryCancel();
  ASSERT_TRUE(eventually([&] { return done.load(); }, std::chrono::seconds(30)));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// Connections up to the limit that send nothing hold no slot past the request timeout: they are
// closed, and a new scrape gets through. One beyond the limit is closed at once.
TEST(HttpTest, IdleConnectionsBeyondTheLimitDoNotStopAScrape) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  HostProcess host(config("max_connections = 2\nrequest_timeout_ms = 3000\n"));
  std::vector<int> idle;
  for (int i = 0; i < 2; ++i) idle.push_back(connect_to(host.http_port()));
  for (int fd : idle) ASSERT_GE(fd, 0);
  // The server counts a connection once it accepts it: the third is refused once both are in.
  bool refused_at_once = eventually([&] {
    const int extra = connect_to(host.http_port());
    if (extra < 0) return false;
    const bool closed = eventually([&] { return closed_by_server(extra); }, std::chrono::milliseconds(1000));
    close(extra);
    return closed;
  });
  EXPECT_TRUE(refused_at_once);
  for (int fd : idle) EXPECT_TRUE(eventually([&] { return closed_by_server(fd); }, std::chrono::seconds(60)));
  for (int fd : idle) close(fd);
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");
  CommandRun metrics = curl(host, "/metrics");
  EXPECT_CONTAINS(metrics.output, "HTTP 200");
}

// A client sending its request one byte at a time never completes it within the timeout: closed,
// long before its header could reach the size limit, and without an answer.
TEST(HttpTest, ASlowlorisConnectionIsClosedByTheTimeout) {
  if (!have("curl")) GTEST_SKIP() << "curl is not installed (tools/gv deps installs it)";
  HostProcess host(config("max_header_bytes = 65536\nrequest_timeout_ms = 500\n"));
  const int fd = connect_to(host.http_port());
  ASSERT_GE(fd, 0);
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(400, 'a');
  bool closed = false;
  for (size_t i = 0; i < request.size() && !closed; ++i) {
    if (send(fd, &request[i], 1, MSG_NOSIGNAL) != 1) {
      closed = true;  // reset by the server
      break;
    }
    closed = eventually([&] { return closed_by_server(fd); }, std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(closed) << "the slow request was never cut off";
  close(fd);
  EXPECT_EQ(curl(host, "/healthz").output, "ok\n\nHTTP 200");
}

}  // namespace
}  // namespace gameverse::testing
