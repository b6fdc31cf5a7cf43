#include "http/http_server.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <stdexcept>

namespace gameverse::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

std::string_view Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key.size() == name.size() && beast::iequals(beast::string_view(key.data(), key.size()),
                                                    beast::string_view(name.data(), name.size())))
      return value;
  }
  return {};
}

void Router::add(std::string method, std::string path, Handler handler) {
  routes_[std::move(path)][std::move(method)] = std::move(handler);
}

Response Router::dispatch(const Request& request, std::string& allow) const {
  const auto path = routes_.find(request.path);
  if (path == routes_.end()) {
    if (fallback_) return fallback_(request);
    return {404, "text/plain; charset=utf-8", "not found\n", {}};
  }
  const auto& methods = path->second;
  auto handler = methods.find(std::string(request.method));
  if (handler == methods.end() && request.method == "HEAD") handler = methods.find("GET");
  if (handler != methods.end()) return handler->second(request);
  for (const auto& [method, unused] : methods) {
    allow += (allow.empty() ? "" : ", ") + method;
    if (method == "GET") allow += ", HEAD";
  }
  return {405, "text/plain; charset=utf-8", "method not allowed\n", {}};
}

std::pair<std::string, uint16_t> split_host_port(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return {"", 0};
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535)
    return {"", 0};
  return {host, static_cast<uint16_t>(std::stoi(port))};
}

namespace {

// One connection: reads a request, answers it, and reads the next while the client keeps it alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<const Router> router, const Limits& limits,
          std::atomic<size_t>& open)
      : stream_(std::move(socket)), router_(std::move(router)), limits_(limits), open_(open) {}
  ~Session() { --open_; }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(limits_.max_header_bytes);
    parser_->body_limit(limits_.max_body_bytes);
    stream_.expires_after(limits_.request_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

 private:
  void on_read(beast::error_code error, size_t) {
    if (error == bhttp::error::header_limit) return refuse(431, "request header fields too large\n");
    if (error == bhttp::error::body_limit) return refuse(413, "request body too large\n");
    if (error == bhttp::error::end_of_stream || error == beast::error::timeout || error == asio::error::eof ||
        error == asio::error::operation_aborted || error == asio::error::connection_reset) {
      return close();
    }
    if (error) return refuse(400, "bad request\n");
    const auto& request = parser_->get();
    const std::string_view target(request.target().data(), request.target().size());
    const auto question = target.find('?');
    Request routed{std::string_view(request.method_string().data(), request.method_string().size()),
                   target.substr(0, question),
                   question == std::string_view::npos ? std::string_view() : target.substr(question + 1),
                   request.body(),
                   {}};
    for (const auto& field : request) {
      routed.headers.emplace_back(std::string_view(field.name_string().data(), field.name_string().size()),
                                  std::string_view(field.value().data(), field.value().size()));
    }
    std::string allow;
    Response answer;
    try {
      answer = router_->dispatch(routed, allow);
    } catch (const std::exception& e) {
      spdlog::error("http: {} {}: {}", routed.method, routed.path, e.what());
      answer = {500, "text/plain; charset=utf-8", "internal error\n", {}};
    }
    send(std::move(answer), request.keep_alive(), request.method() == bhttp::verb::head, request.version(),
         std::move(allow));
  }

  void refuse(unsigned status, std::string body) {
    refused_ = true;
    send({status, "text/plain; charset=utf-8", std::move(body), {}}, false, false, 11, "");
  }

  void send(Response answer, bool keep_alive, bool head, unsigned version, std::string allow) {
    response_ = {};
    response_.version(version);
    response_.result(answer.status);
    response_.set(bhttp::field::content_type, answer.content_type);
    if (!allow.empty()) response_.set(bhttp::field::allow, allow);
    for (const auto& [name, value] : answer.headers) response_.insert(name, value);
    response_.keep_alive(keep_alive);
    response_.content_length(answer.body.size());
    if (!head) response_.body() = std::move(answer.body);
    stream_.expires_after(limits_.request_timeout);
    bhttp::async_write(stream_, response_, beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code error, size_t) {
    if (!error && refused_) return drain_then_close();
    if (error || !response_.keep_alive()) return close();
    read_request();
  }

  // After a refusal the client may still be sending what was refused; closing with it unread
  // would reset the connection and lose the answer. So: stop sending, read and drop until the
  // client closes or the timeout set for the answer runs out.
  void drain_then_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    discard_until_closed();
  }

  void discard_until_closed() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code error, size_t) {
                              if (error) return self->close();
                              self->discard_until_closed();
                            });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  std::array<char, 4096> discard_;
  bool refused_ = false;
  std::shared_ptr<const Router> router_;
  const Limits& limits_;
  std::atomic<size_t>& open_;
};

}  // namespace

struct HttpServer::State {
  asio::io_context io;
  tcp::acceptor acceptor{io};
};

HttpServer::HttpServer(std::string listen, Limits limits, Router router)
    : listen_(std::move(listen)),
      limits_(limits),
      router_(std::make_shared<const Router>(std::move(router))) {}

HttpServer::~HttpServer() {
  stop();
}

namespace {

void accept_next(tcp::acceptor& acceptor, asio::io_context& io, std::shared_ptr<const Router> router,
                 const Limits& limits, std::atomic<size_t>& open) {
  acceptor.async_accept(asio::make_strand(io), [&acceptor, &io, router, &limits, &open](
                                                   beast::error_code error, tcp::socket socket) {
    if (error == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!error) {
      if (open.fetch_add(1) >= limits.max_connections) {
        --open;  // over the limit: closed at once, before anything is read
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        std::make_shared<Session>(std::move(socket), router, limits, open)->read_request();
      }
    }
    accept_next(acceptor, io, router, limits, open);
  });
}

}  // namespace

int HttpServer::start() {
  const auto [host, port] = split_host_port(listen_);
  if (host.empty()) throw std::runtime_error("[http] listen '" + listen_ + "' is not host:port");
  state_ = std::make_unique<State>();
  try {
    tcp::resolver resolver(state_->io);
    const auto endpoints = resolver.resolve(host, std::to_string(port), tcp::resolver::passive);
    if (endpoints.empty()) throw std::runtime_error("no address");
    const tcp::endpoint endpoint = endpoints.begin()->endpoint();
    state_->acceptor.open(endpoint.protocol());
    state_->acceptor.set_option(asio::socket_base::reuse_address(true));
    state_->acceptor.bind(endpoint);
    state_->acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    state_.reset();
    throw std::runtime_error("[http] cannot listen on " + listen_ + ": " + e.what());
  }
  const int bound = state_->acceptor.local_endpoint().port();
  accept_next(state_->acceptor, state_->io, router_, limits_, open_connections_);
  for (size_t i = 0; i < std::max<size_t>(1, limits_.threads); ++i) {
    threads_.emplace_back([this] { state_->io.run(); });
  }
  return bound;
}

void HttpServer::stop() {
  if (!state_) return;
  asio::post(state_->io, [this] {
    beast::error_code ignored;
    state_->acceptor.close(ignored);
  });
  state_->io.stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  state_.reset();  // drops the sessions still open: before open_connections_ goes
}

}  // namespace gameverse::http
