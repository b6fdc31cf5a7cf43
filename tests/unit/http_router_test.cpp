// The HTTP port's router: exact paths, methods (HEAD answered by GET), the fallback, headers.
#include <gtest/gtest.h>

#include <optional>

#include "http/http_server.hpp"

namespace gameverse::http {
namespace {

Request request(std::string_view method, std::string_view path) {
  return {method, path, {}, {}, {}};
}

// Keeps what a handler answered.
struct Recorded final : Exchange {
  std::optional<Response> answer;
  void respond(Response response) override { answer = std::move(response); }
  void start_stream(Response) override {}
  void write(std::string, std::function<void(bool)> sent) override { sent(false); }
  void end() override {}
  void on_abandoned(std::function<void()>) override {}
  const std::string& peer() const override { return peer_; }
  std::string peer_ = "ipv4:127.0.0.1:1";
};

Response dispatch(const Router& router, const Request& request) {
  auto exchange = std::make_shared<Recorded>();
  router.dispatch(request, exchange);
  EXPECT_TRUE(exchange->answer.has_value());
  return exchange->answer.value_or(Response{});
}

std::string header(const Response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

TEST(HttpRouter, RoutesByPathThenMethod) {
  Router router;
  router.add("GET", "/a", [](const Request&) { return Response{200, "text/plain", "a", {}}; });
  EXPECT_EQ(dispatch(router, request("GET", "/a")).body, "a");
  EXPECT_EQ(dispatch(router, request("HEAD", "/a")).body, "a");  // the server drops the body
  EXPECT_EQ(header(dispatch(router, request("GET", "/a")), "Allow"), "");
  const Response post = dispatch(router, request("POST", "/a"));
  EXPECT_EQ(post.status, 405u);
  EXPECT_EQ(header(post, "Allow"), "GET, HEAD");
  EXPECT_EQ(dispatch(router, request("GET", "/a/")).status, 404u);
  EXPECT_EQ(dispatch(router, request("GET", "/")).status, 404u);
}

TEST(HttpRouter, TheFallbackTakesUnknownPaths) {
  Router router;
  router.add("GET", "/metrics", [](const Request&) { return Response{200, "text/plain", "m", {}}; });
  router.set_fallback([](const Request& r, std::shared_ptr<Exchange> exchange) {
    exchange->respond(Response{
        202, "application/json", std::string(r.path) + " " + std::string(r.header("AUTHORIZATION")), {}});
  });
  Request call = request("POST", "/pkg.Service/Method");
  call.headers = {{"Content-Type", "application/json"}, {"authorization", "Bearer t"}};
  const Response answer = dispatch(router, call);
  EXPECT_EQ(answer.status, 202u);
  EXPECT_EQ(answer.body, "/pkg.Service/Method Bearer t");
  EXPECT_EQ(dispatch(router, request("GET", "/metrics")).body, "m");
  EXPECT_EQ(dispatch(router, request("POST", "/metrics")).status,
            405u);  // a known path is not the fallback's
}

TEST(HttpRouter, SplitsHostAndPort) {
  EXPECT_EQ(split_host_port("127.0.0.1:8080"), (std::pair<std::string, uint16_t>{"127.0.0.1", 8080}));
  EXPECT_EQ(split_host_port("[::1]:0"), (std::pair<std::string, uint16_t>{"::1", 0}));
  EXPECT_EQ(split_host_port("localhost"), (std::pair<std::string, uint16_t>{"", 0}));
  EXPECT_EQ(split_host_port("h:99999"), (std::pair<std::string, uint16_t>{"", 0}));
}

}  // namespace
}  // namespace gameverse::http
