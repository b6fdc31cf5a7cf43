// The HTTP port's router: exact paths, methods (HEAD answered by GET), the fallback, headers.
#include <gtest/gtest.h>

#include "http/http_server.hpp"

namespace gameverse::http {
namespace {

Request request(std::string_view method, std::string_view path) {
  return {method, path, {}, {}, {}};
}

TEST(HttpRouter, RoutesByPathThenMethod) {
  Router router;
  router.add("GET", "/a", [](const Request&) { return Response{200, "text/plain", "a", {}}; });
  std::string allow;
  EXPECT_EQ(router.dispatch(request("GET", "/a"), allow).body, "a");
  EXPECT_EQ(router.dispatch(request("HEAD", "/a"), allow).body, "a");  // the server drops the body
  EXPECT_TRUE(allow.empty());
  const Response post = router.dispatch(request("POST", "/a"), allow);
  EXPECT_EQ(post.status, 405u);
  EXPECT_EQ(allow, "GET, HEAD");
  allow.clear();
  EXPECT_EQ(router.dispatch(request("GET", "/a/"), allow).status, 404u);
  EXPECT_EQ(router.dispatch(request("GET", "/"), allow).status, 404u);
}

TEST(HttpRouter, TheFallbackTakesUnknownPaths) {
  Router router;
  router.add("GET", "/metrics", [](const Request&) { return Response{200, "text/plain", "m", {}}; });
  router.set_fallback([](const Request& r) {
    return Response{
        202, "application/json", std::string(r.path) + " " + std::string(r.header("AUTHORIZATION")), {}};
  });
  Request call = request("POST", "/pkg.Service/Method");
  call.headers = {{"Content-Type", "application/json"}, {"authorization", "Bearer t"}};
  std::string allow;
  const Response answer = router.dispatch(call, allow);
  EXPECT_EQ(answer.status, 202u);
  EXPECT_EQ(answer.body, "/pkg.Service/Method Bearer t");
  EXPECT_EQ(router.dispatch(request("GET", "/metrics"), allow).body, "m");
  EXPECT_EQ(router.dispatch(request("POST", "/metrics"), allow).status,
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
