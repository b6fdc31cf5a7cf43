// The HTTP port: a small router over Boost.Beast, on threads of its own (never gRPC's completion
// queues). Every connection is bounded: header and body sizes, a time limit for each request and
// response, and a limit on open connections, so a slow or hostile client cannot pin a thread or
// memory.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gameverse::http {

struct Request {
  std::string_view method;  // "GET", "HEAD", ...
  std::string_view path;    // the target without its query string
  std::string_view query;   // after '?', or empty
  std::string_view body;
  std::vector<std::pair<std::string_view, std::string_view>> headers;  // as received, in order

  // The first value of the header `name` (any case), or empty.
  std::string_view header(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // more header fields to send
};

// Routes by exact path, then method. A GET route answers HEAD too (without the body). Handlers
// run on the server's threads: keep them short and never blocking for long.
class Router {
 public:
  using Handler = std::function<Response(const Request&)>;
  void add(std::string method, std::string path, Handler handler);
  // For requests whose path no add() names (a gateway's /<package.Service>/<Method>); without
  // one they get 404.
  void set_fallback(Handler handler) { fallback_ = std::move(handler); }
  // 404 for an unknown path, 405 (with the methods allowed) for a known path and another method.
  Response dispatch(const Request& request, std::string& allow) const;

 private:
  std::map<std::string, std::map<std::string, Handler>, std::less<>> routes_;  // path → method → handler
  Handler fallback_;
};

struct Limits {
  size_t max_connections = 64;           // more are closed as soon as they are accepted
  uint32_t max_header_bytes = 8 * 1024;  // a larger request head gets 431
  uint64_t max_body_bytes = 64 * 1024;   // a larger body gets 413
  // A request must arrive whole within this of the connection opening (or of the previous
  // response on a kept-alive connection); a response must be sent within it. Else the connection
  // is closed.
  std::chrono::milliseconds request_timeout{10'000};
  size_t threads = 1;
};

class HttpServer {
 public:
  HttpServer(std::string listen, Limits limits, Router router);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving; returns the bound port. Throws std::runtime_error naming the
  // address when it cannot listen.
  int start();
  // Closes the listener and every connection, and joins the threads.
  void stop();

  size_t open_connections() const { return open_connections_; }

 private:
  struct State;
  std::string listen_;
  Limits limits_;
  std::shared_ptr<const Router> router_;
  std::unique_ptr<State> state_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> open_connections_{0};
};

// "host:port" → (host, port); an IPv6 host is written in brackets. nullopt-like empty host when
// the address has no port.
std::pair<std::string, uint16_t> split_host_port(const std::string& address);

}  // namespace gameverse::http
