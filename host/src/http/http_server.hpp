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

// How a handler answers, now or later, from any thread. Exactly one of: respond(); or
// start_stream(), then write() any number of times (one at a time), then end().
class Exchange {
 public:
  virtual ~Exchange() = default;
  // The whole answer.
  virtual void respond(Response response) = 0;
  // The head of an answer sent in pieces (chunked): status, type and headers.
  virtual void start_stream(Response head) = 0;
  // Sends one piece; `sent(true)` once it went out, `sent(false)` when the client is gone or too
  // slow (the connection is then closed). The next write waits for `sent`.
  virtual void write(std::string piece, std::function<void(bool sent)> sent) = 0;
  virtual void end() = 0;
  // `abandoned` runs once when the client goes away before the answer is complete (possibly at
  // once, on any thread); never after respond() or end().
  virtual void on_abandoned(std::function<void()> abandoned) = 0;
  // The client's address as "ipv4:1.2.3.4:5678" or "ipv6:[::1]:5678" (gRPC's peer format).
  virtual const std::string& peer() const = 0;
};

// Routes by exact path, then method. A GET route answers HEAD too (without the body). Handlers
// run on the server's threads: keep them short and never blocking for long. The request's views
// are valid only until the handler returns.
class Router {
 public:
  using Handler = std::function<Response(const Request&)>;
  using AsyncHandler = std::function<void(const Request&, std::shared_ptr<Exchange>)>;
  void add(std::string method, std::string path, Handler handler);
  // For requests whose path no add() names (a gateway's /<package.Service>/<Method>); without
  // one they get 404.
  void set_fallback(AsyncHandler handler) { fallback_ = std::move(handler); }
  // 404 for an unknown path, 405 (with the methods allowed) for a known path and another method.
  void dispatch(const Request& request, const std::shared_ptr<Exchange>& exchange) const;

 private:
  std::map<std::string, std::map<std::string, Handler>, std::less<>> routes_;  // path → method → handler
  AsyncHandler fallback_;
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
  // Shared with the connections, which may outlive the server by a little (an answer posted late).
  struct Counters {
    std::atomic<size_t> connections{0};
  };

  HttpServer(std::string listen, Limits limits, Router router);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving; returns the bound port. Throws std::runtime_error naming the
  // address when it cannot listen.
  int start();
  // Closes the listener and every connection, and joins the threads.
  void stop();

  size_t open_connections() const { return counters_->connections; }

 private:
  struct State;
  std::string listen_;
  std::shared_ptr<const Limits> limits_;
  std::shared_ptr<const Router> router_;
  std::unique_ptr<State> state_;
  std::vector<std::thread> threads_;
  std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
};

// "host:port" → (host, port); an IPv6 host is written in brackets. nullopt-like empty host when
// the address has no port.
std::pair<std::string, uint16_t> split_host_port(const std::string& address);

}  // namespace gameverse::http
